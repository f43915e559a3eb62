"""The savings metrics of issue 13 on hand-computed cases and against independent computations: the static mix
and the oracle frontier (linear programmes), the gain over the static mix, the vectorised bootstrap, RouteLLM's
two-tier metrics, and the keys the report carries."""

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog
from tierwise.training.evaluation.bootstrap import (
    Interval,
    curve_intervals,
    mean_interval,
    percentile_interval,
    resample_weights,
)
from tierwise.training.evaluation.curves import ThresholdSteps, threshold_curve
from tierwise.training.evaluation.gaps import gap_profile
from tierwise.training.evaluation.metrics import Anchors, apgr, cost_ratio_at_quality
from tierwise.training.evaluation.report import build_report
from tierwise.training.evaluation.routellm import routellm_metrics
from tierwise.training.evaluation.savings import SavingsScale, oracle_frontier, static_mix_quality

# Two tiers at flat costs 1 and 2: the cheapest solves requests 0-1, the top 0, 2 and 3 (see test_evaluation_metrics).
TWO_SUCCESS = np.array([[1, 1], [1, 0], [0, 1], [0, 1]], dtype=float)
TWO_COST = np.tile([1.0, 2.0], (4, 1))
# Three tiers at 1 : 3 : 10 (see test_evaluation_curves); the router's probabilities are those of that file.
THREE_SUCCESS = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=float)
THREE_COST = np.tile([1.0, 3.0, 10.0], (4, 1))
THREE_PROBS = np.array([[0.9, 0.95, 0.99], [0.4, 0.8, 0.9], [0.2, 0.3, 0.7], [0.6, 0.6, 0.6]])


def random_outcomes(seed: int, n: int = 40, tiers: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    success = (rng.random((n, tiers)) < np.linspace(0.35, 0.75, tiers)).astype(float)
    cost = rng.random((n, tiers)) * np.linspace(1.0, 6.0, tiers)  # per-request costs, not always rising
    return success, cost


def test_static_mix_is_the_hull_of_the_always_one_tier_points():
    cost, quality = np.array([1.0, 3.0, 10.0]), np.array([0.25, 0.5, 0.75])
    budgets = np.array([0.5, 1.0, 2.0, 6.5, 10.0, 12.0])
    np.testing.assert_allclose(static_mix_quality(cost, quality, budgets), [-np.inf, 0.25, 0.375, 0.625, 0.75, 0.75])
    # a middle tier under the chord from the cheapest to the top one is never part of the best mix
    weak_middle = np.array([0.25, 0.3, 0.75])
    assert static_mix_quality(cost, weak_middle, np.array([3.0]))[0] == pytest.approx(0.25 + 0.5 * 2 / 9)
    # a dear tier worse than a cheaper one leaves the mix flat
    assert static_mix_quality(np.array([1.0, 2.0]), np.array([0.7, 0.6]), np.array([2.0]))[0] == 0.7


def test_static_mix_solves_the_mixing_linear_programme_row_by_row():
    rng = np.random.default_rng(3)
    cost = rng.random((6, 4)) * 5
    quality = rng.random((6, 4))
    budgets = np.sort(rng.random((6, 7)) * 5, axis=1)
    got = static_mix_quality(cost, quality, budgets)
    for row in range(6):
        for b, value in zip(budgets[row], got[row], strict=True):
            lp = linprog(-quality[row], A_ub=[cost[row]], b_ub=[b], A_eq=[np.ones(4)], b_eq=[1], bounds=(0, 1))
            assert value == (pytest.approx(-lp.fun) if lp.success else -np.inf)


@pytest.mark.parametrize("seed", [0, 1])
def test_oracle_frontier_is_the_best_quality_at_each_budget_with_known_outcomes(seed):
    success, cost = random_outcomes(seed, n=25)
    n, tiers = success.shape
    frontier = oracle_frontier(success, cost)
    one_tier_each = np.kron(np.eye(n), np.ones(tiers))
    for budget in np.linspace(cost.min(axis=1).mean(), cost.max(axis=1).mean(), 9):
        lp = linprog(-success.ravel() / n, A_ub=[cost.ravel() / n], b_ub=[budget], A_eq=one_tier_each, b_eq=np.ones(n))
        assert np.interp(budget, frontier.cost, frontier.quality) == pytest.approx(-lp.fun, abs=1e-9)


def test_gain_over_static_of_a_perfect_two_tier_router_by_hand():
    # Grid: 1001 costs from 1 to 2. The static mix rises from 0.5 to 0.75 (mean 0.625). The perfect router is
    # 0.5 below cost 1.5 and 1.0 from it (grid points 500..1000): mean (500 x 0.5 + 501) / 1001. The oracle
    # frontier rises from 0.5 at cost 1 to 1.0 at 1.5 and stays there: mean (501 x 0.75 + 500) / 1001.
    scale = SavingsScale.of(TWO_SUCCESS, TWO_COST)
    perfect = threshold_curve(TWO_SUCCESS, TWO_COST, TWO_SUCCESS)
    summary = scale.summary(perfect)
    gain = (500 * 0.5 + 501) / 1001 - 0.625
    assert summary["gain_over_static"] == pytest.approx(gain)
    assert summary["max_gain_over_static"] == pytest.approx(0.375)
    assert summary["headroom_captured"] == pytest.approx(gain / ((501 * 0.75 + 500) / 1001 - 0.625))
    assert summary["cost_at_top_quality"] == pytest.approx(0.75)
    # routing without looking (the static mix itself) gains nothing; always-cheapest loses the whole mix
    cheapest = threshold_curve(TWO_SUCCESS, TWO_COST, np.ones_like(TWO_SUCCESS))
    assert scale.summary(cheapest)["gain_over_static"] == pytest.approx(-0.125)
    assert scale.summary(cheapest)["cost_at_top_quality"] is None


def test_gain_over_static_matches_a_budget_by_budget_computation():
    curve = threshold_curve(THREE_SUCCESS, THREE_COST, THREE_PROBS)
    summary = SavingsScale.of(THREE_SUCCESS, THREE_COST).summary(curve)
    budgets = np.linspace(1.0, 10.0, 1001)
    router = [curve.quality[curve.cost <= b + 1e-12].max() for b in budgets]
    static = np.interp(budgets, [1.0, 3.0, 10.0], [0.25, 0.5, 0.75])  # every tier is on the hull here
    assert summary["gain_over_static"] == pytest.approx(np.mean(router - static))
    assert summary["max_gain_over_static"] == pytest.approx(np.max(router - static))
    assert summary["max_gain_over_static"] == pytest.approx(0.75 - (0.5 + 0.25 * 0.754 / 7))  # first grid cost >= 3.75
    assert summary["cost_at_top_quality"] == pytest.approx(0.375)


def test_vectorised_bootstrap_equals_scoring_each_resample_on_its_own():
    success, cost = random_outcomes(5, n=60)
    probs = np.random.default_rng(5).random(success.shape)
    weights = resample_weights(len(success), resamples=25, seed=9)
    intervals = curve_intervals(ThresholdSteps.of(success, cost, probs), success, cost, weights)
    one_by_one = {key: [] for key in intervals}
    for w in weights.astype(int):
        rows = np.repeat(np.arange(len(success)), w)
        s, c, p = success[rows], cost[rows], probs[rows]
        curve, anchors = threshold_curve(s, c, p), Anchors.from_outcomes(s, c)
        summary = SavingsScale.of(s, c).summary(curve)
        one_by_one["apgr"].append(apgr(curve, anchors))
        one_by_one["gain_over_static"].append(summary["gain_over_static"])
        one_by_one["cost_at_top_quality"].append(summary["cost_at_top_quality"])
        one_by_one["cost_ratio_at_95"].append(cost_ratio_at_quality(curve, anchors, 0.95))
    for key, values in one_by_one.items():
        expected = percentile_interval(np.array([np.inf if v is None else v for v in values]))
        assert (intervals[key].lo, intervals[key].hi) == pytest.approx((expected.lo, expected.hi)), key


def test_bootstrap_is_seeded_and_reads_never_as_above_everything():
    assert (resample_weights(30, 10, seed=1) == resample_weights(30, 10, seed=1)).all()
    assert resample_weights(30, 10).sum(axis=1).tolist() == [30.0] * 10
    interval = percentile_interval(np.array([0.5] * 90 + [np.inf] * 10))
    assert interval == Interval(0.5, None) and not interval.lies_below(1.0) and interval.lies_above(0.4)
    assert percentile_interval(np.array([np.nan, np.nan])) == Interval(None, None)
    # a paired difference that is always positive has an interval above 0
    assert mean_interval(np.array([1.0, 0.0, 1.0, 1.0]), resample_weights(4, 200)).lo >= 0.0


def routellm_reference(weak: np.ndarray, strong: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """RouteLLM's evals (benchmarks.py + evaluate.py) restated with pandas, in percent as it computes them."""
    _, thresholds = pd.qcut(pd.Series(score), 10, retbins=True)
    rows = []
    for i, threshold in enumerate(thresholds):
        selection = score >= threshold if i != len(thresholds) - 1 else score > threshold
        accuracy = np.where(selection, strong, weak).mean() * 100
        rows.append({"strong_percentage": selection.mean() * 100, "accuracy": accuracy})
    df = pd.DataFrame(rows).sort_values(by=["strong_percentage"])
    weak_accuracy, strong_accuracy = weak.mean() * 100, strong.mean() * 100
    x = df["strong_percentage"] / 100
    auc = np.trapezoid(df["accuracy"], x)
    weak_auc = np.trapezoid(np.full(len(df), weak_accuracy), x)
    strong_auc = np.trapezoid(np.full(len(df), strong_accuracy), x)
    cpt = {
        f"routellm_cpt{round(p * 100)}": np.interp(
            p * (strong_accuracy - weak_accuracy) + weak_accuracy, df["accuracy"], df["strong_percentage"]
        )
        / 100
        for p in (0.5, 0.8)
    }
    return {"routellm_apgr": (auc - weak_auc) / (strong_auc - weak_auc), **cpt}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_routellm_metrics_are_computed_as_routellm_does(seed):
    rng = np.random.default_rng(seed)
    weak = (rng.random(400) < 0.5).astype(float)
    strong = np.maximum(weak, rng.random(400) < 0.4).astype(float)
    score = rng.random(400) + rng.random() * (strong - weak)
    assert routellm_metrics(weak, strong, score) == pytest.approx(routellm_reference(weak, strong, score))


def test_a_perfect_two_tier_router_in_routellm_terms_by_hand():
    # 10 requests: the weak tier solves 6, the strong one the same 6 plus 2 more. Scores put those 2 first.
    weak = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], dtype=float)
    strong = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=float)
    score = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.95, 0.9, 0.6, 0.7])
    metrics = routellm_metrics(weak, strong, score)
    # The 11 decile edges send 10, 9, ..., 1 requests strong, then none (the last edge uses >): the points are
    # (0, 0.6), (0.1, 0.7), then 0.8 from x = 0.2 on. AUC 0.065 + 0.075 + 0.8 x 0.8 = 0.78 against 0.6 (weak)
    # and 0.8 (strong): APGR 0.9. Quality 0.7 (50% of the gap) at x = 0.1, 0.76 (80%) at x = 0.16.
    assert metrics == pytest.approx({"routellm_apgr": 0.9, "routellm_cpt50": 0.1, "routellm_cpt80": 0.16})


def test_report_carries_the_headline_metrics_and_intervals():
    report = build_report(["small", "medium", "large"], THREE_SUCCESS, THREE_COST, THREE_PROBS, threshold=0.85)
    doc = report.to_json()
    assert doc["cost_at_top_quality"] == pytest.approx(0.375) == doc["cost_ratio_at_100"]
    for key in ("apgr", "gain_over_static", "cost_at_top_quality", "cost_ratio_at_95"):
        lo, hi = doc[f"{key}_ci"]
        assert lo is None or hi is None or lo <= hi
    assert doc["bootstrap"] == {"resamples": 500, "seed": 0, "level": 0.95}
    static = doc["baselines"]["static_mix"]
    assert static["tiers"] == ["small", "medium", "large"]
    assert static["gain_over_static"] == pytest.approx(0.0, abs=1e-12) and static["cost_ratio_at_100"] == 1.0
    assert doc["baselines"]["random"]["gain_over_static"] < 0  # the two-end mix skips the middle tier
    two = build_report(["weak", "strong"], TWO_SUCCESS, TWO_COST, TWO_SUCCESS, threshold=0.5).to_json()
    assert two["routellm_apgr"] is not None and two["routellm_cpt50"] is not None


def test_gap_profile_pairs_the_router_with_each_baseline_at_every_cost():
    tiers, perfect_knn = ["small", "medium", "large"], THREE_SUCCESS
    report = build_report(tiers, THREE_SUCCESS, THREE_COST, THREE_PROBS, 0.85, knn_probs=perfect_knn)
    static = gap_profile(report, "static_mix")
    assert static.gap.mean() == pytest.approx(report.router.metrics["gain_over_static"])
    assert static.cost_ratio[0] == pytest.approx(0.1) and static.cost_ratio[-1] == pytest.approx(1.0)
    assert (static.lo <= static.gap).all() and (static.gap <= static.hi).all()
    # Outcomes as probabilities send the hopeless request 3 to the top tier (cost 6 for quality 0.75); the router
    # keeps it cheap and reaches 0.75 at cost 3.75: between the two it is 0.5 above, and nowhere below.
    knn = gap_profile(report, "knn")
    between = (knn.cost_ratio >= 0.375) & (knn.cost_ratio < 0.6)
    assert knn.gap[between] == pytest.approx(0.5) and knn.gap.min() == 0.0 and knn.provably_below == 0
    with pytest.raises(ValueError, match="no 'knn' baseline"):
        gap_profile(build_report(tiers, THREE_SUCCESS, THREE_COST, THREE_PROBS, 0.85), "knn")


def test_float_noise_is_not_evidence():
    # a router equal to the static mix at the cheapest cost differs from it by ~1e-16 there, both ways
    assert not Interval(-3e-16, -1e-16).lies_below(0.0) and not Interval(1e-16, 2e-16).lies_above(0.0)
    assert Interval(-0.02, -0.001).lies_below(0.0) and Interval(0.001, 0.02).lies_above(0.0)
