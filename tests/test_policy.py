"""The routing policy: threshold rules, overrides, allowed tiers and expected-cost chains."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.policy import Policy, PolicyError, expected_chain_cost

POLICY = Policy(tiers=("haiku", "sonnet", "opus"), costs=(1.0, 4.0, 10.0), threshold=0.7)


def test_absolute_rule_takes_cheapest_tier_clearing_the_threshold():
    assert POLICY.choose(np.array([0.8, 0.9, 0.95])).tier == 0
    assert POLICY.choose(np.array([0.5, 0.75, 0.95])).tier == 1
    decision = POLICY.choose(np.array([0.1, 0.2, 0.3]))
    assert decision.tier == 2 and decision.chain == (2,)


def test_quality_target_override_and_chain():
    decision = POLICY.choose(np.array([0.8, 0.9, 0.95]), quality_target=0.85)
    assert decision.tier == 1 and decision.chain == (1, 2)
    # expected cost of sonnet then opus: 4 + (1 - 0.9) * 10
    assert decision.expected_cost == pytest.approx(5.0)


def test_relative_rule_keeps_a_share_of_the_best_tier():
    relative = Policy(tiers=POLICY.tiers, costs=POLICY.costs, threshold=0.9, rule="relative")
    # hopeless request: every tier is bad, so the cheapest keeps 90% of the best
    assert relative.choose(np.array([0.19, 0.2, 0.21])).tier == 0
    assert relative.choose(np.array([0.3, 0.85, 0.9])).tier == 1


def test_allowed_tiers_restrict_the_choice():
    assert POLICY.choose(np.array([0.9, 0.9, 0.9]), allowed_tiers=["sonnet", "opus"]).tier == 1
    decision = POLICY.choose(np.array([0.1, 0.2, 0.9]), allowed_tiers=["haiku", "sonnet"])
    assert decision.tier == 1 and decision.chain == (1,)


def test_cost_mode_minimises_expected_cost_to_an_acceptable_answer():
    # haiku almost always works: try it first, escalate straight to opus
    decision = POLICY.choose(np.array([0.95, 0.96, 0.99]), mode="cost")
    assert decision.chain == (0, 2)
    assert decision.expected_cost == pytest.approx(1.0 + 0.05 * 10.0)
    # haiku hopeless: skip it
    assert POLICY.choose(np.array([0.01, 0.9, 0.99]), mode="cost").chain == (1, 2)
    assert expected_chain_cost(np.array([0.5, 0.5, 1.0]), np.array([1.0, 4.0, 10.0]), (0, 1, 2)) == pytest.approx(
        1.0 + 0.5 * 4.0 + 0.5 * 10.0
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"quality_target": 1.5}, "quality_target"),
        ({"quality_target": -0.1}, "quality_target"),
        ({"quality_target": float("nan")}, "quality_target"),
        ({"allowed_tiers": ["gpt-9"]}, "allowed_tiers"),
        ({"mode": "cheapest"}, "mode"),
    ],
)
def test_bad_arguments_name_their_field(kwargs, field):
    with pytest.raises(PolicyError) as error:
        POLICY.choose(np.array([0.5, 0.5, 0.5]), **kwargs)
    assert error.value.field == field


def test_training_picks_the_rule_with_the_better_validation_apgr():
    from training.train import choose_policy

    # Request 0 is hopeless on every tier: the absolute rule sends it to the expensive top tier for nothing,
    # the relative rule keeps it cheap. Requests 1-2 are easy, request 3 needs the top tier.
    success = np.array([[0, 0, 0], [1, 1, 1], [1, 1, 1], [0, 0, 1]], dtype=float)
    cost = np.tile([1.0, 4.0, 10.0], (4, 1))
    probs = np.array([[0.10, 0.11, 0.12], [0.9, 0.95, 0.97], [0.9, 0.95, 0.97], [0.2, 0.3, 0.95]])
    auto = choose_policy(success, cost, probs, ("absolute", "relative"), quality_floor=1.0)
    assert auto.spec.rule == "relative"
    assert auto.validation_apgr["relative"] > auto.validation_apgr["absolute"]
    forced = choose_policy(success, cost, probs, ("absolute",), quality_floor=1.0)
    assert forced.spec.rule == "absolute" and "as asked" in forced.spec.chosen_by
