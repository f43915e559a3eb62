"""Judging a router on served traffic without the serving router's bias: inverse-propensity weighting.

Collected traffic (`tierwise collect`) only shows the tiers the serving router tried: the first attempt and
the escalations after it. Where it sent the top tier, nobody learns whether a cheaper one would have done.
Scoring another router on the requests where its tier happens to be known would reward agreeing with the
server. Exploration (`tierwise serve --explore-rate`) makes every tier a possible first attempt with a
known probability, and this estimator weights each outcome by the inverse of the probability that the
traffic would reveal it.

What traffic reveals (tiers assumed nested, as the cost mode assumes: a tier that fails means every cheaper
one fails, a tier that succeeds means every stronger one succeeds): for a request whose first attempt was
tier s, the outcome of every tier t >= s is known: tried while escalating, or implied by a cheaper success.
So tier t's outcome is revealed with probability q(t) = sum over tiers s <= t of P(first attempt = s),
which the decision log records for every request (`propensities`). For a router that picks tier t_i for
request i, its success rate is estimated self-normalised (SNIPS):

    quality = sum_i w_i y_i(t_i) / sum_i w_i,   w_i = [y_i(t_i) revealed] / q_i(t_i)

Cost needs no weighting: the cost rule prices every tier of every request, so it is the plain mean of
cost_i(t_i). Requests outside collected traffic (ordinary logs) count with weight 1 where the chosen tier's
outcome is known. A tier with q_i(t_i) = 0 (cheaper than anything the server could serve: no exploration)
cannot be judged on that request: `support` says on what share of requests the estimate stands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import polars as pl
from tierwise.training.evaluation.curves import Curve, choose_tiers
from tierwise.training.evaluation.metrics import Anchors


def is_traffic(frame: pl.DataFrame) -> bool:
    """Whether labelled requests come (at least partly) from collected traffic: they carry its decision columns."""
    return {"served_tier", "propensities"} <= set(frame.columns) and frame["served_tier"].is_not_null().any()


@dataclass(frozen=True)
class TrafficLog:
    """What the serving router did per request: its first-attempt tier and the distribution it drew from.

    `served[i]` is the index of request i's first-attempt tier (-1 for requests not from collected traffic)
    and `first_attempt[i, t]` the probability tier t had of being that first attempt.
    """

    served: np.ndarray
    first_attempt: np.ndarray

    @classmethod
    def from_labels(cls, frame: pl.DataFrame, tiers: list[str]) -> TrafficLog | None:
        """The traffic columns of a labelled frame (`tierwise.training.data.attempts.DECISION`), or None if it has
        none."""
        if not is_traffic(frame):
            return None
        position = {name: index for index, name in enumerate(tiers)}
        served = np.full(frame.height, -1, dtype=np.int64)
        first = np.zeros((frame.height, len(tiers)), dtype=np.float64)
        for i, (tier, propensities) in enumerate(frame.select("served_tier", "propensities").iter_rows()):
            if tier is None or propensities is None or tier not in position:
                continue
            served[i] = position[tier]
            for name, probability in json.loads(propensities).items():
                if name in position:
                    first[i, position[name]] = probability
        return cls(served, first)

    @property
    def traffic(self) -> np.ndarray:
        """Mask of the requests that come from collected traffic."""
        return self.served >= 0

    def first_attempts(self, success: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(outcomes with each traffic request's first attempt only, the inverse propensity of each).

        The first attempt's tier was drawn with a known probability, independently of how the request would
        go; an escalation attempt was made because an earlier one failed, so it over-represents requests
        that are hard for that tier. What a head learns from are the first attempts, each weighted by the
        inverse of its probability, so a tier's few explored requests count for the many it was not tried
        on. Other requests keep all they hold, with weight 1.
        """
        success = np.asarray(success, dtype=np.float64)
        others = self.traffic[:, None] & (np.arange(success.shape[1])[None, :] != self.served[:, None])
        taught = np.where(others, np.nan, success)
        probability = np.where(self.traffic[:, None], self.first_attempt, 1.0)
        return taught, np.where(np.isfinite(taught) & (probability > 0), 1.0 / np.maximum(probability, 1e-12), 0.0)

    def revealed(self, success: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(outcomes the traffic reveals, NaN elsewhere; the probability each was revealed), both (n, T).

        Traffic requests: tiers at or above the first attempt, from attempts or implied by a cheaper success.
        Other requests: the outcomes they hold, with probability 1.
        """
        success = np.asarray(success, dtype=np.float64)
        tiers = np.arange(success.shape[1])
        succeeded_below = np.zeros_like(success, dtype=bool)
        succeeded_below[:, 1:] = np.maximum.accumulate(np.nan_to_num(success, nan=0.0) == 1, axis=1)[:, :-1]
        at_or_above = tiers[None, :] >= self.served[:, None]
        implied = np.where(np.isnan(success) & succeeded_below, 1.0, success)
        traffic = self.traffic[:, None]
        outcomes = np.where(traffic, np.where(at_or_above, implied, np.nan), success)
        probability = np.where(traffic, np.cumsum(self.first_attempt, axis=1), np.isfinite(success).astype(float))
        return outcomes, probability


@dataclass(frozen=True)
class Estimate:
    """A routing rule's estimated mean success and cost per request on the traffic.

    `support`: share of requests whose chosen tier the traffic could reveal (q > 0); below 1 the rest are
    left out and the estimate leans on the requests the server could judge. `effective_n`: the weights'
    effective sample size, (sum w)^2 / sum w^2.
    """

    quality: float
    cost: float
    support: float
    effective_n: float


def ips_estimate(outcomes: np.ndarray, probability: np.ndarray, cost: np.ndarray, chosen: np.ndarray) -> Estimate:
    """Self-normalised IPS success rate and the plain mean cost of sending request i to tier chosen[i]."""
    rows = np.arange(len(chosen))
    y = outcomes[rows, chosen]
    q = probability[rows, chosen]
    revealed = np.isfinite(y) & (q > 0)
    weights = np.where(revealed, 1.0 / np.where(q > 0, q, 1.0), 0.0)
    total = weights.sum()
    quality = float((weights * np.nan_to_num(y)).sum() / total) if total > 0 else float("nan")
    return Estimate(
        quality=quality,
        cost=float(np.asarray(cost, dtype=np.float64)[rows, chosen].mean()),
        support=float((q > 0).mean()),
        effective_n=float(total**2 / (weights**2).sum()) if total > 0 else 0.0,
    )


def ips_curve(
    outcomes: np.ndarray, probability: np.ndarray, cost: np.ndarray, scores: np.ndarray, thresholds: np.ndarray
) -> Curve:
    """The threshold policy swept over `thresholds`, each point estimated by `ips_estimate`."""
    points = [ips_estimate(outcomes, probability, cost, choose_tiers(scores, t)) for t in thresholds]
    return Curve(
        settings=np.asarray(thresholds, dtype=np.float64),
        cost=np.array([p.cost for p in points]),
        quality=np.array([p.quality for p in points]),
    )


def ips_anchors(outcomes: np.ndarray, probability: np.ndarray, cost: np.ndarray) -> Anchors:
    """Always-cheapest and always-top, estimated like any other routing rule."""
    rows = len(outcomes)
    cheapest = ips_estimate(outcomes, probability, cost, np.zeros(rows, dtype=np.int64))
    top = ips_estimate(outcomes, probability, cost, np.full(rows, outcomes.shape[1] - 1))
    return Anchors(cheapest.cost, cheapest.quality, top.cost, top.quality)
