"""The routing policy: threshold rules, overrides, allowed tiers and expected-cost chains."""

from __future__ import annotations

import numpy as np
import pytest
from tierwise.classifier.limits import FieldError
from tierwise.classifier.policy import Policy, expected_chain_cost, rule_scores
from tierwise.classifier.request import RouteOptions

POLICY = Policy(tiers=("haiku", "sonnet", "opus"), costs=(1.0, 4.0, 10.0), threshold=0.7)


def test_absolute_rule_takes_cheapest_tier_clearing_the_threshold():
    assert POLICY.choose(np.array([0.8, 0.9, 0.95])).tier == 0
    assert POLICY.choose(np.array([0.5, 0.75, 0.95])).tier == 1
    decision = POLICY.choose(np.array([0.1, 0.2, 0.3]))
    assert decision.tier == 2 and decision.chain == (2,)


def test_quality_target_override_and_chain():
    decision = POLICY.choose(np.array([0.8, 0.9, 0.95]), RouteOptions(quality_target=0.85))
    assert decision.tier == 1 and decision.chain == (1, 2)
    # expected cost of sonnet then opus: 4 + (1 - 0.9) * 10
    assert decision.expected_cost == pytest.approx(5.0)


def test_relative_rule_keeps_a_share_of_the_best_tier():
    relative = Policy(tiers=POLICY.tiers, costs=POLICY.costs, threshold=0.9, rule="relative")
    # hopeless request: every tier is bad, so the cheapest keeps 90% of the best
    assert relative.choose(np.array([0.19, 0.2, 0.21])).tier == 0
    assert relative.choose(np.array([0.3, 0.85, 0.9])).tier == 1


def test_allowed_tiers_restrict_the_choice():
    assert POLICY.choose(np.array([0.9, 0.9, 0.9]), RouteOptions(allowed_tiers=["sonnet", "opus"])).tier == 1
    decision = POLICY.choose(np.array([0.1, 0.2, 0.9]), RouteOptions(allowed_tiers=["haiku", "sonnet"]))
    assert decision.tier == 1 and decision.chain == (1,)


def test_cost_mode_minimises_expected_cost_to_an_acceptable_answer():
    # haiku almost always works: try it first, escalate straight to opus
    decision = POLICY.choose(np.array([0.95, 0.96, 0.99]), RouteOptions(mode="cost"))
    assert decision.chain == (0, 2)
    assert decision.expected_cost == pytest.approx(1.0 + 0.05 * 10.0)
    # haiku hopeless: skip it
    assert POLICY.choose(np.array([0.01, 0.9, 0.99]), RouteOptions(mode="cost")).chain == (1, 2)
    assert expected_chain_cost(np.array([0.5, 0.5, 1.0]), np.array([1.0, 4.0, 10.0]), (0, 1, 2)) == pytest.approx(
        1.0 + 0.5 * 4.0 + 0.5 * 10.0
    )


def test_a_tier_the_model_lacks_is_refused_by_name():
    with pytest.raises(FieldError) as error:
        POLICY.choose(np.array([0.5, 0.5, 0.5]), RouteOptions(allowed_tiers=["gpt-9"]))
    assert error.value.field == "allowed_tiers" and "gpt-9" in str(error.value)


def test_training_picks_the_rule_with_the_better_validation_apgr():
    from tierwise.training.fit.policy_choice import choose_policy

    # Request 0 is hopeless on every tier: the absolute rule sends it to the expensive top tier for nothing,
    # the relative rule keeps it cheap. Requests 1-2 are easy, request 3 needs the top tier.
    success = np.array([[0, 0, 0], [1, 1, 1], [1, 1, 1], [0, 0, 1]], dtype=float)
    cost = np.tile([1.0, 4.0, 10.0], (4, 1))
    probs = np.array([[0.10, 0.11, 0.12], [0.9, 0.95, 0.97], [0.9, 0.95, 0.97], [0.2, 0.3, 0.95]])
    auto = choose_policy(success, cost, probs, ("absolute", "relative"), [1.0, 4.0, 10.0], quality_floor=1.0)
    assert auto.spec.rule == "relative"
    assert auto.validation_apgr["relative"] > auto.validation_apgr["absolute"]
    forced = choose_policy(success, cost, probs, ("absolute",), [1.0, 4.0, 10.0], quality_floor=1.0)
    assert forced.spec.rule == "absolute" and "as asked" in forced.spec.chosen_by


def test_training_with_every_rule_and_no_validation_row_known_on_every_tier_takes_the_first_rule():
    from tierwise.training.fit.policy_choice import choose_policy
    from tierwise.training.fit.train import TrainOptions

    success = np.array([[np.nan, 1.0, 1.0]])  # censored: never tried on the cheapest tier
    cost = np.array([[np.nan, 4.0, 10.0]])
    choice = choose_policy(success, cost, np.array([[0.5, 0.6, 0.9]]), TrainOptions().rules, [1.0, 4.0, 10.0])
    assert (choice.spec.rule, choice.spec.chosen_by) == (TrainOptions().rules[0], "default: no validation rows")


UTILITY = Policy(tiers=POLICY.tiers, costs=POLICY.costs, threshold=0.7, rule="utility")


def test_utility_rule_takes_the_tier_with_the_best_quality_for_its_cost():
    # costs 1 : 4 : 10 are 0.1 : 0.4 : 1 of the top; q = 1 / (1 + lambda)
    probs = np.array([0.5, 0.8, 0.9])
    assert (
        UTILITY.choose(probs, RouteOptions(quality_target=0.5)).tier == 0
    )  # lambda 1: 0.40 = 0.40 > -0.10, a tie goes cheaper
    assert UTILITY.choose(probs, RouteOptions(quality_target=0.7)).tier == 1  # lambda 0.43: 0.46, 0.63, 0.47
    assert UTILITY.choose(probs, RouteOptions(quality_target=0.9)).tier == 2  # lambda 0.11: 0.49, 0.76, 0.79
    # a hopeless request stays cheap even at a high target: the top tier's extra P is not worth its cost
    assert UTILITY.choose(np.array([0.10, 0.11, 0.12]), RouteOptions(quality_target=0.95)).tier == 0
    # at target 1 only expected quality counts; tiers with the same best P go to the cheapest
    assert UTILITY.choose(np.array([0.3, 0.9, 0.9]), RouteOptions(quality_target=1.0)).tier == 1
    # restricted tiers keep the ladder's cost unit: the same lambda, only the cheaper tiers to choose from
    assert UTILITY.choose(probs, RouteOptions(quality_target=0.9, allowed_tiers=["haiku", "sonnet"])).tier == 1


def test_utility_scores_make_the_threshold_rule_an_argmax_of_quality_minus_cost():
    rng = np.random.default_rng(0)
    probs = rng.random((300, 4))
    costs = np.array([0.2, 0.6, 1.0, 30.0])
    scores = rule_scores(probs, "utility", costs)
    for q in (0.01, 0.3, 0.6, 0.9, 0.99, 1.0):
        lam = (1 - q) / q
        argmax = np.argmax(probs - lam * costs / costs[-1], axis=1)
        passes = scores >= q
        assert (passes.argmax(axis=1) == argmax).all()
    assert (scores.max(axis=1) == 1.0).all()  # some tier always passes


def test_utility_rule_needs_costs():
    with pytest.raises(FieldError) as error:
        rule_scores(np.array([[0.5, 0.6]]), "utility")
    assert error.value.field == "rule"


def test_training_can_pick_the_utility_rule():
    from tierwise.training.fit.policy_choice import choose_policy

    # Request 0 gains 0.05 of P on the dear top tier (not worth 10x the cost, but the relative rule pays for
    # it at thresholds above 0.9), requests 1-2 are easy, request 3 needs the top tier.
    success = np.array([[0, 0, 0], [1, 1, 1], [1, 1, 1], [0, 0, 1]], dtype=float)
    cost = np.tile([1.0, 4.0, 10.0], (4, 1))
    probs = np.array([[0.30, 0.31, 0.35], [0.9, 0.95, 0.97], [0.9, 0.95, 0.97], [0.2, 0.3, 0.95]])
    choice = choose_policy(success, cost, probs, ("absolute", "relative", "utility"), [1.0, 4.0, 10.0], 1.0)
    assert set(choice.validation_apgr) == {"absolute", "relative", "utility"}
    assert choice.validation_apgr["utility"] >= max(
        choice.validation_apgr["absolute"], choice.validation_apgr["relative"]
    )
