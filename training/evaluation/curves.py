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


@dataclass(frozen=True)
class ThresholdSteps:
    """The exact threshold sweep of one router on fully known rows, as per-request escalation steps.

    Every request starts on the cheapest tier; step j moves request `request[j]` one tier up once the threshold
    exceeds `leave_at[j]` (sorted), changing its cost by `cost_step[j]` and its success by `success_step[j]`.
    Request i leaves tier k once the threshold exceeds max(p_i0..p_ik), so a curve is a cumulative sum of
    steps; weighting the requests (a bootstrap resample) re-weights the same sorted steps, with no re-sorting.
    """

    first_cost: np.ndarray
    first_success: np.ndarray
    request: np.ndarray
    leave_at: np.ndarray
    cost_step: np.ndarray
    success_step: np.ndarray

    @classmethod
    def of(cls, success: np.ndarray, cost: np.ndarray, probs: np.ndarray) -> ThresholdSteps:
        """The steps of routing by `probs` (the rule's scores) on known `success` and `cost` rows."""
        success, cost = check_outcomes(success, cost)
        probs = check_probs(probs, success.shape)
        leave_at = np.maximum.accumulate(probs, axis=1)[:, :-1].ravel()
        order = np.argsort(leave_at, kind="stable")
        request = np.repeat(np.arange(success.shape[0]), success.shape[1] - 1)
        return cls(
            first_cost=cost[:, 0],
            first_success=success[:, 0],
            request=request[order],
            leave_at=leave_at[order],
            cost_step=np.diff(cost, axis=1).ravel()[order],
            success_step=np.diff(success, axis=1).ravel()[order],
        )

    def exact_thresholds(self) -> np.ndarray:
        """One threshold per distinct routing decision on these rows (every threshold between gives one of them)."""
        inside = self.leave_at[(self.leave_at > 0.0) & (self.leave_at < 1.0)]
        return np.unique(np.concatenate([[0.0, 1.0], inside]))

    def points(self, thresholds: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean cost and success rate at each threshold: (P,) arrays, or (B, P) for (B, n) request weights."""
        weights = np.ones(len(self.first_cost)) if weights is None else np.asarray(weights, dtype=np.float64)
        crossed = np.searchsorted(self.leave_at, np.asarray(thresholds, dtype=np.float64), side="left")
        total = weights.sum(axis=-1, keepdims=True)
        step_weights = weights[..., self.request]

        def mean_at(first: np.ndarray, step: np.ndarray) -> np.ndarray:
            steps = np.cumsum(step_weights * step, axis=-1)
            steps = np.concatenate([np.zeros((*steps.shape[:-1], 1)), steps], axis=-1)
            return ((weights @ first)[..., None] + steps[..., crossed]) / total

        return mean_at(self.first_cost, self.cost_step), mean_at(self.first_success, self.success_step)

    def curve(self, thresholds: np.ndarray | None = None) -> Curve:
        """The curve at these thresholds, or at the exact ones (one point per distinct decision)."""
        settings = self.exact_thresholds() if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        cost, quality = self.points(settings)
        return Curve(settings=settings, cost=cost, quality=quality)


def threshold_curve(
    success: np.ndarray, cost: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | None = None
) -> Curve:
    """Sweep the quality threshold over [0, 1] and record mean cost and success rate at each value.

    With `thresholds=None` the sweep is exact: one point per distinct routing decision the policy can
    make on these rows, so no grid hides the best operating points. Runs in O(n T log(n T))
    (`ThresholdSteps`).
    """
    return ThresholdSteps.of(success, cost, probs).curve(thresholds)
