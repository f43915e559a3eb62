"""Cost-quality curves: what a threshold policy costs and achieves on requests whose outcomes are known."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Curve:
    """Operating points of one router family, one per setting (threshold or mix ratio), in setting order.

    `cost` is the mean cost per request in USD and `quality` the success rate at each setting.
    """

    settings: np.ndarray
    cost: np.ndarray
    quality: np.ndarray

    def __len__(self) -> int:
        return len(self.settings)


def known_rows(success: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Mask of requests with every tier's outcome and cost known: the only rows a curve can be scored on.

    A router may pick any tier at some threshold, so a request with an untried (censored) tier cannot be
    scored without guessing its outcome; such rows are left out and counted by the caller.
    """
    return np.isfinite(success).all(axis=1) & np.isfinite(cost).all(axis=1)


def choose_tiers(probs: np.ndarray, threshold: float) -> np.ndarray:
    """The default policy of issue 3, vectorised: cheapest tier with P(success) >= threshold, else the top."""
    passes = np.asarray(probs) >= threshold
    return np.where(passes.any(axis=1), passes.argmax(axis=1), passes.shape[1] - 1)


def outcome_of(success: np.ndarray, cost: np.ndarray, chosen: np.ndarray) -> tuple[float, float]:
    """Mean cost and success rate when request i goes to tier chosen[i]."""
    rows = np.arange(len(chosen))
    return float(cost[rows, chosen].mean()), float(success[rows, chosen].mean())


def check_outcomes(success: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate fully known outcome arrays (n >= 1 rows, T >= 1 tiers, success in {0, 1}) and return floats."""
    success = np.asarray(success, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.float64)
    if success.ndim != 2 or success.shape != cost.shape:
        raise ValueError(f"success {success.shape} and cost {cost.shape} must both be (requests, tiers)")
    if success.shape[0] == 0 or success.shape[1] == 0:
        raise ValueError("no requests with every tier's outcome known to evaluate on")
    if not known_rows(success, cost).all():
        raise ValueError("success and cost must be known (finite) for every request and tier here")
    if not np.isin(success, (0.0, 1.0)).all():
        raise ValueError("success values must be 0 or 1")
    return success, cost


def check_probs(probs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Validate router probabilities of the given shape, clipping float noise (1e-6) into [0, 1]."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != shape:
        raise ValueError(f"probs {probs.shape} must have the shape of success {shape}")
    if not np.isfinite(probs).all() or probs.min() < -1e-6 or probs.max() > 1 + 1e-6:
        raise ValueError("probs must be finite probabilities in [0, 1]")
    return np.clip(probs, 0.0, 1.0)


def threshold_curve(
    success: np.ndarray, cost: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | None = None
) -> Curve:
    """Sweep the quality threshold over [0, 1] and record mean cost and success rate at each value.

    With `thresholds=None` the sweep is exact: one point per distinct routing decision the policy can
    make on these rows (every threshold in between gives one of them), so no grid hides the best
    operating points. Runs in O(n T log(n T)): request i leaves tier k once the threshold exceeds
    max(p_i0..p_ik), so the curve is a sorted cumulative sum of per-request escalation steps.
    """
    success, cost = check_outcomes(success, cost)
    probs = check_probs(probs, success.shape)
    leave_at = np.maximum.accumulate(probs, axis=1)[:, :-1].ravel()
    order = np.argsort(leave_at, kind="stable")
    leave_at = leave_at[order]
    cost_steps = np.concatenate([[0.0], np.cumsum(np.diff(cost, axis=1).ravel()[order])])
    success_steps = np.concatenate([[0.0], np.cumsum(np.diff(success, axis=1).ravel()[order])])
    if thresholds is None:
        inside = leave_at[(leave_at > 0.0) & (leave_at < 1.0)]
        thresholds = np.unique(np.concatenate([[0.0, 1.0], inside]))
    thresholds = np.asarray(thresholds, dtype=np.float64)
    crossed = np.searchsorted(leave_at, thresholds, side="left")
    n = success.shape[0]
    return Curve(
        settings=thresholds,
        cost=(cost[:, 0].sum() + cost_steps[crossed]) / n,
        quality=(success[:, 0].sum() + success_steps[crossed]) / n,
    )
