"""What a router saves over routing that never looks at the prompt: the static mix, the oracle frontier, and
the gain of a curve over the first, as a share of the second's (issue 13).

- The **static mix** is the best fixed mix of tiers: send a fixed share of traffic to each tier. Its quality at
  a budget is the upper concave, non-decreasing hull of the always-one-tier points (a mix of at most two tiers
  is optimal: a linear programme with two constraints).
- The **oracle frontier** is the best quality reachable at each budget knowing every outcome: each request
  that its cheapest tier fails moves to its cheapest successful tier, cheapest moves first (the linear
  programme's exact frontier; within one request of the best whole-request choice).
- **gain_over_static**: mean over evenly spaced costs from always-cheapest to always-top of the curve made
  monotone (best quality at cost <= c) minus the static mix at c; `max_gain_over_static` its maximum.
  **headroom_captured**: that mean gain over the oracle frontier's mean gain on the same grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tierwise.training.evaluation.curves import Curve
from tierwise.training.evaluation.metrics import (
    Anchors,
    best_quality_within,
    budget_grid,
    cost_ratio_values,
    defined,
)

GAIN_BUDGETS = 1001
STATIC_MIX_POINTS = 10_001


def static_mix_quality(always_cost: np.ndarray, always_quality: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """Best success rate of a fixed mix of tiers costing at most each budget (-inf below the cheapest tier).

    `always_cost` and `always_quality` are the always-one-tier points (..., T); `budgets` (..., G). Rows are
    resamples: every row is solved on its own, with no loop over them.
    """
    cost = np.asarray(always_cost, dtype=np.float64)
    quality = np.asarray(always_quality, dtype=np.float64)
    tol = 1e-9 * max(float(np.max(np.abs(cost))), float(np.max(np.abs(budgets))))
    best = np.full(np.shape(budgets), -np.inf)
    tiers = cost.shape[-1]
    for i in range(tiers):
        low_cost, low_quality = cost[..., i, None], quality[..., i, None]
        best = np.where(low_cost <= budgets + tol, np.maximum(best, low_quality), best)
        for j in range(tiers):
            high_cost, high_quality = cost[..., j, None], quality[..., j, None]
            spread = high_cost - low_cost
            between = (spread > 0) & (low_cost <= budgets) & (budgets <= high_cost)
            mixed = low_quality + (high_quality - low_quality) * (budgets - low_cost) / np.where(spread > 0, spread, 1)
            best = np.where(between, np.maximum(best, mixed), best)
    return best


def static_mix_shares(always_cost: np.ndarray, always_quality: np.ndarray, budget: float) -> np.ndarray:
    """The share of traffic on each tier behind `static_mix_quality` at one budget (below the cheapest tier: all
    on it), for where the mix itself is replayed (time to an acceptable answer per latency band), not only scored.
    """
    cost = np.asarray(always_cost, dtype=np.float64)
    quality = np.asarray(always_quality, dtype=np.float64)
    tol = 1e-9 * max(float(np.max(np.abs(cost))), abs(budget))
    shares, best = np.eye(len(cost))[int(np.argmin(cost))], -np.inf
    for i in range(len(cost)):
        if cost[i] > budget + tol:
            continue
        for j in range(len(cost)):
            high = 0.0 if cost[j] <= cost[i] else min(1.0, (budget - cost[i]) / (cost[j] - cost[i]))
            mixed = quality[i] + high * (quality[j] - quality[i])
            if mixed > best:
                best, shares = mixed, np.zeros(len(cost))
                shares[i] += 1.0 - high
                shares[j] += high
    return shares


def static_mix_curve(always_cost: np.ndarray, always_quality: np.ndarray, points: int = STATIC_MIX_POINTS) -> Curve:
    """The static mix sampled finely between the cheapest and the dearest tier (settings: the budgets)."""
    budgets = np.union1d(np.linspace(always_cost.min(), always_cost.max(), points), always_cost)
    return Curve(settings=budgets, cost=budgets, quality=static_mix_quality(always_cost, always_quality, budgets))


def oracle_frontier(success: np.ndarray, cost: np.ndarray) -> Curve:
    """Vertices of the oracle frontier on fully known rows: best mean quality at each mean cost (see module doc).

    With outcomes 0/1 a request's own frontier is one segment: from its cheapest tier (by cost; ties to a
    success) to its cheapest successful tier, if that one failed. Segments are taken by rising cost.
    """
    rows = np.arange(success.shape[0])
    start = _cheapest_start(success, cost)
    start_cost, start_success = cost[rows, start], success[rows, start]
    success_cost = np.where(success == 1, cost, np.inf).min(axis=1)
    moves = (start_success == 0) & np.isfinite(success_cost)
    extra = np.sort(success_cost[moves] - start_cost[moves])
    n = success.shape[0]
    vertex_cost = (start_cost.sum() + np.concatenate([[0.0], np.cumsum(extra)])) / n
    vertex_quality = (start_success.sum() + np.arange(len(extra) + 1)) / n
    return Curve(settings=np.arange(len(extra) + 1, dtype=np.float64), cost=vertex_cost, quality=vertex_quality)


def _cheapest_start(success: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Each request's cheapest tier by cost, a successful one among equally cheap tiers."""
    cheapest = cost <= cost.min(axis=1, keepdims=True)
    return np.argmax(np.where(cheapest, success + 1, 0), axis=1)


@dataclass(frozen=True)
class SavingsScale:
    """What curves are measured against on one set of rows: anchors, a cost grid from always-cheapest to
    always-top, and the static mix (and, for the rows as they are, the oracle frontier) on that grid.

    Arrays are (G,) for the rows as they are, (B, G) for B resamples (`resampled`).
    """

    anchors: Anchors
    budgets: np.ndarray
    static: np.ndarray
    oracle: np.ndarray | None

    @classmethod
    def of(cls, success: np.ndarray, cost: np.ndarray) -> SavingsScale:
        """The scale of fully known (n, T) rows."""
        anchors = Anchors.from_outcomes(success, cost)
        budgets = budget_grid(anchors, GAIN_BUDGETS)
        frontier = oracle_frontier(success, cost)
        return cls(
            anchors=anchors,
            budgets=budgets,
            static=static_mix_quality(cost.mean(axis=0), success.mean(axis=0), budgets),
            oracle=np.interp(budgets, frontier.cost, frontier.quality),
        )

    @classmethod
    def resampled(cls, success: np.ndarray, cost: np.ndarray, weights: np.ndarray) -> SavingsScale:
        """The scale of each of B resamples, given as (B, n) request weights (no oracle: not needed there)."""
        anchors = Anchors.from_outcomes(success, cost, weights)
        total = weights.sum(axis=1, keepdims=True)
        budgets = budget_grid(anchors, GAIN_BUDGETS)
        return cls(
            anchors=anchors,
            budgets=budgets,
            static=static_mix_quality(weights @ cost / total, weights @ success / total, budgets),
            oracle=None,
        )

    @property
    def defined(self) -> np.ndarray:
        """Where a gain means something: the top tier costs more than the cheapest."""
        return np.asarray(self.anchors.top_cost) > np.asarray(self.anchors.cheapest_cost)

    def gains(self, cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
        """The monotone curve of points (P,) or (B, P) minus the static mix, at every grid cost."""
        return best_quality_within(cost, quality, self.budgets) - self.static

    def gain_over_static(self, cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
        """Mean gain over the static mix across the grid; NaN where undefined."""
        return np.where(self.defined, self.gains(cost, quality).mean(axis=-1), np.nan)

    def summary(self, curve: Curve) -> dict[str, float | None]:
        """The savings metrics of one curve on the rows as they are, under their JSON key names."""
        gains = self.gains(curve.cost, curve.quality)
        usable = bool(self.defined)
        headroom = float((self.oracle - self.static).mean()) if self.oracle is not None else 0.0
        top = cost_ratio_values(curve.cost, curve.quality, self.anchors, self.anchors.top_quality)
        return {
            "gain_over_static": defined(gains.mean()) if usable else None,
            "max_gain_over_static": defined(gains.max()) if usable else None,
            "cost_at_top_quality": defined(top),
            "headroom_captured": defined(gains.mean() / headroom) if usable and headroom > 0 else None,
        }
