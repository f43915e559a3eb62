"""Exploration with known propensities: sometimes serve a cheaper tier than the policy chose.

A router that only sees outcomes of the tiers it chose never learns that a cheaper tier would have done.
With probability `rate`, a request whose chosen tier has cheaper allowed tiers is served one of them, drawn
uniformly; its chain keeps the chosen tier and the rest of the chain after it, so a failure escalates to
what the policy would have served anyway. Each served choice carries its propensity (the probability it
had of being served first) and the whole first-attempt distribution, so evaluation on the collected
traffic can weight outcomes by inverse propensity (docs/evaluation.md).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .limits import FieldError
from .policy import expected_chain_cost
from .router import Prediction, Router


@dataclass(slots=True)
class Served:
    """What a request is served: the (possibly explored) prediction and the probability of that choice.

    `propensities` maps every tier that could have been served first to its probability (they sum to 1);
    it may be shared between requests, so treat it as read-only.
    """

    prediction: Prediction
    explored: bool
    propensity: float
    propensities: dict[str, float]


class Explorer:
    """Draws exploration for one router at a fixed rate; `rate == 0` serves the policy's choice untouched."""

    def __init__(self, router: Router, rate: float, rng: random.Random | None = None):
        if not 0.0 <= rate <= 1.0:
            raise FieldError("explore_rate", f"must be within [0, 1], got {rate}")
        self.rate = rate
        self._ladder = router.ladder
        self._policy = router.policy
        self._names = router.ladder.names
        self._position = {name: index for index, name in enumerate(self._names)}
        self._random = (rng or random.Random()).random
        # (chosen tier, allowed tiers) -> (cheaper allowed tiers, first-attempt distribution); at most
        # tiers x 2^tiers entries, built once each, so the hot path allocates no list or dict of its own.
        self._plans: dict[tuple[str, tuple[str, ...] | None], tuple[list[str], dict[str, float]]] = {}

    def cheaper_tiers(self, prediction: Prediction, allowed_tiers: Sequence[str] | None) -> list[str]:
        """The allowed tiers cheaper than the policy's choice: what exploration may serve instead."""
        chosen = self._position[prediction.tier]
        if not allowed_tiers:
            return self._names[:chosen]
        allowed = set(allowed_tiers)
        return [name for name in self._names[:chosen] if name in allowed]

    def _plan(self, prediction: Prediction, allowed_tiers: Sequence[str] | None) -> tuple[list[str], dict[str, float]]:
        key = (prediction.tier, tuple(allowed_tiers) if allowed_tiers else None)
        plan = self._plans.get(key)
        if plan is None:
            cheaper = self.cheaper_tiers(prediction, allowed_tiers)
            if cheaper:
                propensities = {name: self.rate / len(cheaper) for name in cheaper}
                if self.rate < 1.0:
                    propensities[prediction.tier] = 1.0 - self.rate
            else:
                propensities = {prediction.tier: 1.0}
            plan = self._plans[key] = (cheaper, propensities)
        return plan

    def serve(
        self, prediction: Prediction, allowed_tiers: Sequence[str] | None, allow: bool = True, band: str = "interactive"
    ) -> Served:
        """The policy's choice with probability 1 - rate, else a cheaper allowed tier drawn uniformly.

        A request that opts out (`allow=False`), or has no cheaper allowed tier, gets the policy's choice
        with propensity 1. An explored chain has one attempt more: its expected cost (at the band's prices)
        and expected time are those of the longer chain.
        """
        if self.rate == 0.0 or not allow:
            return Served(prediction, False, 1.0, {prediction.tier: 1.0})
        cheaper, propensities = self._plan(prediction, allowed_tiers)
        if not cheaper:
            return Served(prediction, False, 1.0, propensities)
        draw = self._random()
        if draw >= self.rate:
            return Served(prediction, False, 1.0 - self.rate, propensities)
        each = self.rate / len(cheaper)
        tier = cheaper[min(int(draw / each), len(cheaper) - 1)]
        chain = [tier, *prediction.fallback_chain]
        return Served(self._explored(prediction, chain, band), True, each, propensities)

    def _explored(self, prediction: Prediction, chain: list[str], band: str) -> Prediction:
        probs = [prediction.probabilities[name] for name in self._names]
        steps = [self._position[name] for name in chain]
        policy = self._policy
        costs = (policy.batch_costs or policy.costs) if band == "async" else policy.costs
        timed = prediction.expected_latency_ms is not None and policy.times is not None
        return replace(
            prediction,
            tier=chain[0],
            model=self._ladder.tiers[steps[0]].model,
            fallback_chain=chain,
            expected_cost_usd=expected_chain_cost(probs, costs, steps),
            expected_latency_ms=policy.times.expected_chain_time(probs, steps) if timed else None,
        )
