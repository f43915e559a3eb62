"""Where a router stands against one baseline at every cost, with paired intervals: is it anywhere below?

At each of the 1,001 evenly spaced costs from always-cheapest to always-top, the router's curve made monotone
minus the baseline's (the static mix, or a swept baseline made monotone), on the rows as they are and on every
bootstrap resample of them (the same resamples for both curves: a paired difference). A router is "nowhere
below the baseline by more than the interval" when no cost has its whole interval below 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tierwise.training.evaluation.bootstrap import LEVEL, NOISE, resample_weights
from tierwise.training.evaluation.metrics import best_quality_within
from tierwise.training.evaluation.report import BASELINES, EvalReport, SweptRouter
from tierwise.training.evaluation.savings import SavingsScale


@dataclass(frozen=True)
class GapProfile:
    """Router minus a baseline at each grid cost (as a fraction of always-top): the value and its interval."""

    cost_ratio: np.ndarray
    gap: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def worst(self) -> int:
        """The grid index where the router is furthest below (or least above) the baseline."""
        return int(np.argmin(self.gap))

    @property
    def provably_below(self) -> int:
        """How many grid costs have the whole interval below 0 (by more than float noise)."""
        return int((self.hi < -NOISE).sum())


def _monotone(swept: SweptRouter, weights: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    steps = swept.steps
    if steps is None:
        raise ValueError("only threshold-swept routers can be resampled")
    return best_quality_within(*steps.points(steps.exact_thresholds(), weights), budgets)


def gap_profile(report: EvalReport, baseline: str) -> GapProfile:
    """The router against `baseline` ("static_mix", "length" or "knn") on the report's scored rows."""
    success, cost = report.outcomes[report.scored], report.costs[report.scored]
    n = len(success)
    weights = np.vstack([np.ones(n), resample_weights(n)])  # row 0: the rows as they are
    scale = SavingsScale.resampled(success, cost, weights)
    router = _monotone(report.router, weights, scale.budgets)
    if baseline == "static_mix":
        other = scale.static
    elif baseline in report.baselines and BASELINES[baseline].scores is not None:
        other = _monotone(report.baselines[baseline], weights, scale.budgets)
    else:
        raise ValueError(f"no {baseline!r} baseline in this report")
    gaps = router - other
    tail = (1.0 - LEVEL) / 2.0
    lo, hi = np.quantile(gaps[1:], [tail, 1.0 - tail], axis=0, method="inverted_cdf")
    return GapProfile(scale.budgets[0] / float(scale.anchors.top_cost[0]), gaps[0], lo, hi)
