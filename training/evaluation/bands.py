"""Evaluation per latency band: every strategy's escalation chain replayed on each request's logged outcomes,
costs and latencies, for cost, quality and time to an acceptable answer.

A chain's tiers are tried in order; each attempt's cost (at Batch API prices in the `async` band) and latency
are paid, whether or not it succeeds; the first success is the acceptable answer, and a chain that runs out
has none. Strategies, on the requests known on every tier:
- `router`: the bundle's policy with the evaluated `RouteOptions` (band, budget, value of time, quality target),
  from its own probabilities;
- `always.<tier>`: that tier alone;
- `static_mix`: the best fixed mix of tiers (`savings.static_mix_shares`: a share of traffic to each, blind to
  the prompt) costing at most the router's mean cost, judged by quality within the budget when there is one;
- `oracle`: each request on its cheapest tier that answers acceptably (within the budget, when there is one),
  else its cheapest success, else the top tier.
A latency the logs lack is the bundle's mean time for that tier (`latency_from_logs` says how much was logged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.router import Router
from tierwise.training.evaluation.savings import static_mix_shares

TIME_QUANTILES = {"p50": 0.5, "p95": 0.95}


@dataclass(frozen=True)
class Simulated:
    """Per request (with a weight): USD paid, attempts made, whether an acceptable answer came, and the time
    (ms) until the chain ended: at the acceptable answer, or after its last attempt."""

    cost: np.ndarray
    attempts: np.ndarray
    acceptable: np.ndarray
    time_ms: np.ndarray
    weight: np.ndarray

    @classmethod
    def pooled(cls, parts: Sequence[Simulated], shares: Sequence[float]) -> Simulated:
        """A share of traffic on each part: one population whose weights are the shares."""
        return cls(
            cost=np.concatenate([p.cost for p in parts]),
            attempts=np.concatenate([p.attempts for p in parts]),
            acceptable=np.concatenate([p.acceptable for p in parts]),
            time_ms=np.concatenate([p.time_ms for p in parts]),
            weight=np.concatenate([p.weight * s for p, s in zip(parts, shares, strict=True)]),
        )

    def quality(self, budget_ms: float | None) -> float:
        """Share of requests with an acceptable answer (within the budget, when one is given)."""
        good = self.acceptable if budget_ms is None else self.acceptable & (self.time_ms <= budget_ms)
        return float(np.average(good, weights=self.weight))

    def mean_cost(self) -> float:
        return float(np.average(self.cost, weights=self.weight))

    def summary(self, budget_ms: float | None) -> dict[str, Any]:
        """The JSON record of one strategy (docs/evaluation.md)."""
        acceptable = self.acceptable
        times, weights = self.time_ms[acceptable], self.weight[acceptable]
        timed = acceptable.any() and np.isfinite(times).all()
        return {
            "cost_usd": self.mean_cost(),
            "quality": self.quality(None),
            "quality_within_budget": None if budget_ms is None else self.quality(budget_ms),
            "attempts": float(np.average(self.attempts, weights=self.weight)),
            "time_to_acceptable_ms": {
                "mean": float(np.average(times, weights=weights)) if timed else None,
                **{k: _weighted_quantile(times, weights, q) if timed else None for k, q in TIME_QUANTILES.items()},
            },
        }


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, q * cumulative[-1])])


def simulate(chains: Sequence[Sequence[int]], success: np.ndarray, cost: np.ndarray, latency: np.ndarray) -> Simulated:
    """Replay each request's chain on its logged outcomes: every attempt's cost and time paid until a success."""
    n = len(chains)
    paid, attempts, acceptable, spent = np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n)
    for i, chain in enumerate(chains):
        for tier in chain:
            paid[i] += cost[i, tier]
            spent[i] += latency[i, tier]
            attempts[i] += 1
            if success[i, tier] == 1:
                acceptable[i] = True
                break
    return Simulated(paid, attempts, acceptable, spent, np.ones(n))


def oracle_chains(success: np.ndarray, latency: np.ndarray, budget_ms: float | None) -> list[tuple[int]]:
    """Each request's cheapest tier with an acceptable answer (within the budget if any), else cheapest success,
    else the top tier."""
    top = success.shape[1] - 1
    chains = []
    for row, times in zip(success, latency, strict=True):
        wins = [k for k in range(len(row)) if row[k] == 1]
        in_time = [k for k in wins if budget_ms is None or times[k] <= budget_ms]
        chains.append(((in_time or wins or [top])[0],))
    return chains


@dataclass(frozen=True)
class BandReport:
    """Every strategy's simulation in one band on the same requests."""

    tiers: list[str]
    options: RouteOptions
    evaluated: int
    latency_from_logs: float
    router: Simulated
    always: dict[str, Simulated]
    static_mix_shares: dict[str, float]
    static_mix: Simulated
    oracle: Simulated
    budget_sweep: list[tuple[float, Simulated]]

    def strategies(self) -> dict[str, Simulated]:
        return {
            "router": self.router,
            **{f"always {t}": s for t, s in self.always.items()},
            "static mix": self.static_mix,
            "oracle": self.oracle,
        }

    def to_json(self) -> dict[str, Any]:
        """The `band` section of `tierwise eval --json` (keys in docs/evaluation.md)."""
        budget = self.options.budget_ms
        return {
            "band": self.options.band,
            "max_latency_ms": self.options.max_latency_ms,
            "value_of_time_usd_per_s": self.options.value_of_time_usd_per_s,
            "evaluated": self.evaluated,
            "latency_from_logs": self.latency_from_logs,
            "router": self.router.summary(budget),
            "always": {tier: sim.summary(budget) for tier, sim in self.always.items()},
            "static_mix": {**self.static_mix.summary(budget), "shares": self.static_mix_shares},
            "oracle": self.oracle.summary(budget),
        }

    def table(self) -> str:
        """One line per strategy: cost, quality (in budget), time to an acceptable answer, attempts."""
        budget = self.options.budget_ms
        head = f"band {self.options.band}"
        if budget is not None:
            head += f", budget {budget:g} ms"
        if self.options.time_price is not None:
            head += f", time at {self.options.time_price:g} USD/s"
        lines = [
            f"{head}: {self.evaluated} requests ({self.latency_from_logs:.0%} of latencies logged)",
            f"{'':<16}{'cost/req USD':>13}{'quality':>9}{'in budget':>11}{'time to acceptable mean/p50/p95 s':>36}"
            f"{'attempts':>10}",
        ]
        for name, sim in self.strategies().items():
            s = sim.summary(budget)
            t = s["time_to_acceptable_ms"]
            times = "/".join("-" if t[k] is None else f"{t[k] / 1000:.2f}" for k in ("mean", "p50", "p95"))
            in_budget = "-" if s["quality_within_budget"] is None else f"{s['quality_within_budget']:.3f}"
            lines.append(
                f"{name:<16}{s['cost_usd']:>13.6f}{s['quality']:>9.3f}{in_budget:>11}{times:>36}{s['attempts']:>10.2f}"
            )
        return "\n".join(lines)


def latency_matrix(frame: pl.DataFrame, router: Router) -> tuple[np.ndarray, np.ndarray]:
    """(n, T) latency per request and tier: logged, else the bundle's mean for the tier (NaN without one); and
    the mask of those that were logged."""
    names = router.ladder.names
    columns = [pl.col(f"latency_{t}") if f"latency_{t}" in frame.columns else pl.lit(None) for t in names]
    logged = frame.select(c.cast(pl.Float64) for c in columns).to_numpy().astype(np.float64)
    times = router.policy.times
    fallback = np.array(times.mean_ms) if times is not None else np.full(len(names), np.nan)
    known = np.isfinite(logged)
    return np.where(known, logged, fallback[None, :]), known


def evaluate_band(
    router: Router,
    success: np.ndarray,
    cost: np.ndarray,
    latency: np.ndarray,
    probs: np.ndarray,
    options: RouteOptions,
    latency_from_logs: float = 1.0,
    sweep_budgets: Sequence[float] = (),
) -> BandReport:
    """Simulate the router, each tier alone, the static mix and the oracle on fully known requests.

    `success`, `cost`, `latency` and `probs` are (n, T) for the same requests; `sweep_budgets` adds the router
    at each of those interactive budgets (for the cost-versus-time chart).
    """
    tiers = router.ladder.names
    if options.band == "async":
        cost = cost * np.array([t.batch_multiplier for t in router.ladder.tiers])[None, :]
    budget = options.budget_ms
    router_sim = simulate(_router_chains(router, probs, options), success, cost, latency)
    always = {t: simulate([(k,)] * len(success), success, cost, latency) for k, t in enumerate(tiers)}
    shares = static_mix_shares(
        np.array([sim.mean_cost() for sim in always.values()]),
        np.array([sim.quality(budget) for sim in always.values()]),
        router_sim.mean_cost(),
    )
    sweep = [
        (b, simulate(_router_chains(router, probs, replace(options, max_latency_ms=b)), success, cost, latency))
        for b in sweep_budgets
    ]
    return BandReport(
        tiers=list(tiers),
        options=options,
        evaluated=len(success),
        latency_from_logs=latency_from_logs,
        router=router_sim,
        always=always,
        static_mix_shares={t: float(s) for t, s in zip(tiers, shares, strict=True)},
        static_mix=Simulated.pooled(list(always.values()), list(shares)),
        oracle=simulate(oracle_chains(success, latency, budget), success, cost, latency),
        budget_sweep=sweep,
    )


def _router_chains(router: Router, probs: np.ndarray, options: RouteOptions) -> list[tuple[int, ...]]:
    return [router.policy.choose(row, options).chain for row in probs]
