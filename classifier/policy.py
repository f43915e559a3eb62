"""Turning per-tier success probabilities into a tier choice and a fallback chain.

Rules for `threshold` mode (the quality threshold q is the bundle's default or the request's quality_target):
- `absolute`: the cheapest allowed tier with P(success) >= q, else the top allowed tier;
- `relative`: the cheapest allowed tier with P(success) >= q x the best allowed tier's P(success), i.e. the
  cheapest tier that keeps a share q of the best reachable quality.
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

RULES = ("absolute", "relative")
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


def rule_scale(best: float | np.ndarray, rule: str) -> float | np.ndarray:
    """What P(success) is divided by before the threshold comparison: 1, or the best tier's P (`relative`).

    Works on a float (one request, on the served hot path) and on an array of row maxima (evaluation).
    """
    if rule == "absolute":
        return 1.0
    if rule == "relative":
        return np.maximum(best, MIN_BEST)
    raise PolicyError("rule", f"must be one of {RULES}, got {rule!r}")


def rule_scores(probs: np.ndarray, rule: str) -> np.ndarray:
    """What the threshold is compared with: P(success) itself, or its share of the best tier's (`relative`).

    With these scores both rules read the same: the cheapest tier whose score clears the threshold.
    """
    probs = np.asarray(probs, dtype=np.float64)
    return probs / rule_scale(probs.max(axis=-1, keepdims=True), rule)


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
        reachable = [row[i] for i in allowed]
        scale = float(rule_scale(max(reachable), self.rule))
        position = len(allowed) - 1
        for k, p in enumerate(reachable):
            if p / scale >= target:
                position = k
                break
        chain = tuple(allowed[position:])
        return Choice(chain[0], chain, expected_chain_cost(row, self.costs, chain))
