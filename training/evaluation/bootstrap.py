"""How sure a number measured on a few hundred requests is: percentile bootstrap intervals over requests.

A resample draws n requests with replacement; it is represented by how often each request was drawn (a row
of weights), so every resample of a curve re-weights the same sorted escalation steps (`ThresholdSteps`)
and all resamples are computed at once as (B, n) arrays. Two routers scored on the same rows share the
resamples (same seed, same n), so their difference is a paired comparison.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from tierwise.training.evaluation.curves import ThresholdSteps
from tierwise.training.evaluation.metrics import apgr_values, cost_ratio_values
from tierwise.training.evaluation.savings import SavingsScale

RESAMPLES = 500
SEED = 0
LEVEL = 0.95
# Differences within this of a bound are float noise (curves summed in different orders), not evidence.
NOISE = 1e-9
INTERVAL_KEYS = ("apgr", "gain_over_static", "cost_at_top_quality", "cost_ratio_at_95")
# Request counts held at once by `resampled_sums` (8 bytes each).
SUMMED_CELLS = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A 95% percentile interval; None at an end means the level is never reached there (or undefined)."""

    lo: float | None
    hi: float | None

    def to_json(self) -> list[float | None]:
        return [self.lo, self.hi]

    def lies_below(self, value: float) -> bool:
        """True when the whole interval is below `value` (an unreached end counts as above everything)."""
        return self.hi is not None and self.hi < value - NOISE

    def lies_above(self, value: float) -> bool:
        """True when the whole interval is above `value`."""
        return self.lo is not None and self.lo > value + NOISE


def _weight_chunks(n: int, resamples: int, seed: int, chunk: int) -> Iterator[np.ndarray]:
    """The resamples' request counts, `chunk` resamples at a time (multinomial: n draws with replacement)."""
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, chunk):
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, resamples - start)).astype(np.float64)


def resample_weights(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, n) counts of each request in each resample."""
    return next(_weight_chunks(n, resamples, seed, resamples))


def resampled_sums(values: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, V): each column of `values` (n, V) summed over each resample of its n requests. The resamples
    are drawn a few at a time, so memory stays small however many requests there are."""
    chunk = max(1, SUMMED_CELLS // max(len(values), 1))
    return np.concatenate([w @ values for w in _weight_chunks(len(values), resamples, seed, chunk)])


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> Interval:
    """The central `level` share of the resampled values; +inf (never reached) sorts above every number.

    Resamples where the metric is undefined (NaN) are left out; with none left the interval is (None, None).
    """
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return Interval(None, None)
    tail = (1.0 - level) / 2.0
    ends = np.quantile(np.sort(samples), [tail, 1.0 - tail], method="inverted_cdf")
    return Interval(*(float(v) if np.isfinite(v) else None for v in ends))


def curve_intervals(
    steps: ThresholdSteps, success: np.ndarray, cost: np.ndarray, weights: np.ndarray
) -> dict[str, Interval]:
    """Intervals of a router's headline metrics (`INTERVAL_KEYS`), every resample at once."""
    cost_points, quality_points = steps.points(steps.exact_thresholds(), weights)
    scale = SavingsScale.resampled(success, cost, weights)
    top_quality = scale.anchors.top_quality
    samples = {
        "apgr": apgr_values(cost_points, quality_points, scale.anchors),
        "gain_over_static": scale.gain_over_static(cost_points, quality_points),
        "cost_at_top_quality": cost_ratio_values(cost_points, quality_points, scale.anchors, top_quality),
        "cost_ratio_at_95": cost_ratio_values(cost_points, quality_points, scale.anchors, 0.95 * top_quality),
    }
    return {key: percentile_interval(samples[key]) for key in INTERVAL_KEYS}


def mean_interval(values: np.ndarray, weights: np.ndarray) -> Interval:
    """Interval of the mean of per-request values (e.g. a paired difference of two routers' outcomes)."""
    return percentile_interval(weights @ values / weights.sum(axis=1))
