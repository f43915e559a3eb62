"""Turning per-tier success probabilities into a tier choice and a fallback chain.

Rules for `threshold` mode (the quality threshold q is the bundle's default or the request's quality_target):
- `absolute`: the cheapest allowed tier with P(success) >= q, else the top allowed tier;
- `relative`: the cheapest allowed tier with P(success) >= q x the best allowed tier's P(success), i.e. the
  cheapest tier that keeps a share q of the best reachable quality;
- `utility`: the allowed tier maximising P(success) - lambda x cost / the top tier's cost, lambda = (1 - q) / q:
  q = 1 buys the best expected quality, q -> 0 the cheapest tier. It traces the best cost-quality frontier
  calibrated probabilities allow. It is written as per-tier scores that the same threshold comparison reads
  (`utility_row`), so curves, policy choice and serving share one sweep.
`cost` mode picks the escalation chain with the lowest expected cost to an acceptable answer: each tier in
the chain is paid for when every earlier tier has failed. Tiers are assumed nested (a request a cheaper
tier solves, a stronger one solves too), so the chance of reaching a tier is one minus the best
success probability among the tiers before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from classifier.errors import InputError

RULES = ("absolute", "relative", "utility")
MODES = ("threshold", "cost")
# The relative rule divides by the best P(success); this floor keeps an all-zero row finite.
MIN_BEST = 1e-12


class PolicyError(InputError):
    """A per-request policy argument that cannot be honoured; `field` names it for the caller."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Choice:
    """The chosen tier (an index, cheapest first), its escalation chain, and the chain's expected cost."""

    tier: int
    chain: tuple[int, ...]
    expected_cost: float


def expected_chain_cost(probs: Sequence[float], costs: Sequence[float], chain: Sequence[int]) -> float:
    """Expected cost of trying the chain's tiers in order until one succeeds (nested tiers)."""
    total, best = 0.0, 0.0
    for tier in chain:
        total += (1.0 - best) * float(costs[tier])
        best = max(best, float(probs[tier]))
    return total


def _scale(best: float | np.ndarray, rule: str) -> float | np.ndarray:
    """What P(success) is divided by under the ratio rules: 1 (`absolute`) or the best tier's P (`relative`).

    Works on a float (one request, on the served hot path) and on an array of row maxima (evaluation).
    """
    if rule == "absolute":
        return 1.0
    if rule == "relative":
        return np.maximum(best, MIN_BEST)
    raise PolicyError("rule", f"must be one of {RULES}, got {rule!r}")


def unit_costs(costs: Sequence[float]) -> list[float]:
    """Tier costs in units of the top tier's (the utility rule's lambda is relative to it)."""
    top = float(costs[-1]) or 1.0
    return [float(c) / top for c in costs]


def utility_row(probs: Sequence[float], costs: Sequence[float]) -> list[float]:
    """One request's `utility` scores: the cheapest tier with score >= q is argmax_k P_k - lambda c_k, q = 1/(1+lambda).

    As lambda falls from +inf to 0 a request climbs the upper concave hull of its (cost, P) points: it
    leaves hull tier a for the next hull tier b once q exceeds 1 / (1 + (P_b - P_a) / (c_b - c_a)), which
    is a's score. The last hull tier (the best P, cheapest on ties) scores 1, so it always passes; tiers
    off the hull score 0 and are never chosen. `costs` are in units of the top tier (`unit_costs`),
    cheapest first and rising. Plain floats: this runs on the served hot path.
    """
    scores = [0.0] * len(probs)
    current = 0
    while True:
        best, steepest = -1, 0.0
        for k in range(current + 1, len(probs)):
            gain, extra = probs[k] - probs[current], costs[k] - costs[current]
            if gain > 0 and extra > 0 and gain / extra > steepest:
                best, steepest = k, gain / extra
        if best < 0:
            scores[current] = 1.0
            return scores
        scores[current] = 1.0 / (1.0 + steepest)
        current = best


def row_scores(probs: Sequence[float], unit: Sequence[float], rule: str) -> list[float]:
    """What one request's per-tier threshold comparison reads under `rule` (plain floats, for the hot path).

    `unit` are the tiers' costs in units of the ladder's top tier (`unit_costs`), used by `utility` only.
    """
    if rule == "utility":
        return utility_row(probs, unit)
    scale = float(_scale(max(probs), rule))
    return [p / scale for p in probs]


def rule_scores(probs: np.ndarray, rule: str, costs: Sequence[float] | None = None) -> np.ndarray:
    """`row_scores` for every row of an (n, T) array: what evaluation and policy choice sweep the threshold over.

    With these scores every rule reads the same: the cheapest tier whose score clears the threshold.
    `costs` (the bundle's per-tier costs) are needed by the `utility` rule only.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if rule != "utility":
        return probs / _scale(probs.max(axis=-1, keepdims=True), rule)
    if costs is None:
        raise PolicyError("rule", "the utility rule needs the tiers' costs")
    unit = unit_costs(costs)
    return np.asarray([utility_row(row, unit) for row in probs.tolist()], dtype=np.float64).reshape(probs.shape)


@dataclass(frozen=True)
class Policy:
    """The routing rule of a bundle: tier names, their mean cost per request, and the default threshold."""

    tiers: tuple[str, ...]
    costs: tuple[float, ...]
    threshold: float
    rule: str = "absolute"

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise PolicyError("rule", f"must be one of {RULES}, got {self.rule!r}")
        object.__setattr__(self, "_unit", unit_costs(self.costs))

    def allowed(self, allowed_tiers: Sequence[str] | None) -> list[int]:
        """Indices of the allowed tiers, cheapest first; all tiers when none are named."""
        if not allowed_tiers:
            return list(range(len(self.tiers)))
        unknown = [t for t in allowed_tiers if t not in self.tiers]
        if unknown:
            raise PolicyError("allowed_tiers", f"unknown tier(s) {unknown}; tiers are {list(self.tiers)}")
        return sorted({self.tiers.index(t) for t in allowed_tiers})

    def target(self, quality_target: float | None) -> float:
        """The quality threshold to use, checked to lie in [0, 1]."""
        if quality_target is None:
            return self.threshold
        if not 0.0 <= quality_target <= 1.0 or quality_target != quality_target:
            raise PolicyError("quality_target", f"must be within [0, 1], got {quality_target}")
        return float(quality_target)

    def choose(
        self,
        probs: np.ndarray,
        quality_target: float | None = None,
        allowed_tiers: Sequence[str] | None = None,
        mode: str = "threshold",
    ) -> Choice:
        """Pick a tier for one request from its per-tier success probabilities."""
        allowed = self.allowed(allowed_tiers)
        target = self.target(quality_target)
        row = probs.tolist() if isinstance(probs, np.ndarray) else [float(p) for p in probs]
        if mode == "cost":
            chains = [(*c, allowed[-1]) for r in range(len(allowed)) for c in combinations(allowed[:-1], r)]
            chain = min(chains, key=lambda c: (expected_chain_cost(row, self.costs, c), c))
            return Choice(chain[0], chain, expected_chain_cost(row, self.costs, chain))
        if mode != "threshold":
            raise PolicyError("mode", f"must be one of {MODES}, got {mode!r}")
        scores = row_scores([row[i] for i in allowed], [self._unit[i] for i in allowed], self.rule)
        position = len(allowed) - 1
        for k, score in enumerate(scores):
            if score >= target:
                position = k
                break
        chain = tuple(allowed[position:])
        return Choice(chain[0], chain, expected_chain_cost(row, self.costs, chain))
