"""Each tier's time model at train time: fitted from logged latencies, else estimated from the ladder's figures."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from tierwise.classifier.bundle import content_version, read_manifest
from tierwise.classifier.limits import FieldError
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierLadder
from tierwise.training.data.sample_logs import generate_attempts
from tierwise.training.fit.time_fit import MIN_TIMED_ATTEMPTS, fit_tier_times

from tests.helpers import label_files, write_rows

LADDER = TierLadder.load()


@pytest.fixture(scope="module")
def attempts() -> pl.DataFrame:
    return generate_attempts(600, seed=11)


def test_sample_logs_take_longer_on_slower_tiers_and_harder_prompts(attempts):
    assert (attempts["ttft_ms"] < attempts["latency_ms"]).all()
    by_tier = attempts.group_by("model").agg(pl.col("latency_ms").median()).rows_by_key("model")
    haiku, sonnet, opus = (by_tier[t.model][0] for t in LADDER.tiers)
    assert haiku < sonnet < opus
    for tier in LADDER.tiers:
        mine = attempts.filter(pl.col("model") == tier.model)
        easy = mine.filter(pl.col("category") == "chitchat")["latency_ms"].median()
        hard = mine.filter(pl.col("category") == "analysis")["latency_ms"].median()
        assert hard > 3 * easy


def test_logged_latencies_give_each_tier_its_quantiles_first_token_and_rate(attempts):
    fit = fit_tier_times(attempts, LADDER)
    assert fit.untimed_tiers == [] and fit.times is not None
    for tier, time in zip(LADDER.tiers, fit.times, strict=True):
        logged = attempts.filter(pl.col("model") == tier.model)["latency_ms"].to_numpy()
        assert time.source == f"logs: {logged.size} attempts"
        assert time.quantile(0.5) == pytest.approx(np.quantile(logged, 0.5))
        assert time.quantile(0.9) == pytest.approx(np.quantile(logged, 0.9))
        # the generator: the ladder's first token (jittered, plus 100-300 ms overhead) and rate (jittered)
        assert tier.first_token_ms < time.first_token_ms < tier.first_token_ms * 1.3 + 300
        assert time.output_tokens_per_s == pytest.approx(tier.output_tokens_per_s, rel=0.1)


def test_without_first_token_times_a_line_through_latency_and_output_tokens_gives_both():
    tokens = np.arange(1, MIN_TIMED_ATTEMPTS + 11) * 20.0
    rows = pl.DataFrame(
        {"request_id": [f"r{i}" for i in range(tokens.size)], "model": LADDER.tiers[0].model, "output_tokens": tokens}
    ).with_columns(latency_ms=500.0 + 10.0 * pl.col("output_tokens"))
    time = fit_tier_times(rows, LADDER).times[0]
    assert time.first_token_ms == pytest.approx(500.0)
    assert time.output_tokens_per_s == pytest.approx(100.0)


def test_without_timings_the_ladder_estimate_is_applied_to_the_logged_output_lengths(attempts):
    untimed = attempts.drop("latency_ms", "ttft_ms")
    fit = fit_tier_times(untimed, LADDER)
    haiku = LADDER.tiers[0]
    tokens = untimed.filter(pl.col("model") == haiku.model)["output_tokens"].to_numpy()
    time = fit.times[0]
    assert time.source.startswith(haiku.time_source) and f"output lengths of {tokens.size} attempts" in time.source
    expected = haiku.first_token_ms + 1000 * np.quantile(tokens, 0.5) / haiku.output_tokens_per_s
    assert time.quantile(0.5) == pytest.approx(expected)
    assert (time.first_token_ms, time.output_tokens_per_s) == (haiku.first_token_ms, haiku.output_tokens_per_s)


def test_too_few_timings_fall_back_to_the_estimate(attempts):
    few = attempts.with_columns(
        pl.when(pl.int_range(pl.len()) < MIN_TIMED_ATTEMPTS - 1).then(pl.col("latency_ms")).alias("latency_ms")
    )
    assert all(t.source.startswith("estimate:") for t in fit_tier_times(few, LADDER).times)


def test_a_tier_with_neither_timings_nor_figures_leaves_the_bundle_without_a_time_model(attempts, tmp_path):
    ladder = tmp_path / "tiers.toml"
    figures = "first_token_ms = 500\noutput_tokens_per_s = 100\n"
    ladder.write_text(
        "".join(
            f'[[tier]]\nname = "{t.name}"\nmodels = ["{t.model}"]\ninput_usd_per_mtok = {t.input_usd_per_mtok}\n'
            f"output_usd_per_mtok = {t.output_usd_per_mtok}\n{figures if t.name == 'haiku' else ''}"
            for t in LADDER.tiers
        )
    )
    fit = fit_tier_times(attempts.drop("latency_ms"), TierLadder.load(ladder))
    assert fit.times is None and fit.untimed_tiers == ["sonnet", "opus"]


def test_labels_carry_each_tier_mean_logged_latency(tmp_path):
    rows = [
        {"request_id": "r", "prompt": "q", "model": LADDER.tiers[0].model, "success": False, "latency_ms": 1000.0},
        {"request_id": "r", "prompt": "q", "model": LADDER.tiers[0].model, "success": True, "latency_ms": 3000.0},
        {"request_id": "r", "prompt": "q", "model": LADDER.tiers[2].model, "success": True},
    ]
    _, labels = label_files([write_rows(rows, tmp_path / "a.jsonl")])
    row = labels.frame.row(0, named=True)
    assert (row["latency_haiku"], row["latency_sonnet"], row["latency_opus"]) == (2000.0, None, None)


def test_the_time_model_travels_in_the_manifest_and_is_part_of_the_version(trained_bundle):
    manifest = read_manifest(trained_bundle)
    assert [t["source"].startswith("logs: ") for t in manifest.tier_times] == [True, True, True]
    router = Router.load(trained_bundle)
    assert router.policy.times is not None
    assert router.predict("Say hi.").expected_latency_ms > 0
    slower = [{**t, "latency_ms_quantiles": [q * 2 for q in t["latency_ms_quantiles"]]} for t in manifest.tier_times]
    changed = content_version(type(manifest)(**{**manifest.__dict__, "tier_times": slower}), manifest.files)
    assert changed != content_version(manifest, manifest.files)


def test_a_bundle_without_a_time_model_routes_as_before_and_refuses_a_budget(untimed_bundle):
    router = Router.load(untimed_bundle)
    assert router.manifest.tier_times is None and router.policy.times is None
    prediction = router.predict("Prove that there are infinitely many primes.")
    assert prediction.expected_latency_ms is None and prediction.latency_budget_met
    with pytest.raises(FieldError, match="no time model"):
        router.predict("Say hi.", RouteOptions(max_latency_ms=2000))
