"""Inverse-propensity evaluation on traffic where the truth is known: a synthetic service whose champion sends
hard-looking requests up, explores cheaper tiers at a known rate, and escalates on failure. Scoring other
routers on what that traffic revealed must recover their true success rate; the naive score (the requests
whose chosen tier happened to be tried) must not."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from tierwise.training.evaluation.off_policy import TrafficLog, ips_estimate

TIERS = ["small", "medium", "large"]
REQUESTS = 40_000


def served_traffic(explore_rate: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Requests with nested true outcomes on every tier, and what a champion with exploration observed."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0, 1, REQUESTS)
    luck = rng.uniform(0, 1, REQUESTS)  # one draw per request keeps the tiers nested
    skill = np.array([0.35, 0.6, 0.9])
    truth = (luck[:, None] < 1 / (1 + np.exp(-12 * (skill[None, :] - difficulty[:, None])))).astype(float)
    looks = difficulty + rng.normal(0, 0.1, REQUESTS)  # what the champion sees
    policy = np.digitize(looks, [0.3, 0.55])  # tier 0, 1 or 2
    first = np.zeros((REQUESTS, len(TIERS)))
    first[np.arange(REQUESTS), policy] = 1.0
    explorable = policy > 0
    first[explorable, policy[explorable]] = 1 - explore_rate
    for i in np.flatnonzero(explorable):
        first[i, : policy[i]] = explore_rate / policy[i]
    served = np.array([rng.choice(len(TIERS), p=p) for p in first])
    observed = np.full_like(truth, np.nan)
    for i, start in enumerate(served):  # the served tier, then escalation until a success
        for tier in range(start, len(TIERS)):
            observed[i, tier] = truth[i, tier]
            if truth[i, tier]:
                break
    return {"truth": truth, "observed": observed, "served": served, "first": first, "looks": looks, "policy": policy}


def labelled(traffic: dict[str, np.ndarray]) -> pl.DataFrame:
    """The traffic as `tierwise label` frames it: success columns and the decision columns collect writes."""
    columns = {f"success_{t}": traffic["observed"][:, k] for k, t in enumerate(TIERS)}
    propensities = [json.dumps({t: p for t, p in zip(TIERS, row, strict=True) if p > 0}) for row in traffic["first"]]
    return pl.DataFrame(
        {
            "served_tier": [TIERS[s] for s in traffic["served"]],
            "propensities": propensities,
            **{name: pl.Series(values).fill_nan(None) for name, values in columns.items()},
        }
    )


CHALLENGERS = {
    "always small": lambda looks: np.zeros(len(looks), dtype=int),
    "bolder thresholds": lambda looks: np.digitize(looks, [0.45, 0.7]),
    "more careful thresholds": lambda looks: np.digitize(looks, [0.15, 0.4]),
}


@pytest.mark.parametrize("challenger", list(CHALLENGERS))
def test_weighting_by_inverse_propensity_recovers_the_true_success_rate(challenger):
    traffic = served_traffic(explore_rate=0.2)
    frame = labelled(traffic)
    log = TrafficLog.from_labels(frame, TIERS)
    assert log is not None
    success = frame.select(f"success_{t}" for t in TIERS).to_numpy().astype(float)
    outcomes, probability = log.revealed(success)
    chosen = CHALLENGERS[challenger](traffic["looks"])
    rows = np.arange(REQUESTS)
    truth = traffic["truth"][rows, chosen].mean()
    cost = np.tile([1.0, 4.0, 20.0], (REQUESTS, 1))
    estimate = ips_estimate(outcomes, probability, cost, chosen)
    naive = np.nanmean(traffic["observed"][rows, chosen])
    assert estimate.quality == pytest.approx(truth, abs=0.015)
    assert abs(naive - truth) > 0.03, "the naive score should be biased here, or the test shows nothing"
    assert estimate.cost == pytest.approx(cost[rows, chosen].mean())
    assert estimate.support == 1.0
    assert estimate.effective_n > REQUESTS / 20


def test_without_exploration_tiers_below_the_served_one_are_unsupported():
    traffic = served_traffic(explore_rate=0.0)
    frame = labelled(traffic)
    log = TrafficLog.from_labels(frame, TIERS)
    assert log is not None
    outcomes, probability = log.revealed(frame.select(f"success_{t}" for t in TIERS).to_numpy().astype(float))
    always_small = np.zeros(REQUESTS, dtype=int)
    estimate = ips_estimate(outcomes, probability, np.ones((REQUESTS, 3)), always_small)
    assert estimate.support == pytest.approx((traffic["served"] == 0).mean())
    assert estimate.support < 0.5
    assert estimate.quality > traffic["truth"][:, 0].mean() + 0.2  # judged on the easy requests only


def test_the_traffic_reveals_every_tier_from_the_first_attempt_up():
    log = TrafficLog(served=np.array([1, 0, -1]), first_attempt=np.array([[0.2, 0.8, 0], [1, 0, 0], [0, 0, 0]]))
    success = np.array([[np.nan, 1, np.nan], [0, 0, 1], [1, np.nan, 0]])
    outcomes, probability = log.revealed(success)
    np.testing.assert_array_equal(outcomes, [[np.nan, 1, 1], [0, 0, 1], [1, np.nan, 0]])
    np.testing.assert_allclose(probability, [[0.2, 1, 1], [1, 1, 1], [1, 0, 1]])


def test_logs_without_decision_columns_are_not_traffic():
    assert TrafficLog.from_labels(pl.DataFrame({"success_small": [1.0]}), TIERS) is None


def test_heads_learn_from_first_attempts_only():
    """An escalation attempt happens because the one before failed, so among the same requests its success rate
    falls short of the tier's; a first attempt was drawn whatever the request, so its rate is the tier's."""
    traffic = served_traffic(explore_rate=0.2)
    taught, weights = TrafficLog(traffic["served"], traffic["first"]).first_attempts(traffic["observed"])
    np.testing.assert_array_equal(np.isfinite(taught).sum(axis=1), np.ones(REQUESTS))
    rows = np.arange(REQUESTS)
    np.testing.assert_allclose(weights[rows, traffic["served"]], 1 / traffic["first"][rows, traffic["served"]])
    large = 2
    sent_to_medium = traffic["policy"] == 1  # the large tier is only reached by escalation here
    escalated = sent_to_medium & np.isfinite(traffic["observed"][:, large])
    assert traffic["observed"][escalated, large].mean() < traffic["truth"][sent_to_medium, large].mean() - 0.03
    assert not np.isfinite(taught[sent_to_medium, large]).any()
    sent_to_large = traffic["policy"] == large
    first = sent_to_large & (traffic["served"] == large)
    assert taught[first, large].mean() == pytest.approx(traffic["truth"][sent_to_large, large].mean(), abs=0.02)


def test_a_head_weighted_by_inverse_propensity_learns_the_population_rate():
    """One tier tried on 90% of easy requests and 10% of hard ones: unweighted, its head believes the easy
    requests' rate; weighted by 1/propensity, the rate over all requests."""
    from tierwise.training.fit.head import TierHead

    rng = np.random.default_rng(0)
    hard = rng.random(20_000) < 0.5
    succeeded = (rng.random(20_000) < np.where(hard, 0.2, 0.9)).astype(float)
    tried = rng.random(20_000) < np.where(hard, 0.1, 0.9)
    outcomes = np.where(tried, succeeded, np.nan)[:, None]
    weights = np.where(hard, 1 / 0.1, 1 / 0.9)[:, None]
    blind = np.zeros((20_000, 1))  # no feature tells easy from hard: the head can only learn a rate
    unweighted = TierHead().fit(blind, outcomes).predict_proba(blind[:1])[0, 0]
    weighted = TierHead().fit(blind, outcomes, weights).predict_proba(blind[:1])[0, 0]
    assert unweighted == pytest.approx(0.83, abs=0.02)
    assert weighted == pytest.approx(0.55, abs=0.02)
