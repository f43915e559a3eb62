"""Prompt caching in the cost rule: cache reads and writes at the tier's multipliers of the input price."""

from __future__ import annotations

import polars as pl
import pytest
from tierwise.classifier.tiers import TierError, TierLadder

from tests.helpers import label_files, write_rows

HAIKU, SONNET = "claude-haiku-4-5", "claude-sonnet-4-5"


def attempt(request_id: str, model: str, **tokens) -> dict:
    return {"request_id": request_id, "prompt": f"q {request_id}", "model": model, "success": True, **tokens}


def costs(labels, request_id: str) -> dict:
    return labels.frame.filter(pl.col("request_id") == request_id).row(0, named=True)


def test_cached_prompt_tokens_cost_the_published_multipliers_of_the_input_price(tmp_path):
    rows = [
        attempt(
            "cached",
            HAIKU,
            input_tokens=1000,
            output_tokens=100,
            cache_read_input_tokens=10_000,
            cache_creation_input_tokens=2000,
        ),
        attempt("plain", HAIKU, input_tokens=1000, output_tokens=100, cache_read_input_tokens=None),
    ]
    _, labels = label_files([write_rows(rows, tmp_path / "a.jsonl")])
    # haiku: $1 in, $5 out per Mtok; reads 0.1x, 5-minute writes 1.25x of the input price
    assert costs(labels, "cached")["cost_haiku"] == pytest.approx((1000 + 10_000 * 0.1 + 2000 * 1.25 + 500) / 1e6)
    assert costs(labels, "plain")["cost_haiku"] == pytest.approx((1000 + 500) / 1e6)


def test_a_ladder_file_sets_its_own_cache_multipliers(tmp_path):
    ladder = tmp_path / "tiers.toml"
    ladder.write_text(
        '[[tier]]\nname = "small"\nmodels = ["claude-haiku-4-5"]\ninput_usd_per_mtok = 2.0\noutput_usd_per_mtok = 4.0\n'
        "cache_read_multiplier = 0.5\ncache_write_multiplier = 2.0\n"
    )
    rows = [
        attempt(
            "r", HAIKU, input_tokens=100, output_tokens=10, cache_read_input_tokens=400, cache_creation_input_tokens=50
        )
    ]
    _, labels = label_files([write_rows(rows, tmp_path / "a.csv")], tiers=ladder)
    assert costs(labels, "r")["cost_small"] == pytest.approx(((100 + 400 * 0.5 + 50 * 2.0) * 2.0 + 10 * 4.0) / 1e6)


def test_a_logged_cost_still_wins_over_tokens(tmp_path):
    rows = [attempt("r", SONNET, cost_usd=0.25, input_tokens=1000, output_tokens=10, cache_read_input_tokens=9000)]
    _, labels = label_files([write_rows(rows, tmp_path / "a.parquet")])
    assert costs(labels, "r")["cost_sonnet"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("cache_read_multiplier = -0.1", "'cache_read_multiplier' must be a number > 0"),
        ('batch_multiplier = "half"', "'batch_multiplier' must be a number > 0"),
        ("first_token_ms = 500", "give both 'first_token_ms' and 'output_tokens_per_s'"),
        ("output_tokens_per_s = 0", "'output_tokens_per_s' must be a number > 0"),
    ],
)
def test_bad_per_tier_figures_are_refused_naming_the_tier_and_key(tmp_path, extra, problem):
    ladder = tmp_path / "tiers.toml"
    ladder.write_text(
        f'[[tier]]\nname = "small"\nmodels = ["m"]\ninput_usd_per_mtok = 1\noutput_usd_per_mtok = 2\n{extra}\n'
    )
    with pytest.raises(TierError, match="tier #1 \\(small\\)") as error:
        TierLadder.load(ladder)
    assert problem in str(error.value)


def test_the_shipped_ladder_carries_named_speed_estimates_and_anthropic_multipliers():
    for tier in TierLadder.load().tiers:
        assert tier.has_speed and tier.time_source.startswith("estimate:")
        assert (tier.cache_read_multiplier, tier.cache_write_multiplier, tier.batch_multiplier) == (0.1, 1.25, 0.5)
    haiku, sonnet, opus = TierLadder.load().tiers
    assert haiku.output_tokens_per_s > sonnet.output_tokens_per_s > opus.output_tokens_per_s
    assert haiku.first_token_ms < sonnet.first_token_ms < opus.first_token_ms
