"""Exploration draws a cheaper allowed tier at the stated rate, keeps the chosen tier next in the chain, and
states the probability of every first attempt it could have served."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from tierwise.classifier.exploration import Explorer
from tierwise.classifier.limits import FieldError
from tierwise.classifier.policy import expected_chain_cost
from tierwise.classifier.router import Prediction, Router


@pytest.fixture(scope="module")
def router(trained_bundle) -> Router:
    return Router.load(trained_bundle)


def chosen(router: Router, tier: str) -> Prediction:
    """A policy decision for `tier`, escalating to the top tier."""
    names = router.ladder.names
    chain = names[names.index(tier) :]
    probs = dict(zip(names, (0.3, 0.6, 0.9), strict=True))
    return Prediction(
        tier=tier,
        model=router.ladder.tiers[names.index(tier)].model,
        probabilities=probs,
        fallback_chain=chain,
        quality_target=0.8,
        mode="threshold",
        expected_cost_usd=None,
    )


def test_draws_follow_the_stated_propensities(router):
    explorer = Explorer(router, 0.3, random.Random(1))
    top = chosen(router, "opus")
    draws = [explorer.serve(top, None) for _ in range(20_000)]
    assert all(d.propensities == draws[0].propensities for d in draws)
    assert draws[0].propensities == pytest.approx({"haiku": 0.15, "sonnet": 0.15, "opus": 0.7})
    served = Counter(d.prediction.tier for d in draws)
    for tier, share in draws[0].propensities.items():
        assert served[tier] / len(draws) == pytest.approx(share, abs=0.015)
    for d in draws:
        assert d.propensity == pytest.approx(d.propensities[d.prediction.tier])
        assert d.explored == (d.prediction.tier != "opus")


def test_an_explored_tier_escalates_to_the_chosen_tier_and_its_chain(router):
    explorer = Explorer(router, 1.0, random.Random(0))
    policy = chosen(router, "sonnet")
    served = explorer.serve(policy, None)
    assert served.explored and served.prediction.tier == "haiku"
    assert served.prediction.model == router.ladder.tiers[0].model
    assert served.prediction.fallback_chain == ["haiku", "sonnet", "opus"]
    assert served.propensity == 1.0 and served.propensities == {"haiku": 1.0}
    probs = [policy.probabilities[n] for n in router.ladder.names]
    assert served.prediction.expected_cost_usd == pytest.approx(
        expected_chain_cost(probs, router.policy.costs, [0, 1, 2])
    )
    assert served.prediction.probabilities == policy.probabilities


def test_an_async_request_prices_its_explored_chain_at_batch_prices(router):
    policy = chosen(router, "opus")
    served = Explorer(router, 1.0, random.Random(0)).serve(policy, ["sonnet", "opus"], band="async")
    probs = [policy.probabilities[n] for n in router.ladder.names]
    batch = router.policy.batch_costs or router.policy.costs
    assert served.prediction.expected_cost_usd == pytest.approx(expected_chain_cost(probs, batch, [1, 2]))


def test_only_allowed_cheaper_tiers_are_explored(router):
    explorer = Explorer(router, 1.0, random.Random(0))
    served = {explorer.serve(chosen(router, "opus"), ["sonnet", "opus"]).prediction.tier for _ in range(200)}
    assert served == {"sonnet"}


@pytest.mark.parametrize(
    ("tier", "allowed", "allow"),
    [("haiku", None, True), ("opus", ["opus"], True), ("opus", None, False)],
    ids=["cheapest tier", "no cheaper allowed tier", "opted out"],
)
def test_the_policy_choice_is_certain_when_exploration_cannot_or_may_not_happen(router, tier, allowed, allow):
    policy = chosen(router, tier)
    served = Explorer(router, 0.5, random.Random(0)).serve(policy, allowed, allow)
    assert served.prediction is policy
    assert (served.explored, served.propensity, served.propensities) == (False, 1.0, {tier: 1.0})


def test_a_rate_outside_zero_to_one_is_refused(router):
    with pytest.raises(FieldError, match="explore_rate"):
        Explorer(router, 1.5)
