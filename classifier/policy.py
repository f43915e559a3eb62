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

Latency bands (`RouteOptions.latency_band`) change the decision when the bundle has a time model
(`tierwise.classifier.timing`):
- `interactive` with a budget (`max_latency_ms`): a chain's quality is its chance of an acceptable answer
  within the budget, the sum over its tiers of P(first acceptable there) x P(the attempts so far finish in
  time). Steps with less than MIN_FINISH chance of finishing in time are dropped. `threshold` mode applies
  the bundle's rule to each tier's own in-budget chance (P(success) x P(it finishes in time)) and takes the
  first tier that clears the threshold, with its chain above it; `cost` mode takes the cheapest escalation
  chain whose in-budget chance meets the quality bar (q; q x the best P(success) for `relative`). When none
  does: the candidate with the best in-budget chance. `budget_met` says whether the chosen chain's in-budget
  chance meets the bar. Without a budget: as above, with no time in the decision.
- `tolerant` with a value of time: the escalation chain with the lowest expected cost plus
  value_of_time_usd_per_s x expected time (applied mode: `cost`). Without one: as above.
- `async`: tiers at their Batch API prices; time is ignored and no expected time is reported.

A turn of a conversation (`Policy.keep_warm`) is decided as above, then kept on the tier that served the
conversation's last turn (warm: its prompt cache holds the conversation's prefix) when that tier is allowed, is
at least as likely to answer acceptably as the chosen one (in time, under a budget), and costs no more once the
turn is priced as a turn of this conversation: its cached prefix at the cache-read rate on the warm tier and the
cache-write rate on every other, its answer at the length of the conversation's last answer (where known; else
each tier's mean cost). A higher tier the router needs still wins: a warm tier less likely to succeed is left.
The chain above the warm tier is the chosen chain's, and the expected cost reported is the turn's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import combinations

import numpy as np

from .limits import FieldError
from .request import DEFAULT_OPTIONS, RouteOptions
from .timing import TimeModel

# The relative rule divides by the best P(success); this floor keeps an all-zero row finite.
MIN_BEST = 1e-12
# An escalation step whose attempts (with the ones before it) finish inside the budget less often than this
# cannot finish in time, and is dropped from an interactive chain.
MIN_FINISH = 0.01


@dataclass(frozen=True)
class Choice:
    """The chosen tier (an index, cheapest first), its escalation chain, and what the chain is expected to take.

    `mode` is the routing mode applied; `expected_time_ms` is None where the bundle has no time model or the
    band ignores time; `budget_met` is false only when an interactive budget applied and no chain met it;
    `kept_warm` is true when a conversation was kept on its warm tier (`Policy.keep_warm`).
    """

    tier: int
    chain: tuple[int, ...]
    expected_cost: float
    mode: str = "threshold"
    expected_time_ms: float | None = None
    budget_met: bool = True
    kept_warm: bool = False


def expected_chain_cost(probs: Sequence[float], costs: Sequence[float], chain: Sequence[int]) -> float:
    """Expected cost of trying the chain's tiers in order until one succeeds (nested tiers)."""
    total, best = 0.0, 0.0
    for tier in chain:
        total += (1.0 - best) * float(costs[tier])
        best = max(best, float(probs[tier]))
    return total


def _row(probs: np.ndarray | Sequence[float]) -> list[float]:
    """One request's per-tier probabilities as the plain floats the rules and chains read."""
    return probs.tolist() if isinstance(probs, np.ndarray) else [float(p) for p in probs]


@lru_cache(maxsize=256)
def escalation_chains(allowed: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Every chain `cost` mode considers: any subset of the allowed tiers below the top one, then the top one."""
    return tuple((*c, allowed[-1]) for r in range(len(allowed)) for c in combinations(allowed[:-1], r))


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


@dataclass(frozen=True)
class Rule:
    """A threshold rule: each tier's score, which the threshold is compared with (the cheapest tier that clears it
    is served). `row(probs, unit, best)` scores one request in plain floats (the served hot path; `unit`: the tiers'
    costs in units of the top tier's, `best`: the best allowed P(success)); `rows(probs, unit)` an (n, T) array.
    `relative`: a score is a share of the best P(success); `priced`: the scores read the tiers' costs; `about`: what
    it serves, for `--threshold-rule`'s help."""

    about: str
    row: Callable[[Sequence[float], Sequence[float], float], list[float]]
    rows: Callable[[np.ndarray, Sequence[float]], np.ndarray]
    relative: bool = False
    priced: bool = False


def _utility_rows(probs: np.ndarray, unit: Sequence[float]) -> np.ndarray:
    return np.asarray([utility_row(row, unit) for row in probs.tolist()], dtype=np.float64).reshape(probs.shape)


def _relative_row(probs: Sequence[float], unit: Sequence[float], best: float) -> list[float]:
    scale = max(best, MIN_BEST)
    return [p / scale for p in probs]


# The threshold rules by the name `--threshold-rule` and a bundle's manifest give them (module docstring).
RULES: dict[str, Rule] = {
    "absolute": Rule(
        "cheapest tier with P >= threshold, else the top",
        lambda probs, unit, best: [float(p) for p in probs],
        lambda probs, unit: probs,
    ),
    "relative": Rule(
        "P >= threshold x best P",
        _relative_row,
        lambda probs, unit: probs / np.maximum(probs.max(axis=-1, keepdims=True), MIN_BEST),
        relative=True,
    ),
    "utility": Rule(
        "the tier maximising P - lambda x cost / top cost, lambda = (1 - threshold) / threshold",
        lambda probs, unit, best: utility_row(probs, unit),
        _utility_rows,
        priced=True,
    ),
}


def rule_named(name: str) -> Rule:
    """The rule of that name; a FieldError naming `rule` for any other."""
    if name not in RULES:
        raise FieldError("rule", f"must be one of {list(RULES)}, got {name!r}")
    return RULES[name]


def rule_scores(probs: np.ndarray, rule: str, costs: Sequence[float] | None = None) -> np.ndarray:
    """Every row's scores under `rule` for an (n, T) array: what evaluation and policy choice sweep the threshold over.

    With these scores every rule reads the same: the cheapest tier whose score clears the threshold.
    `costs` (the bundle's per-tier costs) are needed by the `utility` rule only.
    """
    named = rule_named(rule)
    if named.priced and costs is None:
        raise FieldError("rule", f"the {rule} rule needs the tiers' costs")
    return named.rows(np.asarray(probs, dtype=np.float64), unit_costs(costs) if costs is not None else [])


@dataclass(frozen=True)
class Policy:
    """The routing rule of a bundle: tier names, their mean cost per request (list and Batch API prices), the
    default threshold, and the tiers' time model when the bundle has one."""

    tiers: tuple[str, ...]
    costs: tuple[float, ...]
    threshold: float
    rule: str = "absolute"
    batch_costs: tuple[float, ...] | None = None
    times: TimeModel | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rule", rule_named(self.rule))
        object.__setattr__(self, "_unit", unit_costs(self.costs))
        object.__setattr__(self, "_all", tuple(range(len(self.tiers))))

    def allowed(self, allowed_tiers: Sequence[str] | None) -> tuple[int, ...]:
        """Indices of the allowed tiers, cheapest first; all tiers when none are named."""
        if not allowed_tiers:
            return self._all
        unknown = [t for t in allowed_tiers if t not in self.tiers]
        if unknown:
            raise FieldError("allowed_tiers", f"unknown tier(s) {unknown}; tiers are {list(self.tiers)}")
        return tuple(sorted({self.tiers.index(t) for t in allowed_tiers}))

    def target(self, quality_target: float | None) -> float:
        """The quality threshold to use: the request's, else the bundle's default."""
        return self.threshold if quality_target is None else quality_target

    def choose(self, probs: np.ndarray, options: RouteOptions = DEFAULT_OPTIONS) -> Choice:
        """Pick a tier for one request from its per-tier success probabilities, within its latency band.

        `options` come checked (`RouteOptions`); what this model cannot honour (a tier it lacks, a budget
        without a time model) is refused here, naming the field.
        """
        allowed = self.allowed(options.allowed_tiers)
        target = self.target(options.quality_target)
        mode = options.routing_mode
        row = _row(probs)
        band = options.band
        if band == "async":
            return self._plain(row, allowed, target, mode, self._mean_costs(band), None)
        if options.budget_ms is not None:
            return self._in_budget(row, allowed, target, mode, options.budget_ms)
        if options.time_price is not None:
            return self._cost_and_time(row, allowed, options.time_price)
        return self._plain(row, allowed, target, mode, self.costs, self.times)

    def keep_warm(
        self,
        probs: np.ndarray,
        choice: Choice,
        options: RouteOptions,
        warm: int,
        prefix_costs: Sequence[float],
        answer_costs: Sequence[float] | None = None,
    ) -> Choice:
        """`choice` for a turn of a conversation whose last turn `warm` served (module docstring), its expected cost
        the turn's: `prefix_costs` are the cached prefix's USD on each tier (read on `warm`, written on the others),
        `answer_costs` an answer's as long as the last one (None: each tier's mean cost)."""
        row = _row(probs)
        base = self._mean_costs(options.band) if answer_costs is None else answer_costs
        costs = [cost + prefix for cost, prefix in zip(base, prefix_costs, strict=True)]
        served = choice
        if warm != choice.tier and warm in self.allowed(options.allowed_tiers):
            chain = (warm, *[tier for tier in choice.chain if tier > warm])
            as_likely = self._quality(row, warm, options) >= self._quality(row, choice.tier, options)
            if as_likely and expected_chain_cost(row, costs, chain) <= expected_chain_cost(row, costs, choice.chain):
                timed = choice.expected_time_ms is not None and self.times is not None
                expected_time = self.times.expected_chain_time(row, chain) if timed else None
                served = replace(choice, tier=warm, chain=chain, expected_time_ms=expected_time, kept_warm=True)
        return replace(served, expected_cost=expected_chain_cost(row, costs, served.chain))

    def _mean_costs(self, band: str) -> Sequence[float]:
        """Each tier's mean cost as a request of `band` pays it: at the Batch rate for an async one."""
        return (self.batch_costs or self.costs) if band == "async" else self.costs

    def _quality(self, row: list[float], tier: int, options: RouteOptions) -> float:
        """A tier's chance of an acceptable answer: in time, where a latency budget applies."""
        budget = options.budget_ms
        if budget is None or self.times is None:
            return row[tier]
        return row[tier] * self.times.within(1 << tier, budget)

    def _plain(
        self,
        row: list[float],
        allowed: tuple[int, ...],
        target: float,
        mode: str,
        costs: Sequence[float],
        times: TimeModel | None,
    ) -> Choice:
        """The decision without a budget or a value of time: threshold or cheapest expected cost."""
        if mode == "cost":
            chain = min(escalation_chains(allowed), key=lambda c: (expected_chain_cost(row, costs, c), c))
        else:
            if allowed is self._all:  # the usual request: every tier, no copies
                scores = self._rule.row(row, self._unit, max(row))
            else:
                kept = [row[i] for i in allowed]
                scores = self._rule.row(kept, [self._unit[i] for i in allowed], max(kept))
            position = len(allowed) - 1
            for k, score in enumerate(scores):
                if score >= target:
                    position = k
                    break
            chain = allowed[position:]
        expected_time = times.expected_chain_time(row, chain) if times is not None else None
        return Choice(chain[0], chain, expected_chain_cost(row, costs, chain), mode, expected_time)

    def _time_model(self, field: str) -> TimeModel:
        if self.times is None:
            raise FieldError(
                field,
                "this model has no time model (train it on logs with latency_ms, or give first_token_ms and "
                "output_tokens_per_s for every tier in the ladder)",
            )
        return self.times

    def _in_budget(self, row: list[float], allowed: tuple[int, ...], target: float, mode: str, budget: float) -> Choice:
        """The interactive decision under a latency budget (module docstring)."""
        times = self._time_model("max_latency_ms")
        best = max(row[i] for i in allowed)
        bar = target * (best if self._rule.relative else 1.0)
        candidates: list[tuple[float, float, tuple[int, ...]]] = []
        if mode == "threshold":
            in_time = [row[i] * times.within(1 << i, budget) for i in allowed]
            scores = self._budget_scores(in_time, allowed, best)
            for k, tier in enumerate(allowed):
                chain, chance = _fit_budget(row, allowed[k:], times, budget)
                if not chain:
                    continue
                if chain[0] == tier and scores[k] >= target:
                    return self._budget_choice(row, chain, chance >= bar, mode, times)
                candidates.append((chance, k, chain))
        else:
            fitted = {}
            for chain in escalation_chains(allowed):
                kept, chance = _fit_budget(row, chain, times, budget)
                if kept:
                    fitted[kept] = chance
            feasible = [c for c, chance in fitted.items() if chance >= bar]
            if feasible:
                best = min(feasible, key=lambda c: (expected_chain_cost(row, self.costs, c), c))
                return self._budget_choice(row, best, True, mode, times)
            candidates = [(chance, -expected_chain_cost(row, self.costs, c), c) for c, chance in fitted.items()]
        if not candidates:  # no tier can finish in time: the one most likely to, else the fastest
            fastest = max(allowed, key=lambda t: (times.within(1 << t, budget), -times.mean_ms[t]))
            return self._budget_choice(row, (fastest,), False, mode, times)
        return self._budget_choice(row, max(candidates)[2], False, mode, times)

    def _budget_scores(self, in_time: list[float], allowed: tuple[int, ...], best: float) -> list[float]:
        """The rule's threshold scores of each allowed tier's chance of an acceptable answer in time: as a share of
        the best P(success) for `relative` (a share of the best reachable quality), the utility trade-off on them
        for `utility`, themselves for `absolute`."""
        return self._rule.row(in_time, [self._unit[i] for i in allowed], best)

    def _budget_choice(
        self, row: list[float], chain: tuple[int, ...], met: bool, mode: str, times: TimeModel
    ) -> Choice:
        return Choice(
            chain[0],
            chain,
            expected_chain_cost(row, self.costs, chain),
            mode,
            times.expected_chain_time(row, chain),
            met,
        )

    def _cost_and_time(self, row: list[float], allowed: tuple[int, ...], usd_per_s: float) -> Choice:
        """The tolerant decision: the escalation chain with the lowest expected cost + value of its expected time."""
        times = self._time_model("value_of_time_usd_per_s")

        def price(chain: tuple[int, ...]) -> tuple[float, tuple[int, ...]]:
            cost = expected_chain_cost(row, self.costs, chain)
            return cost + usd_per_s * times.expected_chain_time(row, chain) / 1000.0, chain

        chain = min(escalation_chains(allowed), key=price)
        return Choice(
            chain[0], chain, expected_chain_cost(row, self.costs, chain), "cost", times.expected_chain_time(row, chain)
        )


def _fit_budget(
    row: list[float], chain: Sequence[int], times: TimeModel, budget: float
) -> tuple[tuple[int, ...], float]:
    """The chain without the steps that cannot finish in time, and its chance of an acceptable answer in time."""
    kept: list[int] = []
    mask, best, chance = 0, 0.0, 0.0
    for tier in chain:
        finish = times.within(mask | 1 << tier, budget)
        if finish < MIN_FINISH:
            continue
        kept.append(tier)
        mask |= 1 << tier
        reached = max(best, row[tier])
        chance += (reached - best) * finish
        best = reached
    return tuple(kept), chance
