"""Baselines, the assembled report, its JSON keys and the chart, on hand-computed cases."""

import json
import re

import numpy as np
import pytest
from tierwise.training.evaluation.baselines import knn_bank, knn_probs, length_heuristic_probs
from tierwise.training.evaluation.plot import plot_report
from tierwise.training.evaluation.report import build_report
from tierwise.training.evaluation.table import render_table

TIERS = ["small", "medium", "large"]
SUCCESS = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=float)
COST = np.tile([1.0, 3.0, 10.0], (4, 1))
PROBS = np.array([[0.9, 0.95, 0.99], [0.4, 0.8, 0.9], [0.2, 0.3, 0.7], [0.6, 0.6, 0.6]])


def test_length_heuristic_escalates_longer_prompts_through_every_tier():
    probs = length_heuristic_probs(np.array([10, 40, 20, 30]), 3)
    difficulty = np.array([0.25, 1.0, 0.5, 0.75])
    np.testing.assert_allclose(probs, np.column_stack([1 - difficulty, 1 - difficulty / 2, np.ones(4)]))
    # equal lengths share their mean rank
    np.testing.assert_allclose(length_heuristic_probs(np.array([5, 5, 10]), 2)[:, 0], [0.5, 0.5, 0.0])


def test_knn_averages_known_outcomes_of_the_nearest_training_requests():
    train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    train_success = np.array([[1, 1], [1, np.nan], [0, 1], [0, 0]])
    queries = np.array([[2.0, 0.1], [0.05, 1.0]])  # length does not matter: cosine similarity
    np.testing.assert_allclose(knn_probs(train, train_success, queries, k=2), [[1.0, 1.0], [0.0, 0.5]])
    # the only neighbour never tried the top tier: fall back to its training success rate, 2 of 3
    np.testing.assert_allclose(knn_probs(train, train_success, np.array([[0.9, 0.1]]), k=1), [[1.0, 2 / 3]])


def test_knn_searches_every_training_request_up_to_its_bank_then_an_even_sample_of_them():
    np.testing.assert_array_equal(knn_bank(4, bank=4), [0, 1, 2, 3])
    sample = knn_bank(1_000_000, bank=1_000)
    assert len(np.unique(sample)) == 1_000 and sample[0] == 0 and sample[-1] == 999_999
    assert np.ptp(np.diff(sample)) <= 1  # spread evenly, first appearance to last: no stretch of the logs left out


@pytest.fixture(scope="module")
def report():
    success = np.vstack([SUCCESS, [[np.nan, 1, 1]]])  # a censored request: cheapest tier never tried
    cost = np.vstack([COST, [[1.0, 3.0, 10.0]]])
    probs = np.vstack([PROBS, [[0.1, 0.9, 0.9]]])
    knn = np.vstack([SUCCESS, [[0.5, 0.5, 0.5]]])  # a k-NN that happens to be perfect
    return build_report(TIERS, success, cost, probs, threshold=0.85, prompt_chars=np.arange(5), knn_probs=knn)


def test_report_json_carries_the_hand_computed_numbers(report):
    doc = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert (doc["requests"], doc["evaluated"], doc["excluded_incomplete"]) == (5, 4, 1)
    assert doc["tiers"] == TIERS
    assert doc["apgr"] == pytest.approx(36 / 50)
    assert doc["cpt50"] == pytest.approx(0.325)
    assert doc["cpt80"] == pytest.approx(0.375)
    assert doc["cost_ratio_at_95"] == pytest.approx(0.375)
    assert doc["aiq"] == pytest.approx((11 / 36) * 0.5 + (25 / 36) * 0.75)
    op = doc["operating_point"]
    assert op["threshold"] == 0.85
    assert op["cost_usd"] == pytest.approx((1 + 10 + 10 + 10) / 4)
    assert op["quality"] == pytest.approx(0.75) and op["quality_ratio"] == pytest.approx(1.0)
    assert op["tier_shares"] == {"small": 0.25, "medium": 0.0, "large": 0.75}
    assert (op["under_routing_rate"], op["over_routing_rate"], op["exact_tier_accuracy"]) == (0.0, 0.25, 0.75)
    assert doc["calibration"]["small"]["n"] == 4 and doc["calibration"]["medium"]["n"] == 5
    assert doc["calibration"]["small"]["ece"] == pytest.approx(1.3 / 4)


def test_report_json_baselines(report):
    baselines = report.to_json()["baselines"]
    assert baselines["random"]["apgr"] == pytest.approx(0.5, abs=1e-3)
    assert baselines["always"]["small"] == {"cost_usd": 1.0, "cost_ratio": 0.1, "quality": 0.25}
    assert baselines["always"]["large"] == {"cost_usd": 10.0, "cost_ratio": 1.0, "quality": 0.75}
    # oracle: requests go to tiers 0, 1, 2 and (unsolved) the top: cost (1 + 3 + 10 + 10) / 4
    assert baselines["oracle"]["cost_usd"] == pytest.approx(6.0) and baselines["oracle"]["quality"] == 0.75
    assert baselines["oracle"]["apgr"] == pytest.approx(22 / 50)  # budgets 1 + 9k/49 >= 6 from k = 28
    # the perfect k-NN's curve is always-cheapest plus the oracle point
    assert baselines["knn"]["apgr"] == pytest.approx(22 / 50)
    assert baselines["knn"]["cost_ratio_at_100"] == pytest.approx(0.6)
    assert set(baselines["length"]) == set(baselines["random"])


def test_report_json_curves_span_the_threshold_range(report):
    curves = report.to_json()["curves"]
    assert set(curves) == {"router", "length", "knn", "random", "static_mix", "oracle_frontier"}
    router = curves["router"]
    assert len(router["setting"]) == 101 and router["setting"][0] == 0.0 and router["setting"][-1] == 1.0
    assert router["cost_ratio"][0] == pytest.approx(0.1) and router["cost_ratio"][-1] == pytest.approx(1.0)
    assert curves["random"]["quality"] == [0.25, 0.75]
    # the static mix is drawn through its vertices: every tier lies on the hull here
    assert curves["static_mix"]["cost_ratio"] == pytest.approx([0.1, 0.3, 1.0])
    assert curves["static_mix"]["quality"] == pytest.approx([0.25, 0.5, 0.75])
    frontier = curves["oracle_frontier"]
    assert frontier["cost_ratio"][0] == pytest.approx(0.1) and frontier["quality"][-1] == pytest.approx(0.75)


def test_report_without_optional_baselines_writes_null():
    doc = build_report(TIERS, SUCCESS, COST, PROBS, threshold=0.5).to_json()
    assert doc["baselines"]["length"] is None and doc["baselines"]["knn"] is None
    assert set(doc["curves"]) == {"router", "random", "static_mix", "oracle_frontier"}
    assert doc["routellm_apgr"] is None  # three tiers: RouteLLM's metric is for two


def test_report_refuses_logs_where_no_request_is_known_on_every_tier():
    success = SUCCESS.copy()
    success[:, 1] = np.nan
    with pytest.raises(ValueError, match="none of the 4 requests"):
        build_report(TIERS, success, COST, PROBS, threshold=0.5)


def test_table_and_plot(report, tmp_path):
    lines = render_table(report).splitlines()
    assert lines[0].startswith("router against the best fixed mix of tiers (static mix: small, medium, large)")
    assert re.match(r"  gain over static mix +[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", lines[1])
    assert re.match(r"  APGR +0\.720 \[\d\.\d{3}, \d\.\d{3}\]", lines[4])
    rows = {line.split("  ")[0].strip(): line for line in lines[6:11]}
    assert list(rows) == ["router", "static mix", "random two-end mix", "prompt length", "k-NN"]
    assert "0.720" in rows["router"] and rows["static mix"].endswith("+0.000")
    table = "\n".join(lines)
    assert "excluded" not in table and "1 lack an outcome" in table
    path = tmp_path / "curve.png"
    plot_report(report, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
