"""APGR, CPT, cost at quality, AIQ, ECE and routing rates on cases small enough to compute by hand."""

import numpy as np
import pytest
from tierwise.training.evaluation.baselines import random_mix_curve
from tierwise.training.evaluation.curves import Curve, threshold_curve
from tierwise.training.evaluation.metrics import (
    Anchors,
    aiq,
    apgr,
    cost_ratio_at_quality,
    cost_to_recover_gap,
    curve_summary,
    expected_calibration_error,
    monotone_hull,
    routing_rates,
    tier_calibration,
)

# Two tiers at flat costs 1 and 2. Cheapest solves requests 0-1 (q 0.5), top solves 0, 2, 3 (q 0.75);
# the perfect router solves all four at cost 1.5, recovering twice the gap.
TWO_SUCCESS = np.array([[1, 1], [1, 0], [0, 1], [0, 1]], dtype=float)
TWO_COST = np.tile([1.0, 2.0], (4, 1))
TWO_ANCHORS = Anchors.from_outcomes(TWO_SUCCESS, TWO_COST)

# Three tiers at flat costs 1 : 3 : 10 (same case as test_evaluation_curves).
THREE_SUCCESS = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=float)
THREE_COST = np.tile([1.0, 3.0, 10.0], (4, 1))
THREE_PROBS = np.array([[0.9, 0.95, 0.99], [0.4, 0.8, 0.9], [0.2, 0.3, 0.7], [0.6, 0.6, 0.6]])
THREE = Anchors.from_outcomes(THREE_SUCCESS, THREE_COST)


def test_anchors_are_always_cheapest_and_always_top():
    anchors = Anchors.from_outcomes(TWO_SUCCESS, TWO_COST)
    assert anchors == Anchors(cheapest_cost=1.0, cheapest_quality=0.5, top_cost=2.0, top_quality=0.75)
    assert anchors.gap == 0.25


def test_perfect_router_gets_apgr_one_by_hand():
    # Budgets 1 + k/49, k = 0..49: the 25 budgets from k = 25 afford the oracle's 1.5 and recover
    # (1.0 - 0.5) / 0.25 = 2 gaps; the 25 below it recover 0. Mean: 2 * 25 / 50 = 1.
    perfect = threshold_curve(TWO_SUCCESS, TWO_COST, TWO_SUCCESS)
    np.testing.assert_allclose(perfect.cost, [1.0, 1.5])
    np.testing.assert_allclose(perfect.quality, [0.5, 1.0])
    assert apgr(perfect, TWO_ANCHORS) == pytest.approx(1.0)


def test_perfect_router_that_reaches_top_quality_at_cheapest_cost_gets_apgr_one():
    # Request 1 needs the top tier but costs the same there, so the perfect router matches the top
    # tier's quality at the always-cheapest cost: every budget recovers the whole gap.
    success = np.array([[1, 1], [0, 1]], dtype=float)
    cost = np.array([[1.0, 3.0], [1.0, 1.0]])
    curve = threshold_curve(success, cost, success)
    assert apgr(curve, Anchors.from_outcomes(success, cost)) == pytest.approx(1.0)


def test_router_equal_to_the_cheapest_tier_gets_apgr_zero():
    always_cheapest = np.array([[1.0, 0.3]] * 4)
    curve = threshold_curve(TWO_SUCCESS, TWO_COST, always_cheapest)
    assert np.unique(curve.cost).tolist() == [1.0]
    assert apgr(curve, TWO_ANCHORS) == 0.0
    assert cost_to_recover_gap(curve, TWO_ANCHORS, 0.5) is None
    assert cost_ratio_at_quality(curve, TWO_ANCHORS, 0.90) is None
    assert aiq(curve, TWO_ANCHORS) == pytest.approx(0.5)


def test_graded_three_tier_router_by_hand():
    # Curve points (cost, quality): (1, .25) (1.5, .25) (3.25, .5) (3.75, .75) ... (10, .75); gap 0.5.
    # Budgets 1 + 9k/49 reach 3.25 from k = 13 and 3.75 from k = 15: APGR = (2 * 0.5 + 35 * 1) / 50.
    curve = threshold_curve(THREE_SUCCESS, THREE_COST, THREE_PROBS)
    assert apgr(curve, THREE) == pytest.approx(36 / 50)
    assert cost_to_recover_gap(curve, THREE, 0.5) == pytest.approx(0.325)
    assert cost_to_recover_gap(curve, THREE, 0.8) == pytest.approx(0.375)
    for fraction in (0.90, 0.95, 0.99, 1.00):
        assert cost_ratio_at_quality(curve, THREE, fraction) == pytest.approx(0.375)
    # Hull in normalised cost: (0, .25) -> (11/36, .75), then flat; (0.25, .5) lies under that chord.
    assert aiq(curve, THREE) == pytest.approx((11 / 36) * 0.5 + (25 / 36) * 0.75)


def test_apgr_floors_each_budget_at_zero_and_is_undefined_without_a_gap():
    worse = Curve(settings=np.array([0.0, 1.0]), cost=np.array([1.0, 1.0]), quality=np.array([0.5, 0.1]))
    assert apgr(worse, TWO_ANCHORS) == 0.0
    no_gap = Anchors(cheapest_cost=1.0, cheapest_quality=0.6, top_cost=2.0, top_quality=0.6)
    assert apgr(worse, no_gap) is None
    assert cost_to_recover_gap(worse, no_gap, 0.5) is None


def test_random_mix_of_cheapest_and_top_by_hand():
    curve = random_mix_curve(TWO_ANCHORS)
    assert apgr(curve, TWO_ANCHORS) == pytest.approx(0.5, abs=1e-3)  # mean of k/49 over k = 0..49
    assert cost_to_recover_gap(curve, TWO_ANCHORS, 0.5) == pytest.approx(1.5 / 2, abs=1e-3)
    assert cost_to_recover_gap(curve, TWO_ANCHORS, 0.8) == pytest.approx(1.8 / 2, abs=1e-3)
    # 90% of top quality is 0.675, reached at mix ratio (0.675 - 0.5) / 0.25 = 0.7: cost 1.7.
    assert cost_ratio_at_quality(curve, TWO_ANCHORS, 0.90) == pytest.approx(1.7 / 2, abs=1e-3)
    assert cost_ratio_at_quality(curve, TWO_ANCHORS, 1.00) == pytest.approx(1.0)
    assert aiq(curve, TWO_ANCHORS) == pytest.approx((0.5 + 0.75) / 2, abs=1e-6)


def test_aiq_on_a_tiny_hull():
    # Points (0, .2), (.5, .4), (.25, .5), (.6, .3), (.75, .9): (.5, .4) and (.6, .3) are beaten by a
    # cheaper point; (.25, .5) lies above the chord (0, .2)-(.75, .9), which is at .433 there, so the
    # hull is (0, .2) -> (.25, .5) -> (.75, .9), then flat to 1.
    x = np.array([0.0, 0.5, 0.25, 0.6, 0.75])
    y = np.array([0.2, 0.4, 0.5, 0.3, 0.9])
    hx, hy = monotone_hull(x, y)
    assert hx.tolist() == [0.0, 0.25, 0.75] and hy.tolist() == [0.2, 0.5, 0.9]
    anchors = Anchors(cheapest_cost=0.0, cheapest_quality=0.2, top_cost=1.0, top_quality=0.8)
    curve = Curve(settings=np.arange(5.0), cost=x, quality=y)
    expected = 0.25 * (0.2 + 0.5) / 2 + 0.5 * (0.5 + 0.9) / 2 + 0.25 * 0.9
    assert aiq(curve, anchors) == pytest.approx(expected)


def test_hull_drops_a_point_under_the_chord():
    hx, hy = monotone_hull(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.2, 1.0]))
    assert hx.tolist() == [0.0, 1.0] and hy.tolist() == [0.0, 1.0]


def test_ece_by_hand():
    # one request per bin: |0.9-1| + |0.4-0| + |0.2-0| + |0.6-0|, averaged
    assert expected_calibration_error(THREE_PROBS[:, 0], THREE_SUCCESS[:, 0]) == pytest.approx(1.3 / 4)
    # a shared bin [0.1, 0.2): mean p 0.15 vs rate 0.5 on 2 of 3 rows; p = 1.0 falls in the last bin
    probs = np.array([0.12, 0.18, 1.0])
    assert expected_calibration_error(probs, np.array([0, 1, 1.0])) == pytest.approx(0.35 * 2 / 3)
    assert expected_calibration_error(probs, np.array([np.nan, np.nan, 1.0])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.full(3, np.nan)) is None


def test_tier_calibration_uses_every_request_where_the_tier_was_tried():
    success = THREE_SUCCESS.copy()
    success[3, 0] = np.nan
    cal = tier_calibration(["a", "b", "c"], THREE_PROBS, success)
    assert [c.n for c in cal] == [3, 4, 4]
    assert cal[0].ece == pytest.approx((0.1 + 0.4 + 0.2) / 3)
    assert cal[0].accuracy == pytest.approx(1.0)  # 0.9 -> success, 0.4 and 0.2 -> failure
    assert cal[2].accuracy == pytest.approx(0.75)  # request 3 is predicted 0.6 but fails


def test_routing_rates_by_hand():
    # threshold 0.35 sends request 1 to the cheapest tier, which fails where the middle one succeeds
    under = routing_rates(THREE_SUCCESS, np.array([0, 0, 2, 0]))
    assert (under.under_routing, under.over_routing, under.exact_tier_accuracy) == (0.25, 0.0, 0.5)
    # threshold 0.85 sends request 1 to the top although the middle tier succeeded
    over = routing_rates(THREE_SUCCESS, np.array([0, 2, 2, 2]))
    assert (over.under_routing, over.over_routing, over.exact_tier_accuracy) == (0.0, 0.25, 0.75)


def test_curve_summary_uses_the_documented_keys():
    summary = curve_summary(threshold_curve(THREE_SUCCESS, THREE_COST, THREE_PROBS), THREE)
    assert list(summary) == [
        "apgr",
        "cpt50",
        "cpt80",
        "cost_ratio_at_90",
        "cost_ratio_at_95",
        "cost_ratio_at_99",
        "cost_ratio_at_100",
        "aiq",
    ]
