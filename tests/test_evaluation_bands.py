"""Evaluation per latency band: chains replayed on logged outcomes, costs and latencies."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.router import Router
from tierwise.training.evaluation.bands import evaluate_band, oracle_chains, simulate
from tierwise.training.evaluation.savings import static_mix_quality, static_mix_shares

from tierwise.cli import main

# three requests on three tiers: the first solved by haiku, the second only by opus, the third by nothing
SUCCESS = np.array([[1, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=float)
COST = np.array([[1.0, 4.0, 10.0]] * 3)
LATENCY = np.array([[1000.0, 3000.0, 6000.0]] * 3)


def test_a_failed_attempt_is_paid_in_cost_and_time_before_the_next_tier():
    sim = simulate([(0, 1, 2)] * 3, SUCCESS, COST, LATENCY)
    assert sim.cost.tolist() == [1.0, 15.0, 15.0]
    assert sim.time_ms.tolist() == [1000.0, 10_000.0, 10_000.0]
    assert sim.attempts.tolist() == [1, 3, 3]
    assert sim.acceptable.tolist() == [True, True, False]
    summary = sim.summary(budget_ms=5000)
    assert summary["quality"] == pytest.approx(2 / 3)
    assert summary["quality_within_budget"] == pytest.approx(1 / 3)
    assert summary["time_to_acceptable_ms"] == {"mean": 5500.0, "p50": 1000.0, "p95": 10_000.0}


def test_the_oracle_takes_the_cheapest_tier_that_answers_in_time():
    success = np.array([[1, 1, 1], [0, 0, 1]], dtype=float)
    latency = np.array([[9000.0, 2000.0, 6000.0], [1000.0, 1000.0, 9000.0]])
    assert oracle_chains(success, latency, None) == [(0,), (2,)]
    # haiku is too slow for 5 s on the first request; nothing answers the second in time: its cheapest success
    assert oracle_chains(success, latency, 5000) == [(1,), (2,)]
    assert oracle_chains(np.zeros((1, 3)), latency[:1], None) == [(2,)]


def test_the_static_mix_shares_are_those_behind_its_quality():
    cost, quality = np.array([1.0, 4.0, 10.0]), np.array([1 / 3, 1 / 3, 2 / 3])
    # at cost 5.5 the best mix is half haiku, half opus; sonnet adds cost and no quality
    assert static_mix_shares(cost, quality, 5.5) == pytest.approx([0.5, 0.0, 0.5])
    assert static_mix_shares(cost, quality, 10.0) == pytest.approx([0.0, 0.0, 1.0])
    assert static_mix_shares(cost, quality, 0.5) == pytest.approx([1.0, 0.0, 0.0])
    rng = np.random.default_rng(0)
    for _ in range(50):
        cost, quality = np.sort(rng.uniform(0, 10, 4)), rng.uniform(0, 1, 4)
        budget = rng.uniform(cost[0], cost[-1])
        shares = static_mix_shares(cost, quality, budget)
        assert shares.sum() == pytest.approx(1.0) and shares @ cost <= budget + 1e-9
        assert shares @ quality == pytest.approx(static_mix_quality(cost, quality, np.array([budget]))[0])


def test_async_pays_batch_prices_for_the_same_chains(trained_bundle):
    router = Router.load(trained_bundle)
    probs = np.array([[0.95, 0.97, 0.99], [0.1, 0.2, 0.9], [0.2, 0.3, 0.4]])
    interactive = evaluate_band(router, SUCCESS, COST, LATENCY, probs, RouteOptions(latency_band="interactive"))
    batch = evaluate_band(router, SUCCESS, COST, LATENCY, probs, RouteOptions(latency_band="async"))
    assert batch.router.cost == pytest.approx(interactive.router.cost / 2)
    assert batch.router.acceptable.tolist() == interactive.router.acceptable.tolist()
    assert batch.oracle.mean_cost() == pytest.approx(interactive.oracle.mean_cost() / 2)


def test_a_tight_budget_trades_eventual_quality_for_answers_in_time(trained_bundle):
    router = Router.load(trained_bundle)
    probs = np.array([[0.1, 0.2, 0.9]] * 3)
    budget = router.policy.times.tiers[-1].quantile(0.01) - 1  # the top tier cannot finish
    free = evaluate_band(router, SUCCESS, COST, LATENCY, probs, RouteOptions(latency_band="interactive"))
    bounded = evaluate_band(
        router, SUCCESS, COST, LATENCY, probs, RouteOptions(latency_band="interactive", max_latency_ms=budget)
    )
    assert free.router.cost.tolist() == [10.0] * 3 and free.router.quality(None) == pytest.approx(2 / 3)
    assert (bounded.router.cost < 10.0).all(), "no chain pays for the top tier, which cannot finish in time"
    assert bounded.router.quality(None) == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def band_eval(trained_bundle, sample_logs, tmp_path_factory):
    out = tmp_path_factory.mktemp("band-eval")
    budget = Router.load(trained_bundle).policy.times.tiers[1].quantile(0.5)
    argv = ["eval", "--model", str(trained_bundle), str(sample_logs), "--band", "interactive"]
    argv += ["--max-latency-ms", str(budget), "--json", str(out / "eval.json"), "--time-plot", str(out / "time.png")]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    return result.output, json.loads((out / "eval.json").read_text()), out / "time.png", budget


def test_eval_band_reports_every_strategy_under_its_documented_keys(band_eval, trained_bundle):
    output, document, plot, budget = band_eval
    band = document["band"]
    assert (band["band"], band["max_latency_ms"], band["value_of_time_usd_per_s"]) == ("interactive", budget, None)
    assert band["latency_from_logs"] == 1.0 and band["evaluated"] == document["evaluated"]
    strategies = [band["router"], *band["always"].values(), band["static_mix"], band["oracle"]]
    assert list(band["always"]) == Router.load(trained_bundle).ladder.names
    for record in strategies:
        assert set(record) >= {"cost_usd", "quality", "quality_within_budget", "attempts", "time_to_acceptable_ms"}
        assert set(record["time_to_acceptable_ms"]) == {"mean", "p50", "p95"}
        assert 0 <= record["quality_within_budget"] <= record["quality"] <= 1
    assert sum(band["static_mix"]["shares"].values()) == pytest.approx(1.0)
    assert band["oracle"]["quality_within_budget"] >= max(r["quality_within_budget"] for r in strategies)
    assert "band interactive, budget" in output and "static mix" in output
    assert plot.stat().st_size > 10_000


def test_band_options_need_a_band(trained_bundle, sample_logs):
    result = CliRunner().invoke(
        main, ["eval", "--model", str(trained_bundle), str(sample_logs), "--max-latency-ms", "2000"]
    )
    assert result.exit_code == 2 and "need --band" in result.output
