"""Latency bands in the policy: a budget that changes the chain, a price on waiting, Batch API prices."""

from __future__ import annotations

import numpy as np
import pytest
from tierwise.classifier.limits import FieldError
from tierwise.classifier.policy import Policy
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.timing import TierTime, TimeModel

TIERS = ("haiku", "sonnet", "opus")
COSTS = (1.0, 4.0, 10.0)


def constant(ms: float) -> TierTime:
    return TierTime.from_latencies([ms], None, None, f"constant {ms} ms")


# haiku answers in 1 s, sonnet in 3 s, opus in 6 s, always
TIMED = Policy(
    tiers=TIERS,
    costs=COSTS,
    threshold=0.7,
    batch_costs=tuple(c / 2 for c in COSTS),
    times=TimeModel([constant(1000), constant(3000), constant(6000)]),
)
UNTIMED = Policy(tiers=TIERS, costs=COSTS, threshold=0.7)
HARD = np.array([0.1, 0.3, 0.9])


def test_without_a_budget_the_decision_is_unchanged_and_its_expected_time_reported():
    for probs in (np.array([0.5, 0.75, 0.95]), HARD, np.array([0.9, 0.95, 0.99])):
        for mode in ("threshold", "cost"):
            timed, plain = TIMED.choose(probs, RouteOptions(mode=mode)), UNTIMED.choose(probs, RouteOptions(mode=mode))
            assert (timed.chain, timed.expected_cost) == (plain.chain, plain.expected_cost)
            assert timed.budget_met and plain.expected_time_ms is None
    # sonnet first (3 s), then opus (6 s) when sonnet fails (1 - 0.75)
    assert TIMED.choose(np.array([0.5, 0.75, 0.95])).expected_time_ms == pytest.approx(3000 + 0.25 * 6000)


def test_a_generous_budget_changes_nothing():
    for probs in (np.array([0.5, 0.75, 0.95]), HARD):
        budgeted = TIMED.choose(probs, RouteOptions(max_latency_ms=60_000))
        assert budgeted.chain == TIMED.choose(probs).chain and budgeted.budget_met


def test_a_tight_budget_moves_a_hard_request_to_a_faster_tier():
    assert TIMED.choose(HARD).chain == (2,)
    # opus (6 s) cannot finish in 4 s; haiku then sonnet (1 + 3 s) can: both give a 0.3 chance in time, and
    # the threshold rule falls back to the higher first tier of equal chance
    decision = TIMED.choose(HARD, RouteOptions(max_latency_ms=4000))
    assert decision.chain == (1,) and decision.tier == 1
    assert decision.budget_met is False
    assert decision.expected_time_ms == pytest.approx(3000)


def test_escalation_steps_that_cannot_finish_in_time_are_dropped():
    # sonnet clears the threshold in 4 s, but sonnet then opus takes 9 s: opus is dropped from the chain
    decision = TIMED.choose(np.array([0.5, 0.75, 0.95]), RouteOptions(max_latency_ms=4000))
    assert decision.chain == (1,) and decision.budget_met is True
    assert decision.expected_cost == pytest.approx(4.0)


def test_when_no_chain_fits_the_best_chance_in_time_is_served_and_flagged():
    decision = TIMED.choose(np.array([0.5, 0.75, 0.95]), RouteOptions(max_latency_ms=2000))
    assert decision.chain == (0,) and decision.budget_met is False
    # nothing finishes in 0.5 s: the fastest tier, flagged
    fastest = TIMED.choose(HARD, RouteOptions(max_latency_ms=500))
    assert fastest.chain == (0,) and fastest.budget_met is False


def test_cost_mode_takes_the_cheapest_chain_that_answers_in_time():
    probs = np.array([0.95, 0.96, 0.99])
    assert TIMED.choose(probs, RouteOptions(mode="cost")).chain == (0, 2)
    # haiku then opus takes 7 s: within 5 s, haiku alone (0.95 in time) is the cheapest chain clearing 0.9
    decision = TIMED.choose(probs, RouteOptions(quality_target=0.9, mode="cost", max_latency_ms=5000))
    assert decision.chain == (0,) and decision.budget_met
    # a target no chain meets in time: the best chance in time (haiku then sonnet, 4 s, 0.96)
    missed = TIMED.choose(probs, RouteOptions(quality_target=0.99, mode="cost", max_latency_ms=5000))
    assert missed.chain == (0, 1) and missed.budget_met is False


def test_tolerant_trades_expected_cost_against_the_value_of_time():
    probs = np.array([0.3, 0.9, 0.99])
    # haiku > sonnet > opus: 4.8 USD expected, 3.7 s; sonnet > opus: 5.0 USD, 3.6 s
    cheap = TIMED.choose(probs, RouteOptions(latency_band="tolerant", value_of_time_usd_per_s=0.0))
    assert cheap.chain == (0, 1, 2) and cheap.mode == "cost"
    assert cheap.expected_cost == pytest.approx(1 + 0.7 * 4 + 0.1 * 10)
    hurried = TIMED.choose(probs, RouteOptions(latency_band="tolerant", value_of_time_usd_per_s=5.0))
    assert hurried.chain == (1, 2)
    assert hurried.expected_time_ms == pytest.approx(3000 + 0.1 * 6000)
    # without a value of time, tolerant routes as asked
    assert TIMED.choose(probs, RouteOptions(latency_band="tolerant")).chain == TIMED.choose(probs).chain


def test_async_prices_the_same_chain_at_batch_rates_and_ignores_time():
    for mode in ("threshold", "cost"):
        for probs in (np.array([0.5, 0.75, 0.95]), HARD, np.array([0.95, 0.96, 0.99])):
            interactive = TIMED.choose(probs, RouteOptions(mode=mode))
            batch = TIMED.choose(probs, RouteOptions(mode=mode, latency_band="async", max_latency_ms=10))
            assert batch.chain == interactive.chain
            assert batch.expected_cost == pytest.approx(interactive.expected_cost / 2)
            assert batch.expected_time_ms is None and batch.budget_met


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_latency_ms": 2000.0}, "max_latency_ms"),
        ({"latency_band": "tolerant", "value_of_time_usd_per_s": 0.01}, "value_of_time_usd_per_s"),
    ],
)
def test_a_model_without_a_time_model_refuses_time_options_by_name(kwargs, field):
    with pytest.raises(FieldError, match="no time model") as error:
        UNTIMED.choose(HARD, RouteOptions(**kwargs))
    assert error.value.field == field


@pytest.mark.parametrize("rule", ["absolute", "relative", "utility"])
def test_every_rule_keeps_its_decision_under_a_generous_budget_and_moves_under_a_tight_one(rule):
    policy = Policy(tiers=TIERS, costs=COSTS, threshold=0.7, rule=rule, times=TIMED.times)
    for probs in (np.array([0.5, 0.75, 0.95]), HARD, np.array([0.9, 0.95, 0.99])):
        plain = policy.choose(probs)
        assert policy.choose(probs, RouteOptions(max_latency_ms=60_000)).chain == plain.chain
        # opus cannot finish in 5 s: whatever the rule, the chain leaves it out
        assert 2 not in policy.choose(probs, RouteOptions(max_latency_ms=5000)).chain
