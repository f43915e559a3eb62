"""Summary numbers of a cost-quality curve (APGR, CPT, cost at quality, AIQ) and of routing behaviour."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tierwise.training.evaluation.curves import Curve

APGR_BUDGETS = 50
GAP_FRACTIONS = (0.5, 0.8)
QUALITY_FRACTIONS = (0.90, 0.95, 0.99, 1.00)
ECE_BINS = 10
_QUALITY_TOL = 1e-12


Number = float | np.ndarray  # one value, or one per bootstrap resample


@dataclass(frozen=True)
class Anchors:
    """Always-cheapest and always-top cost and quality on the evaluated rows: every metric is relative to them.

    Floats for the rows as they are; arrays of shape (B,) for B resamples of them (`from_outcomes` with weights).
    """

    cheapest_cost: Number
    cheapest_quality: Number
    top_cost: Number
    top_quality: Number

    @classmethod
    def from_outcomes(cls, success: np.ndarray, cost: np.ndarray, weights: np.ndarray | None = None) -> Anchors:
        """Anchors of fully known (n, T) outcome and cost arrays, optionally under (B, n) request weights."""
        if weights is None:
            return cls(
                cheapest_cost=float(cost[:, 0].mean()),
                cheapest_quality=float(success[:, 0].mean()),
                top_cost=float(cost[:, -1].mean()),
                top_quality=float(success[:, -1].mean()),
            )
        total = weights.sum(axis=-1)
        return cls(
            cheapest_cost=weights @ cost[:, 0] / total,
            cheapest_quality=weights @ success[:, 0] / total,
            top_cost=weights @ cost[:, -1] / total,
            top_quality=weights @ success[:, -1] / total,
        )

    @property
    def gap(self) -> Number:
        """Quality the top tier adds over the cheapest: the denominator of APGR and CPT."""
        return self.top_quality - self.cheapest_quality


def _column(value: Number) -> np.ndarray:
    """An anchor as a column that broadcasts against (..., points) arrays."""
    return np.asarray(value, dtype=np.float64)[..., None]


def defined(value: np.ndarray | float) -> float | None:
    """A metric as a float, or None where it is undefined or never reached (NaN or infinite)."""
    value = float(value)
    return value if np.isfinite(value) else None


def _cost_tol(*costs: np.ndarray | float) -> float:
    """Slack for comparing costs summed in different orders (about a billionth of the largest cost)."""
    return 1e-9 * max(float(np.max(np.abs(c))) for c in costs)


def best_quality_within(cost: np.ndarray, quality: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """Highest success rate among the points costing at most each budget (-inf where none does).

    Row-wise on (B, P) points and (B, G) budgets (each row ascending), or on one curve's 1-D arrays: one
    stable sort merges points and budgets, so a point costing exactly a budget counts as affordable.
    """
    shape = np.broadcast_shapes(np.shape(cost)[:-1], np.shape(budgets)[:-1])
    cost = np.broadcast_to(cost, shape + np.shape(cost)[-1:])
    quality = np.broadcast_to(quality, cost.shape)
    budgets = np.broadcast_to(budgets, shape + np.shape(budgets)[-1:])
    keys = np.concatenate([cost, budgets + _cost_tol(budgets, cost)], axis=-1)
    order = np.argsort(keys, axis=-1, kind="stable")
    values = np.concatenate([quality, np.full(budgets.shape, -np.inf)], axis=-1)
    running = np.maximum.accumulate(np.take_along_axis(values, order, axis=-1), axis=-1)
    return running[order >= cost.shape[-1]].reshape(budgets.shape)


def budget_grid(anchors: Anchors, points: int) -> np.ndarray:
    """`points` evenly spaced budgets from always-cheapest to always-top cost (one row per resample)."""
    low = _column(anchors.cheapest_cost)
    return low + (_column(anchors.top_cost) - low) * np.linspace(0.0, 1.0, points)


def apgr_values(cost: np.ndarray, quality: np.ndarray, anchors: Anchors, n_budgets: int = APGR_BUDGETS) -> np.ndarray:
    """APGR of points (P,) or (B, P) against matching anchors; NaN where undefined (see `apgr`)."""
    gap = np.asarray(anchors.gap, dtype=np.float64)
    usable = (gap > 0) & (np.asarray(anchors.top_cost) >= np.asarray(anchors.cheapest_cost))
    best = best_quality_within(cost, quality, budget_grid(anchors, n_budgets))
    recovered = (best - _column(anchors.cheapest_quality)) / _column(np.where(usable, gap, 1.0))
    return np.where(usable, np.maximum(recovered, 0.0).mean(axis=-1), np.nan)


def apgr(curve: Curve, anchors: Anchors, n_budgets: int = APGR_BUDGETS) -> float | None:
    """Average performance gap recovered: RouteLLM's APGR generalised to N tiers by cost (issue 7).

    Mean over `n_budgets` evenly spaced budgets from always-cheapest to always-top cost of
    (best success rate at cost <= budget - q_cheapest) / (q_top - q_cheapest), each term floored at 0
    and not capped (a router that beats the top tier can exceed 1). None when the top tier is no
    better than the cheapest or costs less, where the ratio means nothing.
    """
    return defined(apgr_values(curve.cost, curve.quality, anchors, n_budgets))


def cost_ratio_values(cost: np.ndarray, quality: np.ndarray, anchors: Anchors, quality_needed: Number) -> np.ndarray:
    """Lowest cost, as a fraction of always-top, of a point reaching `quality_needed`: +inf where none does,
    NaN where always-top costs nothing. Works on (P,) or (B, P) points with matching anchors."""
    reaching = quality >= _column(quality_needed) - _QUALITY_TOL
    lowest = np.where(reaching, cost, np.inf).min(axis=-1)
    top = np.asarray(anchors.top_cost, dtype=np.float64)
    return np.where(top > 0, lowest / np.where(top > 0, top, 1.0), np.nan)


def cost_to_recover_gap(curve: Curve, anchors: Anchors, fraction: float) -> float | None:
    """CPT(fraction): cost as a fraction of always-top needed to recover that share of the quality gap."""
    if anchors.gap <= 0:
        return None
    needed = anchors.cheapest_quality + fraction * anchors.gap
    return defined(cost_ratio_values(curve.cost, curve.quality, anchors, needed))


def cost_ratio_at_quality(curve: Curve, anchors: Anchors, fraction: float) -> float | None:
    """Cost as a fraction of always-top at which the curve first reaches `fraction` of top quality."""
    return defined(cost_ratio_values(curve.cost, curve.quality, anchors, fraction * anchors.top_quality))


def monotone_hull(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the non-decreasing concave (upper convex) hull of points, by increasing x.

    Keeps the points no cheaper point beats, then drops those under a chord between neighbours: what
    randomising between operating points can reach, as RouterBench draws it.
    """
    order = np.lexsort((-y, x))
    frontier: list[tuple[float, float]] = []
    for px, py in zip(x[order], y[order], strict=True):
        if frontier and py <= frontier[-1][1]:
            continue
        while len(frontier) >= 2:
            (ax, ay), (bx, by) = frontier[-2], frontier[-1]
            if (bx - ax) * (py - ay) - (by - ay) * (px - ax) >= 0:
                frontier.pop()
            else:
                break
        frontier.append((float(px), float(py)))
    hull = np.array(frontier, dtype=np.float64).reshape(-1, 2)
    return hull[:, 0], hull[:, 1]


def aiq(curve: Curve, anchors: Anchors) -> float | None:
    """Area under the curve's non-decreasing convex hull over normalised cost in [0, 1] (RouterBench AIQ).

    Cost is normalised as (cost - always-cheapest) / (always-top - always-cheapest). The hull is flat
    after its best point and zero before its cheapest one. None when top costs no more than cheapest.
    """
    span = anchors.top_cost - anchors.cheapest_cost
    if span <= 0:
        return None
    hx, hy = monotone_hull((curve.cost - anchors.cheapest_cost) / span, curve.quality)
    hx = np.append(hx, max(1.0, hx[-1]))
    hy = np.append(hy, hy[-1])
    xs = np.clip(hx, 0.0, 1.0)
    ys = np.interp(xs, hx, hy)
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2))


def curve_summary(curve: Curve, anchors: Anchors) -> dict[str, float | None]:
    """The curve metrics every router and baseline reports, under their JSON key names."""
    summary: dict[str, float | None] = {"apgr": apgr(curve, anchors)}
    for fraction in GAP_FRACTIONS:
        summary[f"cpt{round(fraction * 100)}"] = cost_to_recover_gap(curve, anchors, fraction)
    for fraction in QUALITY_FRACTIONS:
        summary[f"cost_ratio_at_{round(fraction * 100)}"] = cost_ratio_at_quality(curve, anchors, fraction)
    summary["aiq"] = aiq(curve, anchors)
    return summary


def expected_calibration_error(probs: np.ndarray, outcomes: np.ndarray, n_bins: int = ECE_BINS) -> float | None:
    """ECE with equal-width bins: sum over bins of (share of rows) x |mean P(success) - success rate|.

    Rows whose outcome is NaN (tier never tried) are skipped; None when no row is left.
    """
    known = np.isfinite(outcomes)
    probs, outcomes = np.asarray(probs, dtype=np.float64)[known], np.asarray(outcomes, dtype=np.float64)[known]
    if probs.size == 0:
        return None
    bins = np.minimum((probs * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gaps = np.abs(np.bincount(bins, probs, n_bins) - np.bincount(bins, outcomes, n_bins))
    return float(gaps.sum() / count.sum())


@dataclass(frozen=True)
class TierCalibration:
    """How well one tier's P(success) matches outcomes on the requests where that tier was tried."""

    tier: str
    n: int
    success_rate: float | None
    mean_prob: float | None
    accuracy: float | None
    ece: float | None


def tier_calibration(tiers: list[str], probs: np.ndarray, success: np.ndarray) -> list[TierCalibration]:
    """Per-tier calibration, each on every request where that tier's outcome is known (censoring-aware)."""
    report = []
    for k, name in enumerate(tiers):
        known = np.isfinite(success[:, k])
        p, y = probs[known, k], success[known, k]
        report.append(
            TierCalibration(
                tier=name,
                n=int(known.sum()),
                success_rate=float(y.mean()) if y.size else None,
                mean_prob=float(p.mean()) if p.size else None,
                accuracy=float(((p >= 0.5) == (y == 1)).mean()) if y.size else None,
                ece=expected_calibration_error(p, y),
            )
        )
    return report


def cheapest_success(success: np.ndarray) -> np.ndarray:
    """The label of each fully known request: cheapest tier that succeeded, else the top tier."""
    succeeded = success == 1
    return np.where(succeeded.any(axis=1), succeeded.argmax(axis=1), success.shape[1] - 1)


@dataclass(frozen=True)
class RoutingRates:
    """How tier choices compare with the cheapest tier that succeeded, as shares of the evaluated requests.

    under_routing: the chosen tier failed and a higher tier succeeded. over_routing: a cheaper tier than
    the chosen one succeeded. exact_tier_accuracy: the chosen tier is the label (cheapest success, else
    top). A request can be under- and over-routed at once when outcomes are not monotone across tiers.
    """

    under_routing: float
    over_routing: float
    exact_tier_accuracy: float


def routing_rates(success: np.ndarray, chosen: np.ndarray) -> RoutingRates:
    """Under-/over-routing and exact-tier accuracy of tier choices on fully known outcomes."""
    rows = np.arange(len(chosen))
    tiers = np.arange(success.shape[1])
    succeeded = success == 1
    higher_succeeded = (succeeded & (tiers[None, :] > chosen[:, None])).any(axis=1)
    lower_succeeded = (succeeded & (tiers[None, :] < chosen[:, None])).any(axis=1)
    return RoutingRates(
        under_routing=float((~succeeded[rows, chosen] & higher_succeeded).mean()),
        over_routing=float(lower_succeeded.mean()),
        exact_tier_accuracy=float((chosen == cheapest_success(success)).mean()),
    )
