"""One evaluation of a router and its baselines on the same rows, as an object, a JSON document and a table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from classifier.policy import rule_scores
from training.evaluation.baselines import length_heuristic_probs, random_mix_curve
from training.evaluation.curves import (
    Curve,
    check_probs,
    choose_tiers,
    known_rows,
    outcome_of,
    threshold_curve,
)
from training.evaluation.metrics import (
    Anchors,
    RoutingRates,
    TierCalibration,
    apgr,
    cheapest_success,
    curve_summary,
    routing_rates,
    tier_calibration,
)
from training.logs import LogError

REPORT_FORMAT = "tierwise-eval/1"
JSON_CURVE_THRESHOLDS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class Point:
    """One fixed routing rule's mean cost per request (USD) and success rate."""

    cost: float
    quality: float


@dataclass(frozen=True)
class SweptRouter:
    """A router family swept over its setting: the exact curve and its summary metrics."""

    curve: Curve
    metrics: dict[str, float | None]


@dataclass(frozen=True)
class OperatingPoint:
    """What the router does at its default threshold."""

    threshold: float
    rule: str
    point: Point
    tier_shares: dict[str, float]
    rates: RoutingRates


@dataclass(frozen=True)
class EvalReport:
    """Router and baselines evaluated on the requests whose outcome is known on every tier."""

    tiers: list[str]
    requests: int
    evaluated: int
    anchors: Anchors
    router: SweptRouter
    operating_point: OperatingPoint
    calibration: list[TierCalibration]
    always: dict[str, Point]
    oracle: Point
    oracle_apgr: float | None
    random: SweptRouter
    length: SweptRouter | None
    knn: SweptRouter | None
    json_curves: dict[str, dict[str, list[float]]] = field(repr=False)
    # Every evaluated request's P(success) and outcome (NaN: tier never tried), for plots and later reuse.
    probabilities: np.ndarray = field(repr=False)
    outcomes: np.ndarray = field(repr=False)

    def cost_ratio(self, cost: float) -> float | None:
        """A mean cost as a fraction of always-top cost."""
        return cost / self.anchors.top_cost if self.anchors.top_cost > 0 else None

    def _point_json(self, point: Point) -> dict[str, float | None]:
        return {"cost_usd": point.cost, "cost_ratio": self.cost_ratio(point.cost), "quality": point.quality}

    def to_json(self) -> dict[str, Any]:
        """The documented JSON document (docs/evaluation.md): plain dicts, lists, numbers and nulls."""
        op = self.operating_point
        top_quality = self.anchors.top_quality
        return {
            "format": REPORT_FORMAT,
            "tiers": list(self.tiers),
            "requests": self.requests,
            "evaluated": self.evaluated,
            "excluded_incomplete": self.requests - self.evaluated,
            **self.router.metrics,
            "operating_point": {
                "threshold": op.threshold,
                "rule": op.rule,
                **self._point_json(op.point),
                "quality_ratio": op.point.quality / top_quality if top_quality > 0 else None,
                "tier_shares": dict(op.tier_shares),
                "under_routing_rate": op.rates.under_routing,
                "over_routing_rate": op.rates.over_routing,
                "exact_tier_accuracy": op.rates.exact_tier_accuracy,
            },
            "calibration": {
                c.tier: {
                    "n": c.n,
                    "success_rate": c.success_rate,
                    "mean_prob": c.mean_prob,
                    "accuracy": c.accuracy,
                    "ece": c.ece,
                }
                for c in self.calibration
            },
            "baselines": {
                "always": {name: self._point_json(point) for name, point in self.always.items()},
                "random": dict(self.random.metrics),
                "length": dict(self.length.metrics) if self.length else None,
                "knn": dict(self.knn.metrics) if self.knn else None,
                "oracle": {**self._point_json(self.oracle), "apgr": self.oracle_apgr},
            },
            "curves": self.json_curves,
        }

    def table(self) -> str:
        """A plain-text table of router and baselines, for the terminal."""
        rows = [("router", self.router.metrics)]
        rows += [(name, swept.metrics) for name, swept in self.baseline_sweeps().items()]
        header = f"{'':<12}{'APGR':>8}{'CPT50':>8}{'CPT80':>8}{'cost@95':>9}{'cost@100':>10}{'AIQ':>8}"
        lines = [header]
        for name, m in rows:
            cells = [m["apgr"], m["cpt50"], m["cpt80"], m["cost_ratio_at_95"], m["cost_ratio_at_100"], m["aiq"]]
            widths = (8, 8, 8, 9, 10, 8)
            lines.append(f"{name:<12}" + "".join(_cell(v, w) for v, w in zip(cells, widths, strict=True)))
        for name, point in {**self.always, "oracle": self.oracle}.items():
            ratio = self.cost_ratio(point.cost)
            cost = f"{ratio:.3f}" if ratio is not None else "-"
            lines.append(f"{name:<12}cost {cost} x top, quality {point.quality:.3f}")
        op = self.operating_point
        lines.append(
            f"at threshold {op.threshold:.3f}: cost {format_metric(self.cost_ratio(op.point.cost))} x top, "
            f"quality {op.point.quality:.3f}, under-routing {op.rates.under_routing:.3f}, "
            f"over-routing {op.rates.over_routing:.3f}, exact tier {op.rates.exact_tier_accuracy:.3f}"
        )
        lines.append(
            "ECE per tier: "
            + ", ".join(f"{c.tier} {format_metric(c.ece)}" for c in self.calibration)
            + f"   ({self.evaluated} of {self.requests} requests evaluated; "
            f"{self.requests - self.evaluated} lack an outcome on some tier)"
        )
        return "\n".join(lines)

    def baseline_sweeps(self) -> dict[str, SweptRouter]:
        """The swept baselines that were computed, by JSON name."""
        sweeps = {"random": self.random, "length": self.length, "knn": self.knn}
        return {name: swept for name, swept in sweeps.items() if swept is not None}


def format_metric(value: float | None) -> str:
    """A metric to three decimals, or '-' where it is undefined."""
    return "-" if value is None else f"{value:.3f}"


def _cell(value: float | None, width: int) -> str:
    return f"{format_metric(value):>{width}}"


def _sweep(success: np.ndarray, cost: np.ndarray, probs: np.ndarray, anchors: Anchors) -> SweptRouter:
    curve = threshold_curve(success, cost, probs)
    return SweptRouter(curve=curve, metrics=curve_summary(curve, anchors))


def _json_curve(curve: Curve, anchors: Anchors) -> dict[str, list[float]]:
    top = anchors.top_cost if anchors.top_cost > 0 else float("nan")
    return {
        "setting": curve.settings.tolist(),
        "cost_ratio": (curve.cost / top).tolist(),
        "quality": curve.quality.tolist(),
    }


def build_report(
    tiers: list[str],
    success: np.ndarray,
    cost: np.ndarray,
    probs: np.ndarray,
    threshold: float,
    prompt_chars: np.ndarray | None = None,
    knn_probs: np.ndarray | None = None,
    rule: str = "absolute",
) -> EvalReport:
    """Evaluate router probabilities and every baseline on the same requests.

    `success` and `cost` are (n, T) with NaN where a tier was never tried; curves, routing rates and
    baselines use only requests known on every tier (the rest are counted as excluded), calibration
    uses every request where that tier is known. `prompt_chars` enables the length baseline and
    `knn_probs` (from `baselines.knn_probs`) the k-NN baseline. `rule` is the router's threshold rule
    (`classifier.policy.rule_scores`): curves sweep the threshold over its scores, calibration uses `probs`.
    """
    success = np.asarray(success, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.float64)
    if success.ndim != 2 or success.shape[1] != len(tiers):
        raise ValueError(f"success {success.shape} must have one column per tier ({len(tiers)})")
    probs = check_probs(probs, success.shape)
    keep = known_rows(success, cost)
    if not keep.any():
        raise LogError(f"none of the {len(success)} requests has an outcome on every tier, so no route can be scored")
    full_success, full_cost, full_probs = success[keep], cost[keep], rule_scores(probs[keep], rule)
    anchors = Anchors.from_outcomes(full_success, full_cost)
    router = _sweep(full_success, full_cost, full_probs, anchors)

    chosen = choose_tiers(full_probs, threshold)
    shares = np.bincount(chosen, minlength=len(tiers)) / len(chosen)
    operating_point = OperatingPoint(
        threshold=float(threshold),
        rule=rule,
        point=Point(*outcome_of(full_success, full_cost, chosen)),
        tier_shares={name: float(s) for name, s in zip(tiers, shares, strict=True)},
        rates=routing_rates(full_success, chosen),
    )
    swept_probs = {"router": full_probs}
    length = knn = None
    if prompt_chars is not None:
        swept_probs["length"] = length_heuristic_probs(np.asarray(prompt_chars)[keep], len(tiers))
        length = _sweep(full_success, full_cost, swept_probs["length"], anchors)
    if knn_probs is not None:
        swept_probs["knn"] = np.asarray(knn_probs, dtype=np.float64)[keep]
        knn = _sweep(full_success, full_cost, swept_probs["knn"], anchors)
    random = random_mix_curve(anchors)
    json_curves = {
        name: _json_curve(threshold_curve(full_success, full_cost, p, JSON_CURVE_THRESHOLDS), anchors)
        for name, p in swept_probs.items()
    }
    json_curves["random"] = _json_curve(random_mix_curve(anchors, n_ratios=2), anchors)
    perfect = threshold_curve(full_success, full_cost, full_success)
    return EvalReport(
        tiers=list(tiers),
        requests=len(success),
        evaluated=int(keep.sum()),
        anchors=anchors,
        router=router,
        operating_point=operating_point,
        calibration=tier_calibration(list(tiers), probs, success),
        always={
            name: Point(float(full_cost[:, k].mean()), float(full_success[:, k].mean())) for k, name in enumerate(tiers)
        },
        oracle=Point(*outcome_of(full_success, full_cost, cheapest_success(full_success))),
        oracle_apgr=apgr(perfect, anchors),
        random=SweptRouter(curve=random, metrics=curve_summary(random, anchors)),
        length=length,
        knn=knn,
        json_curves=json_curves,
        probabilities=probs,
        outcomes=success,
    )
