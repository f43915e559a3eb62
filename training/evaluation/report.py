"""One evaluation of a router and its baselines on the same rows, as an object and a JSON document."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tierwise.classifier.policy import rule_scores
from tierwise.training.data.logs import LogError
from tierwise.training.evaluation.baselines import length_heuristic_probs, random_mix_curve
from tierwise.training.evaluation.bootstrap import LEVEL, RESAMPLES, SEED, Interval, curve_intervals, resample_weights
from tierwise.training.evaluation.curves import (
    Curve,
    ThresholdSteps,
    check_probs,
    choose_tiers,
    known_rows,
    outcome_of,
    threshold_curve,
)
from tierwise.training.evaluation.metrics import (
    Anchors,
    RoutingRates,
    TierCalibration,
    apgr,
    cheapest_success,
    curve_summary,
    routing_rates,
    tier_calibration,
)
from tierwise.training.evaluation.routellm import routellm_metrics
from tierwise.training.evaluation.savings import SavingsScale, oracle_frontier, static_mix_curve

REPORT_FORMAT = "tierwise-eval/1"
JSON_CURVE_THRESHOLDS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class Point:
    """One fixed routing rule's mean cost per request (USD) and success rate."""

    cost: float
    quality: float


@dataclass(frozen=True)
class SweptRouter:
    """A router family swept over its setting: the exact curve and its summary metrics.

    `steps` (threshold families only) re-weight the same sweep for bootstrap resamples of the scored rows.
    """

    curve: Curve
    metrics: dict[str, float | None]
    steps: ThresholdSteps | None = field(default=None, repr=False)


@dataclass(frozen=True)
class OperatingPoint:
    """What the router does at its default threshold, in total and per scored request."""

    threshold: float
    rule: str
    point: Point
    tier_shares: dict[str, float]
    rates: RoutingRates
    # Each scored request's outcome (0/1) and cost at the tier chosen for it: for paired comparisons.
    success: np.ndarray = field(repr=False)
    cost: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class EvalReport:
    """Router and baselines evaluated on the requests whose outcome is known on every tier."""

    tiers: list[str]
    requests: int
    evaluated: int
    anchors: Anchors
    router: SweptRouter
    intervals: dict[str, Interval]
    routellm: dict[str, float | None] | None
    operating_point: OperatingPoint
    calibration: list[TierCalibration]
    always: dict[str, Point]
    baselines: dict[str, SweptRouter]  # every baseline that could be scored, by its name in BASELINES
    static_mix_tiers: list[str]
    oracle: Point
    oracle_apgr: float | None
    oracle_frontier: Curve
    json_curves: dict[str, dict[str, list[float]]] = field(repr=False)
    # Every evaluated request's P(success), outcome (NaN: tier never tried) and cost per tier, and which of them
    # were scored (known on every tier): for plots, resampling and later reuse.
    probabilities: np.ndarray = field(repr=False)
    outcomes: np.ndarray = field(repr=False)
    costs: np.ndarray = field(repr=False)
    scored: np.ndarray = field(repr=False)
    # The ids of the scored requests, in the order of the operating point's per-request arrays (if given).
    scored_ids: list[str] | None = field(default=None, repr=False)

    def cost_ratio(self, cost: float) -> float | None:
        """A mean cost as a fraction of always-top cost."""
        return cost / self.anchors.top_cost if self.anchors.top_cost > 0 else None

    def _point_json(self, point: Point) -> dict[str, float | None]:
        return {"cost_usd": point.cost, "cost_ratio": self.cost_ratio(point.cost), "quality": point.quality}

    def headline(self) -> dict[str, Any]:
        """The router's metrics: every curve metric, the savings over the static mix with their intervals, and
        RouteLLM's metrics (null unless the ladder has two tiers)."""
        routellm = self.routellm or dict.fromkeys(("routellm_apgr", "routellm_cpt50", "routellm_cpt80"))
        intervals = {f"{key}_ci": interval.to_json() for key, interval in self.intervals.items()}
        return {**self.router.metrics, **intervals, **routellm}

    def to_json(self) -> dict[str, Any]:
        """The documented JSON document (docs/evaluation.md): plain dicts, lists, numbers and nulls."""
        return {
            "format": REPORT_FORMAT,
            "tiers": list(self.tiers),
            "requests": self.requests,
            "evaluated": self.evaluated,
            "excluded_incomplete": self.requests - self.evaluated,
            **self.headline(),
            "bootstrap": {"resamples": RESAMPLES, "seed": SEED, "level": LEVEL},
            "operating_point": self._operating_point_json(),
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
                **self._baselines_json(),
                "oracle": {**self._point_json(self.oracle), "apgr": self.oracle_apgr},
            },
            "curves": self.json_curves,
        }

    def _operating_point_json(self) -> dict[str, Any]:
        op = self.operating_point
        top_quality = self.anchors.top_quality
        return {
            "threshold": op.threshold,
            "rule": op.rule,
            **self._point_json(op.point),
            "quality_ratio": op.point.quality / top_quality if top_quality > 0 else None,
            "tier_shares": dict(op.tier_shares),
            "under_routing_rate": op.rates.under_routing,
            "over_routing_rate": op.rates.over_routing,
            "exact_tier_accuracy": op.rates.exact_tier_accuracy,
        }

    def _baselines_json(self) -> dict[str, Any]:
        found = {name: dict(swept.metrics) if (swept := self.baselines.get(name)) else None for name in BASELINES}
        return found | {"static_mix": {**found["static_mix"], "tiers": list(self.static_mix_tiers)}}


@dataclass(frozen=True)
class _Scored:
    """The rows every tier's outcome is known on, with the router's scores under its rule."""

    success: np.ndarray
    cost: np.ndarray
    scores: np.ndarray
    keep: np.ndarray
    scale: SavingsScale

    @property
    def anchors(self) -> Anchors:
        return self.scale.anchors

    def sweep(self, scores: np.ndarray) -> SweptRouter:
        """A router family's exact curve, its steps, and every curve and savings metric of it."""
        steps = ThresholdSteps.of(self.success, self.cost, scores)
        return self.swept(steps.curve(), steps)

    def swept(self, curve: Curve, steps: ThresholdSteps | None = None) -> SweptRouter:
        metrics = {**curve_summary(curve, self.anchors), **self.scale.summary(curve)}
        return SweptRouter(curve=curve, metrics=metrics, steps=steps)


def _scored_rows(
    tiers: list[str],
    success: np.ndarray,
    cost: np.ndarray,
    probs: np.ndarray,
    rule: str,
    tier_costs: Sequence[float] | None,
) -> _Scored:
    if success.ndim != 2 or success.shape[1] != len(tiers):
        raise ValueError(f"success {success.shape} must have one column per tier ({len(tiers)})")
    keep = known_rows(success, cost)
    if not keep.any():
        raise LogError(f"none of the {len(success)} requests has an outcome on every tier, so no route can be scored")
    full_success, full_cost = success[keep], cost[keep]
    return _Scored(
        success=full_success,
        cost=full_cost,
        scores=rule_scores(probs[keep], rule, tier_costs),
        keep=keep,
        scale=SavingsScale.of(full_success, full_cost),
    )


def _operating_point(rows: _Scored, tiers: list[str], threshold: float, rule: str) -> OperatingPoint:
    chosen = choose_tiers(rows.scores, threshold)
    picked = np.arange(len(chosen)), chosen
    shares = np.bincount(chosen, minlength=len(tiers)) / len(chosen)
    success, cost = rows.success[picked], rows.cost[picked]
    return OperatingPoint(
        threshold=float(threshold),
        rule=rule,
        point=Point(float(cost.mean()), float(success.mean())),
        tier_shares={name: float(s) for name, s in zip(tiers, shares, strict=True)},
        rates=routing_rates(rows.success, chosen),
        success=success,
        cost=cost,
    )


def _always(rows: _Scored) -> tuple[np.ndarray, np.ndarray]:
    """Mean cost and success rate of sending every scored request to each tier."""
    return rows.cost.mean(axis=0), rows.success.mean(axis=0)


def _on_hull(rows: _Scored, static_mix: Curve) -> list[int]:
    """The tiers whose always-point lies on the static mix's curve."""
    always_cost, always_quality = _always(rows)
    on_hull = np.interp(always_cost, static_mix.cost, static_mix.quality) <= always_quality + 1e-12
    return [int(k) for k in np.flatnonzero(on_hull)]


@dataclass(frozen=True)
class Given:
    """What a scored baseline may read besides the outcomes, per evaluated request (None: not given)."""

    prompt_chars: np.ndarray | None = None
    knn_probs: np.ndarray | None = None


@dataclass(frozen=True)
class Baseline:
    """A trivial router every learned router must beat, scored on the same rows with the same metrics: its label in
    the table and on the chart, its line there (colour, style), and either its scores per scored row, swept over
    thresholds like the router's (None when the evaluation was not given what it reads), or, for a mix of fixed
    tiers, its curve."""

    label: str
    style: tuple[str, str]
    scores: Callable[[_Scored, Given], np.ndarray | None] | None = None
    mix: Callable[[_Scored], Curve] | None = None


def _length_scores(rows: _Scored, given: Given) -> np.ndarray | None:
    if given.prompt_chars is None:
        return None
    return length_heuristic_probs(np.asarray(given.prompt_chars)[rows.keep], rows.success.shape[1])


def _knn_scores(rows: _Scored, given: Given) -> np.ndarray | None:
    return None if given.knn_probs is None else np.asarray(given.knn_probs, dtype=np.float64)[rows.keep]


# The baselines by their name in the JSON report, in the order the table and the chart show them.
BASELINES = {
    "static_mix": Baseline("static mix", ("black", "-"), mix=lambda rows: static_mix_curve(*_always(rows))),
    "random": Baseline("random two-end mix", ("C7", "--"), mix=lambda rows: random_mix_curve(rows.anchors)),
    "length": Baseline("prompt length", ("C1", "-"), scores=_length_scores),
    "knn": Baseline("k-NN", ("C2", "-"), scores=_knn_scores),
}


def _router_intervals(rows: _Scored, router: SweptRouter) -> dict[str, Interval]:
    """Bootstrap intervals of the router's headline metrics (seeded, so every report on these rows agrees)."""
    return curve_intervals(router.steps, rows.success, rows.cost, resample_weights(len(rows.success)))


def _two_tier_metrics(rows: _Scored) -> dict[str, float | None] | None:
    """RouteLLM's metrics where there are exactly two tiers; the strong score is 1 - the cheap tier's score."""
    if rows.success.shape[1] != 2:
        return None
    return routellm_metrics(rows.success[:, 0], rows.success[:, 1], 1.0 - rows.scores[:, 0])


def _json_curves(rows: _Scored, swept_scores: dict[str, np.ndarray], static_mix_tiers: list[int]) -> dict:
    """Every curve for plots: swept routers at thresholds 0, 0.01, ..., 1, the mixes at their ends or vertices,
    the oracle frontier at 101 costs along it."""
    top = rows.anchors.top_cost if rows.anchors.top_cost > 0 else float("nan")

    def as_json(curve: Curve) -> dict[str, list[float]]:
        return {
            "setting": curve.settings.tolist(),
            "cost_ratio": (curve.cost / top).tolist(),
            "quality": curve.quality.tolist(),
        }

    curves = {
        name: as_json(threshold_curve(rows.success, rows.cost, scores, JSON_CURVE_THRESHOLDS))
        for name, scores in swept_scores.items()
    }
    always_cost, always_quality = rows.cost.mean(axis=0), rows.success.mean(axis=0)
    vertices = sorted(static_mix_tiers, key=lambda k: always_cost[k])
    frontier = oracle_frontier(rows.success, rows.cost)
    budgets = np.linspace(frontier.cost[0], frontier.cost[-1], len(JSON_CURVE_THRESHOLDS))
    return curves | {
        "random": as_json(random_mix_curve(rows.anchors, n_ratios=2)),
        "static_mix": as_json(Curve(always_cost[vertices], always_cost[vertices], always_quality[vertices])),
        "oracle_frontier": as_json(Curve(budgets, budgets, np.interp(budgets, frontier.cost, frontier.quality))),
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
    request_ids: list[str] | None = None,
    tier_costs: Sequence[float] | None = None,
) -> EvalReport:
    """Evaluate router probabilities and every baseline on the same requests.

    `success` and `cost` are (n, T) with NaN where a tier was never tried; curves, routing rates and
    baselines use only requests known on every tier (the rest are counted as excluded), calibration
    uses every request where that tier is known. `prompt_chars` enables the length baseline and
    `knn_probs` (from `baselines.knn_probs`) the k-NN baseline. `rule` is the router's threshold rule
    (`tierwise.classifier.policy.rule_scores`): curves sweep the threshold over its scores, calibration uses `probs`;
    `tier_costs` are the per-tier costs the `utility` rule weighs (the bundle's `tier_costs_usd`).
    `request_ids` (one per row) name the scored requests, so two reports can be compared request by request.
    """
    success = np.asarray(success, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.float64)
    probs = check_probs(probs, success.shape)
    rows = _scored_rows(tiers, success, cost, probs, rule, tier_costs)
    given = Given(prompt_chars, knn_probs)
    swept_scores = {"router": rows.scores}
    for name, baseline in BASELINES.items():
        if baseline.scores is not None and (scores := baseline.scores(rows, given)) is not None:
            swept_scores[name] = scores
    sweeps = {name: rows.sweep(scores) for name, scores in swept_scores.items()}
    mixes = {name: rows.swept(baseline.mix(rows)) for name, baseline in BASELINES.items() if baseline.mix is not None}
    baselines = {name: swept for name in BASELINES if (swept := sweeps.get(name, mixes.get(name))) is not None}
    on_hull = _on_hull(rows, baselines["static_mix"].curve)
    return EvalReport(
        tiers=list(tiers),
        requests=len(success),
        evaluated=int(rows.keep.sum()),
        anchors=rows.anchors,
        router=sweeps["router"],
        intervals=_router_intervals(rows, sweeps["router"]),
        routellm=_two_tier_metrics(rows),
        operating_point=_operating_point(rows, tiers, threshold, rule),
        calibration=tier_calibration(list(tiers), probs, success),
        always={name: Point(float(c), float(q)) for name, c, q in zip(tiers, *_always(rows), strict=True)},
        baselines=baselines,
        static_mix_tiers=[tiers[k] for k in on_hull],
        oracle=Point(*outcome_of(rows.success, rows.cost, cheapest_success(rows.success))),
        oracle_apgr=apgr(threshold_curve(rows.success, rows.cost, rows.success), rows.anchors),
        oracle_frontier=oracle_frontier(rows.success, rows.cost),
        json_curves=_json_curves(rows, swept_scores, on_hull),
        probabilities=probs,
        outcomes=success,
        costs=cost,
        scored=rows.keep,
        scored_ids=[request_ids[i] for i in np.flatnonzero(rows.keep)] if request_ids is not None else None,
    )
