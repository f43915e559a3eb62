"""A router judged on collected traffic (`tierwise collect`), weighted by inverse propensity (`off_policy`).

What `tierwise eval` and the retrain gate use when the evaluated requests come from served traffic: the
outcomes the traffic revealed are weighted so that a router is not rewarded for agreeing with the router
that served them (docs/evaluation.md, "Evaluating on collected traffic").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from classifier.policy import rule_scores
from classifier.router import Router
from training.evaluation.curves import Curve, choose_tiers
from training.evaluation.evaluate import router_probabilities
from training.evaluation.frames import outcome_arrays
from training.evaluation.metrics import apgr
from training.evaluation.off_policy import Estimate, TrafficLog, ips_anchors, ips_curve, ips_estimate, is_traffic
from training.splits import SplitRule

CURVE_THRESHOLDS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class TrafficEvaluation:
    """A router on collected traffic: its default operating point, each tier alone, and its threshold curve."""

    tiers: list[str]
    requests: int
    operating_point: Estimate
    always: dict[str, Estimate]
    curve: Curve
    apgr: float | None

    def cost_ratio(self, cost: float) -> float | None:
        top = self.always[self.tiers[-1]].cost
        return cost / top if top > 0 else None

    def table(self) -> str:
        """Plain-text lines for the terminal."""
        point = self.operating_point
        lines = [
            f"collected traffic: {self.requests} requests, weighted by inverse propensity "
            f"(support {point.support:.1%}, effective sample {point.effective_n:.0f})",
            f"router at its default threshold: quality {point.quality:.3f}, cost {_ratio(self.cost_ratio(point.cost))}"
            f" x top, APGR {_ratio(self.apgr)}",
        ]
        lines += [
            f"always {name:<10} quality {e.quality:.3f}, support {e.support:.1%}" for name, e in self.always.items()
        ]
        return "\n".join(lines)


def _ratio(value: float | None) -> str:
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
    scores = rule_scores(router_probabilities(router, rows["prompt"].to_list()), policy.rule)
    always = {name: ips_estimate(outcomes, probability, cost, np.full(rows.height, k)) for k, name in enumerate(tiers)}
    curve = ips_curve(outcomes, probability, cost, scores, CURVE_THRESHOLDS)
    return TrafficEvaluation(
        tiers=list(tiers),
        requests=rows.height,
        operating_point=ips_estimate(outcomes, probability, cost, choose_tiers(scores, policy.threshold)),
        always=always,
        curve=curve,
        apgr=apgr(curve, ips_anchors(outcomes, probability, cost)),
    )
