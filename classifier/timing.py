"""How long an attempt on each tier takes, and how long a chain of attempts takes to an acceptable answer.

A tier's time model (`TierTime`) is its first-token time, its output rate and the quantiles of a whole
attempt's latency, fitted from logs at train time (`tierwise.training.fit.time_fit`) or estimated from published
figures.
`TimeModel` turns the quantiles into what the policy asks on every request, precomputed once per bundle:
the mean time of each tier, and for every set of tiers a sorted table of their summed latency, so the chance
that a chain's attempts finish inside a budget is one binary search, never a simulation.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError

# The latency quantiles a time model stores; below the first and above the last the latency is clamped.
QUANTILE_LEVELS = (0.01, *(round(0.05 * k, 2) for k in range(1, 20)), 0.99)
# Equal-mass points each tier's latency (and each sum of latencies) is represented by.
ATOMS = 200


class TimingError(InputError):
    """A time model that cannot be used: missing, negative or non-finite figures, unordered quantiles."""


@dataclass(frozen=True)
class TierTime:
    """How long one attempt on a tier takes: first token, output rate, and whole-attempt latency quantiles.

    `latency_ms_quantiles` holds the latency at each of QUANTILE_LEVELS (the policy decides by these alone);
    `first_token_ms` and `output_tokens_per_s` describe the tier and are None where the logs cannot tell them;
    `source` says where the figures come from ("logs: N attempts", or "estimate: ...").
    """

    first_token_ms: float | None
    output_tokens_per_s: float | None
    latency_ms_quantiles: tuple[float, ...]
    source: str

    def __post_init__(self) -> None:
        figures = [v for v in (self.first_token_ms, self.output_tokens_per_s) if v is not None]
        if not all(_is_number(v) and v >= 0 for v in (*figures, *self.latency_ms_quantiles)):
            raise TimingError(f"time model ({self.source}): figures must be finite numbers >= 0")
        if self.output_tokens_per_s is not None and self.output_tokens_per_s <= 0:
            raise TimingError(f"time model ({self.source}): output_tokens_per_s must be > 0")
        if len(self.latency_ms_quantiles) != len(QUANTILE_LEVELS):
            raise TimingError(
                f"time model ({self.source}): {len(self.latency_ms_quantiles)} latency quantiles, "
                f"expected {len(QUANTILE_LEVELS)}"
            )
        if any(b < a for a, b in zip(self.latency_ms_quantiles, self.latency_ms_quantiles[1:], strict=False)):
            raise TimingError(f"time model ({self.source}): latency quantiles must not decrease")

    @classmethod
    def from_latencies(
        cls,
        latencies_ms: Sequence[float],
        first_token_ms: float | None,
        output_tokens_per_s: float | None,
        source: str,
    ) -> TierTime:
        """A time model whose quantiles are those of observed (or modelled) whole-attempt latencies."""
        values = np.asarray(latencies_ms, dtype=np.float64)
        if values.size == 0:
            raise TimingError(f"time model ({source}): no latencies to take quantiles of")
        quantiles = tuple(float(q) for q in np.quantile(values, QUANTILE_LEVELS))
        return cls(_float_or_none(first_token_ms), _float_or_none(output_tokens_per_s), quantiles, source)

    @classmethod
    def estimate(
        cls, first_token_ms: float, output_tokens_per_s: float, output_tokens: Sequence[float], source: str
    ) -> TierTime:
        """A time model from published figures: first token, then each attempt's output tokens at the rate."""
        tokens = np.asarray(output_tokens, dtype=np.float64)
        latencies = first_token_ms + 1000.0 * tokens / output_tokens_per_s
        return cls.from_latencies(latencies, first_token_ms, output_tokens_per_s, source)

    def quantile(self, level: float) -> float:
        """Latency in ms at a probability level, interpolated between the stored quantiles (clamped at the ends)."""
        return float(np.interp(level, QUANTILE_LEVELS, self.latency_ms_quantiles))

    def atoms(self) -> np.ndarray:
        """ATOMS equal-mass latencies (ms) standing for this tier's latency distribution."""
        return np.interp((np.arange(ATOMS) + 0.5) / ATOMS, QUANTILE_LEVELS, self.latency_ms_quantiles)

    def to_json(self) -> dict[str, Any]:
        """The manifest's record of this time model, with the quantiles GetModelInfo shows."""
        return {
            "first_token_ms": self.first_token_ms,
            "output_tokens_per_s": self.output_tokens_per_s,
            "latency_ms_quantiles": list(self.latency_ms_quantiles),
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "time model") -> TierTime:
        """Rebuild a time model from its manifest record, refusing anything malformed with TimingError."""
        try:
            return cls(
                first_token_ms=data["first_token_ms"],
                output_tokens_per_s=data["output_tokens_per_s"],
                latency_ms_quantiles=tuple(data["latency_ms_quantiles"]),
                source=str(data["source"]),
            )
        except (KeyError, TypeError) as exc:
            raise TimingError(f"{where}: malformed time model ({exc})") from exc
        except TimingError as exc:
            raise TimingError(f"{where}: {exc}") from exc


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


def _sum_atoms(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """ATOMS equal-mass points of the sum of two independent latencies given as equal-mass points."""
    total = np.sort((left[:, None] + right[None, :]).ravel())
    return total[(np.arange(ATOMS) * total.size + total.size // 2) // ATOMS]


class TimeModel:
    """Every tier's time model, with what the policy needs per request computed once.

    `within(mask, budget_ms)` is the chance that one attempt on each tier in the bit mask, one after the
    other, finishes inside the budget (attempt times independent); `mean_ms[k]` is tier k's mean latency.
    """

    def __init__(self, times: Sequence[TierTime]):
        self.tiers = tuple(times)
        single = [t.atoms() for t in self.tiers]
        self.mean_ms = tuple(float(a.mean()) for a in single)
        sums: dict[int, np.ndarray] = {}
        for mask in range(1, 1 << len(single)):
            top = mask.bit_length() - 1
            rest = mask & ~(1 << top)
            sums[mask] = single[top] if rest == 0 else _sum_atoms(sums[rest], single[top])
        self._sums = {mask: atoms.tolist() for mask, atoms in sums.items()}

    def within(self, mask: int, budget_ms: float) -> float:
        """P(the attempts on the tiers of `mask` together take at most budget_ms)."""
        return bisect_right(self._sums[mask], budget_ms) / ATOMS

    def expected_chain_time(self, probs: Sequence[float], chain: Sequence[int]) -> float:
        """Expected time (ms) to an acceptable answer: each tier's mean time times the chance of reaching it."""
        total, best = 0.0, 0.0
        for tier in chain:
            total += (1.0 - best) * self.mean_ms[tier]
            best = max(best, float(probs[tier]))
        return total
