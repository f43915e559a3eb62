"""A quality target that holds: the certified threshold keeps its promise on new requests at the stated confidence,
where the unguarded floor does not, and training records the guarantee in the manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import binomtest
from tierwise.classifier.policy import rule_scores
from tierwise.training.evaluation.curves import choose_tiers
from tierwise.training.fit.guarantee import THRESHOLD_GRID, QualityTarget, _lower, _upper, certify
from tierwise.training.fit.policy_choice import choose_policy

from tierwise.cli import main

COSTS = np.array([1.0, 4.0, 10.0])


def population(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Requests of varying difficulty on three nested tiers, with calibrated but noisy router probabilities."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(n)
    truth = np.clip(np.column_stack([1.1 - 1.2 * difficulty, 1.25 - difficulty, 1.4 - 0.8 * difficulty]), 0, 1)
    draws = rng.random(n)[:, None]
    success = (draws < truth).astype(float)  # nested: a request a cheap tier solves, a dearer one solves too
    probs = np.clip(truth + rng.normal(0, 0.08, truth.shape), 0.001, 0.999)
    return success, np.tile(COSTS, (n, 1)), probs


def share_at(threshold: float | None, success: np.ndarray, scores: np.ndarray) -> float:
    """Quality at a threshold as a share of always-top quality (None: everything to the top tier)."""
    if threshold is None:
        return 1.0
    chosen = choose_tiers(scores, threshold)
    return float(success[np.arange(len(chosen)), chosen].mean() / success[:, -1].mean())


def test_clopper_pearson_bounds_are_the_exact_binomial_ones():
    for k, n in [(0, 50), (3, 50), (25, 50), (50, 50), (120, 400)]:
        exact = binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")
        assert _lower(np.array(k), n, 0.05) == pytest.approx(exact.low)
        assert _upper(np.array(k), n, 0.05) == pytest.approx(exact.high)


def test_the_certified_threshold_keeps_the_target_on_new_requests_and_the_unguarded_one_does_not():
    success, cost, probs = population(200_000)
    scores = rule_scores(probs, "absolute")
    target = QualityTarget(share=0.92, confidence=0.9)
    rng = np.random.default_rng(1)
    guarded, unguarded, certified = [], [], 0
    for _ in range(100):
        rows = rng.choice(len(success), 600, replace=False)
        found = certify(success[rows], cost[rows], scores[rows], target)
        guarded.append(share_at(found.threshold, success, scores) >= target.share)
        certified += found.threshold is not None
        floor = choose_policy(success[rows], cost[rows], probs[rows], ("absolute",), COSTS, quality_floor=target.share)
        unguarded.append(share_at(floor.spec.threshold, success, scores) >= target.share)
    assert np.mean(guarded) >= target.confidence
    assert certified >= 90  # the bound is not vacuous: most draws certify a threshold below always-top
    assert np.mean(unguarded) < 0.8  # the unguarded floor misses on new requests often


def test_fixed_sequence_testing_stops_at_the_first_threshold_that_fails():
    # Two tiers at costs 1 and 10; the top tier solves A and B, the cheap one A and D. Scores (P of the cheap
    # tier): A 0.95, B 0.9, D 0.3. Below 0.95 A goes cheap for free; below 0.9 B goes cheap and is lost (share
    # 0.67); below 0.3 D goes cheap too and the share would be 1.33 again, but the sequence stopped at 0.9.
    groups = {"A": (400, [1, 1], 0.95), "B": (200, [0, 1], 0.9), "D": (400, [1, 0], 0.3)}
    success = np.vstack([np.tile(s, (n, 1)) for n, s, _ in groups.values()]).astype(float)
    scores = np.vstack([np.tile([p, 1.0], (n, 1)) for n, _, p in groups.values()])
    found = certify(success, np.tile([1.0, 10.0], (len(success), 1)), scores, QualityTarget(0.9, 0.95))
    assert found.threshold == pytest.approx(0.95)
    assert found.quality_bound > 0.9 and found.calibration_requests == 1000


def test_too_few_calibration_rows_certify_nothing_and_send_everything_to_the_top():
    success, cost, probs = population(30, seed=2)
    found = certify(success, cost, probs, QualityTarget(0.95))
    assert found.threshold is None and found.quality_bound == 1.0
    spec = choose_policy(success, cost, probs, ("absolute", "relative"), COSTS, target=QualityTarget(0.95)).spec
    assert (spec.rule, spec.threshold) == ("absolute", 1.0)
    assert spec.guarantee["certified"] is False and "every request to the top tier" in spec.chosen_by


def test_the_rule_choice_is_paid_for_in_the_level_of_each_test():
    success, cost, probs = population(2000, seed=3)
    one = certify(success, cost, probs, QualityTarget(0.9), families=1)
    two = certify(success, cost, probs, QualityTarget(0.9), families=2)
    assert two.level == one.level / 2
    assert THRESHOLD_GRID.tolist().index(two.threshold) <= THRESHOLD_GRID.tolist().index(one.threshold)


def test_train_with_a_quality_target_records_the_guarantee(sample_logs, tmp_path):
    out = tmp_path / "b"
    # one rule, so the whole confidence goes to its test (auto spreads it over every rule, see above)
    args = ["train", str(sample_logs), "--out", str(out), "--quality-target", "0.9", "--threshold-rule", "relative"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    guarantee = manifest["policy"]["guarantee"]
    assert guarantee["quality_target"] == 0.9 and guarantee["confidence"] == 0.95
    assert 0 < guarantee["calibration_requests"] <= manifest["data"]["requests"]["validation"]
    assert guarantee["certified"] is True and guarantee["quality_lower_bound"] >= 0.9
    assert "Learn then Test" in guarantee["method"]
    assert "certified to keep 90% of always-top quality with probability 95%" in result.output
    assert "quality target 0.9: kept on the held-out rows" in result.output
    both = CliRunner().invoke(
        main, ["train", str(sample_logs), "--out", str(out), "--quality-target", "0.9", "--quality-floor", "0.9"]
    )
    assert both.exit_code == 2 and "not both" in both.output
