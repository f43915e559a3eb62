"""The exact threshold sweep against brute force and a hand-computed three-tier case."""

import numpy as np
import pytest
from tierwise.training.evaluation.curves import choose_tiers, known_rows, outcome_of, threshold_curve

# Three tiers with flat costs 1 : 3 : 10. Request 3 looks easy to the router but nothing solves it.
SUCCESS = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=float)
COST = np.tile([1.0, 3.0, 10.0], (4, 1))
PROBS = np.array([[0.9, 0.95, 0.99], [0.4, 0.8, 0.9], [0.2, 0.3, 0.7], [0.6, 0.6, 0.6]])


def test_choose_tiers_takes_the_cheapest_tier_over_the_threshold_else_the_top():
    assert choose_tiers(PROBS, 0.5).tolist() == [0, 1, 2, 0]
    assert choose_tiers(PROBS, 0.85).tolist() == [0, 2, 2, 2]
    assert choose_tiers(PROBS, 1.0).tolist() == [2, 2, 2, 2]


def test_exact_sweep_gives_one_point_per_distinct_decision_by_hand():
    curve = threshold_curve(SUCCESS, COST, PROBS)
    assert curve.settings.tolist() == [0.0, 0.2, 0.3, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0]
    np.testing.assert_allclose(curve.cost, [1, 1, 1.5, 3.25, 3.75, 6, 7.75, 8.25, 10])
    np.testing.assert_allclose(curve.quality, [0.25, 0.25, 0.25, 0.5, 0.75, 0.75, 0.75, 0.75, 0.75])


def test_exact_sweep_matches_brute_force_on_random_routers():
    rng = np.random.default_rng(7)
    n, tiers = 300, 4
    success = (rng.random((n, tiers)) < np.linspace(0.3, 0.8, tiers)).astype(float)
    cost = np.cumsum(rng.random((n, tiers)), axis=1)
    probs = np.round(rng.random((n, tiers)), 2)  # rounding creates ties between requests
    curve = threshold_curve(success, cost, probs)
    grid = np.linspace(0, 1, 257)
    on_grid = threshold_curve(success, cost, probs, grid)
    for t, c, q in zip(
        np.concatenate([curve.settings, grid]),
        np.concatenate([curve.cost, on_grid.cost]),
        np.concatenate([curve.quality, on_grid.quality]),
        strict=True,
    ):
        brute_cost, brute_quality = outcome_of(success, cost, choose_tiers(probs, t))
        assert c == pytest.approx(brute_cost) and q == pytest.approx(brute_quality)
    # every threshold on the grid gives a point the exact sweep already holds
    exact = set(zip(np.round(curve.cost, 9), np.round(curve.quality, 9), strict=True))
    assert set(zip(np.round(on_grid.cost, 9), np.round(on_grid.quality, 9), strict=True)) <= exact


def test_known_rows_drops_requests_with_an_untried_tier():
    success = SUCCESS.copy()
    success[1, 0] = np.nan
    cost = COST.copy()
    cost[3, 2] = np.nan
    assert known_rows(success, cost).tolist() == [True, False, True, False]


@pytest.mark.parametrize(
    ("success", "probs", "message"),
    [
        (np.where(SUCCESS == 1, np.nan, SUCCESS), PROBS, "known"),
        (SUCCESS * 0.5, PROBS, "0 or 1"),
        (SUCCESS, PROBS + 0.2, r"\[0, 1\]"),
        (SUCCESS, PROBS[:, :2], "shape"),
    ],
)
def test_threshold_curve_rejects_unusable_inputs(success, probs, message):
    with pytest.raises(ValueError, match=message):
        threshold_curve(success, COST, probs)
