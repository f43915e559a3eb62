"""A router judged on collected traffic (`tierwise collect`), weighted by inverse propensity (`off_policy`).

What `tierwise eval`, training's held-out scores and the retrain gate use when the evaluated requests come
from served traffic: the outcomes the traffic revealed are weighted so that a router is not rewarded for
agreeing with the router that served them (docs/evaluation.md, "Evaluating on collected traffic"). The
metrics are those of `EvalReport` where they can be estimated this way: the threshold curve (each point an
estimate), its APGR and its gain over the static mix (built from each tier's estimate); baselines that need
every tier's outcome (the oracle, k-NN) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tierwise.classifier.policy import rule_scores
from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierLadder
from tierwise.training.data.labels import label_requests
from tierwise.training.data.logs import AttemptLog
from tierwise.training.data.splits import SplitRule
from tierwise.training.evaluation.curves import choose_tiers
from tierwise.training.evaluation.evaluate import evaluation_ladder, router_probabilities, write_json
from tierwise.training.evaluation.frames import outcome_arrays
from tierwise.training.evaluation.metrics import budget_grid, curve_summary
from tierwise.training.evaluation.off_policy import (
    Estimate,
    TrafficLog,
    ips_anchors,
    ips_curve,
    ips_estimate,
    is_traffic,
)
from tierwise.training.evaluation.report import Point, SweptRouter
from tierwise.training.evaluation.savings import GAIN_BUDGETS, SavingsScale, static_mix_quality

CURVE_THRESHOLDS = np.linspace(0.0, 1.0, 201)
TRAFFIC_REPORT_FORMAT = "tierwise-eval-traffic/1"


@dataclass(frozen=True)
class TrafficPoint:
    """The router at its default threshold, in total and per request (for paired comparisons).

    Per request: the outcome the traffic revealed at the chosen tier (0 where it revealed none), the cost of
    that tier, and the request's inverse-propensity weight (0 where the outcome was not revealed).
    """

    threshold: float
    rule: str
    point: Point
    estimate: Estimate
    tier_shares: dict[str, float]
    success: np.ndarray = field(repr=False)
    cost: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class TrafficEvaluation:
    """A router on collected traffic: its default operating point, each tier alone, and its threshold curve."""

    tiers: list[str]
    requests: int
    router: SweptRouter
    operating_point: TrafficPoint
    always: dict[str, Estimate]
    request_ids: list[str] = field(repr=False)

    @property
    def evaluated(self) -> int:
        return self.requests

    def cost_ratio(self, cost: float) -> float | None:
        """A mean cost as a fraction of always-top cost."""
        top = self.always[self.tiers[-1]].cost
        return cost / top if top > 0 else None

    def headline(self) -> dict[str, Any]:
        """The router's metrics under `EvalReport.headline`'s names (no intervals: see the module doc)."""
        return dict(self.router.metrics)

    def flat_metrics(self) -> dict[str, float]:
        """The numbers a manifest and an MLflow run carry, marked as traffic estimates where they differ."""
        point = self.operating_point
        metrics = {key: float(v) for key, v in self.headline().items() if v is not None}
        ratio = self.cost_ratio(point.point.cost)
        metrics |= {"quality": point.point.quality, "traffic_support": point.estimate.support}
        metrics["traffic_effective_n"] = point.estimate.effective_n
        return metrics | ({"cost_ratio": ratio} if ratio is not None else {})

    def to_json(self) -> dict[str, Any]:
        """The documented JSON document (docs/evaluation.md, "Evaluating on collected traffic")."""
        point = self.operating_point
        curve = self.router.curve
        top = self.always[self.tiers[-1]].cost
        return {
            "format": TRAFFIC_REPORT_FORMAT,
            "tiers": list(self.tiers),
            "requests": self.requests,
            **self.headline(),
            "operating_point": {
                "threshold": point.threshold,
                "rule": point.rule,
                "quality": point.point.quality,
                "cost_usd": point.point.cost,
                "cost_ratio": self.cost_ratio(point.point.cost),
                "tier_shares": dict(point.tier_shares),
                "support": point.estimate.support,
                "effective_n": point.estimate.effective_n,
            },
            "always": {
                name: {"quality": e.quality, "cost_usd": e.cost, "support": e.support}
                for name, e in self.always.items()
            },
            "curve": {
                "setting": curve.settings.tolist(),
                "cost_ratio": _finite(curve.cost / top) if top > 0 else None,
                "quality": _finite(curve.quality),  # null where no request could be judged
            },
        }

    def table(self) -> str:
        """Plain-text lines for the terminal."""
        point = self.operating_point
        metrics = self.router.metrics
        lines = [
            f"{self.requests} requests of collected traffic, weighted by inverse propensity (support "
            f"{point.estimate.support:.1%}, effective sample {point.estimate.effective_n:.0f})",
            f"router: APGR {_number(metrics.get('apgr'))}, gain over the static mix "
            f"{_number(metrics.get('gain_over_static'))}",
            f"at threshold {point.threshold:.3f} ({point.rule}): quality {point.point.quality:.3f}, cost "
            f"{_number(self.cost_ratio(point.point.cost))} x top",
        ]
        lines += [f"always {name:<12} quality {e.quality:.3f}" for name, e in self.always.items()]
        return "\n".join(lines)


def _finite(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def traffic_rows(frame: pl.DataFrame, split: str | None, split_rule: SplitRule | None = None) -> pl.DataFrame | None:
    """The evaluated rows of a labelled frame when they come from collected traffic, else None."""
    evaluated, _ = (split_rule or SplitRule()).select(frame, split)
    return evaluated if is_traffic(evaluated) else None


def evaluate_on_traffic(router: Router, rows: pl.DataFrame) -> TrafficEvaluation:
    """Score a router bundle on labelled traffic rows (see `traffic_rows`), as it would serve."""
    tiers = router.ladder.names
    log = TrafficLog.from_labels(rows, tiers)
    if log is None:
        raise ValueError("the rows hold no collected traffic (no served_tier / propensities columns)")
    success, cost = outcome_arrays(rows, tiers)
    outcomes, probability = log.revealed(success)
    policy = router.manifest.policy
    probs = router_probabilities(router, rows["prompt"].to_list())
    scores = rule_scores(probs, policy.rule, router.manifest.tier_costs_usd)
    always = {name: ips_estimate(outcomes, probability, cost, np.full(rows.height, k)) for k, name in enumerate(tiers)}
    curve = ips_curve(outcomes, probability, cost, scores, CURVE_THRESHOLDS)
    anchors = ips_anchors(outcomes, probability, cost)
    budgets = budget_grid(anchors, GAIN_BUDGETS)
    always_cost = np.array([e.cost for e in always.values()])
    always_quality = np.array([e.quality for e in always.values()])
    scale = SavingsScale(anchors, budgets, static_mix_quality(always_cost, always_quality, budgets), None)
    chosen = choose_tiers(scores, policy.threshold)
    estimate = ips_estimate(outcomes, probability, cost, chosen)
    picked = np.arange(rows.height), chosen
    revealed = np.isfinite(outcomes[picked]) & (probability[picked] > 0)
    shares = np.bincount(chosen, minlength=len(tiers)) / max(len(chosen), 1)
    return TrafficEvaluation(
        tiers=list(tiers),
        requests=rows.height,
        router=SweptRouter(curve=curve, metrics={**curve_summary(curve, anchors), **scale.summary(curve)}),
        operating_point=TrafficPoint(
            threshold=policy.threshold,
            rule=policy.rule,
            point=Point(estimate.cost, estimate.quality),
            estimate=estimate,
            tier_shares={name: float(s) for name, s in zip(tiers, shares, strict=True)},
            success=np.where(revealed, np.nan_to_num(outcomes[picked]), 0.0),
            cost=cost[picked],
            weights=np.where(revealed, 1.0 / np.where(revealed, probability[picked], 1.0), 0.0),
        ),
        always=always,
        request_ids=[str(i) for i in rows["request_id"].to_list()],
    )


def run_traffic_eval(
    router: Router,
    log: AttemptLog,
    *,
    ladder: TierLadder | None = None,
    split: str | None = "test",
    json_out: Path | None = None,
) -> TrafficEvaluation | None:
    """`tierwise eval` on collected traffic: the split's requests scored by inverse propensity, the JSON written;
    None when the logs are not collected traffic (then `evaluate.run_eval` applies)."""
    if "propensities" not in log.frame.columns:
        return None
    rows = traffic_rows(label_requests(log, evaluation_ladder(router, ladder)).frame, split)
    if rows is None:
        return None
    evaluation = evaluate_on_traffic(router, rows)
    if json_out is not None:
        write_json(evaluation.to_json(), json_out)
    return evaluation
