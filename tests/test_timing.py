"""Tier time models: what they hold, what they refuse, and the tabulated chance of finishing inside a budget."""

from __future__ import annotations

import numpy as np
import pytest
from tierwise.classifier.timing import QUANTILE_LEVELS, TierTime, TimeModel, TimingError


def constant(ms: float) -> TierTime:
    return TierTime.from_latencies([ms], None, None, f"constant {ms}")


def test_quantiles_come_from_the_latencies_and_are_clamped_at_the_ends():
    time = TierTime.from_latencies(np.linspace(1000, 2000, 1001), 400.0, 80.0, "logs: 1001 attempts")
    assert len(time.latency_ms_quantiles) == len(QUANTILE_LEVELS)
    assert time.quantile(0.5) == pytest.approx(1500)
    assert time.quantile(0.9) == pytest.approx(1900)
    assert time.quantile(0.0) == time.quantile(0.01) == pytest.approx(1010)
    assert TierTime.from_json(time.to_json()) == time


def test_an_estimate_is_first_token_plus_output_tokens_at_the_rate():
    time = TierTime.estimate(700.0, 100.0, [100, 200, 300], "estimate: published figures")
    assert time.quantile(0.5) == pytest.approx(700 + 2000)
    assert 700 + 1000 <= time.quantile(0.01) < time.quantile(0.5) < time.quantile(0.99) <= 700 + 3000
    assert (time.first_token_ms, time.output_tokens_per_s) == (700.0, 100.0)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"latency_ms_quantiles": [1.0] * 3}, "3 latency quantiles"),
        ({"latency_ms_quantiles": [2.0] + [1.0] * (len(QUANTILE_LEVELS) - 1)}, "must not decrease"),
        ({"latency_ms_quantiles": [float("nan")] * len(QUANTILE_LEVELS)}, "finite"),
        ({"first_token_ms": -5.0}, "finite numbers >= 0"),
        ({"output_tokens_per_s": 0.0}, "must be > 0"),
        ({"first_token_ms": True}, "finite numbers >= 0"),
    ],
)
def test_malformed_time_models_are_refused_with_the_reason(change, problem):
    record = {**constant(1000).to_json(), **change}
    with pytest.raises(TimingError, match=problem):
        TierTime.from_json(record)


def test_a_record_missing_a_figure_names_where_it_was_read():
    record = constant(1000).to_json()
    del record["latency_ms_quantiles"]
    with pytest.raises(TimingError, match="tier_times\\[2\\]"):
        TierTime.from_json(record, "manifest.json: tier_times[2]")


def test_the_chance_to_finish_counts_every_attempt_of_the_set():
    spread = TierTime.from_latencies(np.linspace(1000, 2000, 10_001), None, None, "uniform")
    model = TimeModel([spread, spread, constant(5000)])
    assert model.within(0b001, 1500) == pytest.approx(0.5, abs=0.01)
    # the sum of two independent uniform [1000, 2000] latencies: P(sum <= 3000) = 1/2, P(sum <= 2500) = 1/8
    assert model.within(0b011, 3000) == pytest.approx(0.5, abs=0.02)
    assert model.within(0b011, 2500) == pytest.approx(0.125, abs=0.02)
    assert model.within(0b100, 4999) == 0.0 and model.within(0b100, 5000) == 1.0
    assert model.within(0b111, 6999) == 0.0 and model.within(0b111, 9000) == 1.0


def test_expected_chain_time_weighs_each_tier_by_the_chance_of_reaching_it():
    model = TimeModel([constant(1000), constant(3000), constant(6000)])
    assert model.mean_ms == pytest.approx((1000, 3000, 6000))
    # haiku always tried; sonnet when haiku fails (1 - 0.6); opus when both fail (1 - 0.9)
    assert model.expected_chain_time([0.6, 0.9, 0.99], (0, 1, 2)) == pytest.approx(1000 + 0.4 * 3000 + 0.1 * 6000)
    assert model.expected_chain_time([0.6, 0.9, 0.99], (2,)) == pytest.approx(6000)
