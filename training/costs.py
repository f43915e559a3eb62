"""The cost rule: what an attempt, or an untried tier on a request, costs in USD.

Per (request, tier), in order of preference (see docs/architecture.md):
1. the mean logged `cost_usd` of that tier's attempts on the request;
2. input and output tokens at the tier's list prices, plus prompt-cache reads and writes
   (`cache_read_input_tokens`, `cache_creation_input_tokens`, where logged) at the input price times the
   tier's cache read and write multipliers (default: Anthropic's 0.1x and 1.25x);
3. characters at about 4 a token: the prompt for input, `output_chars` for output;
4. the tier's mean cost per request over the requests costed by 1-3 in the same logs;
5. the prompt's characters / 4 at the input price plus DEFAULT_OUTPUT_TOKENS at the output price.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import polars as pl
from tierwise.classifier.tiers import Tier, TierLadder

CHARS_PER_TOKEN = 4.0
DEFAULT_OUTPUT_TOKENS = 256
# Prompt-cache token columns of an attempt, and the multiplier of the tier's input price they cost.
CACHE_COLUMNS: dict[str, Callable[[Tier], float]] = {
    "cache_read_input_tokens": lambda tier: tier.cache_read_multiplier,
    "cache_creation_input_tokens": lambda tier: tier.cache_write_multiplier,
}


def _per_tier(ladder: TierLadder, figure: Callable[[Tier], float]) -> pl.Expr:
    """An expression giving each row's value of a per-tier figure, by its `tier` index column (a when/then chain:
    polars streams it, where `replace_strict` would hold every row in memory)."""
    value = pl.lit(None, dtype=pl.Float64)
    for index, tier in reversed(list(enumerate(ladder.tiers))):
        value = pl.when(pl.col("tier") == index).then(pl.lit(figure(tier), dtype=pl.Float64)).otherwise(value)
    return value


def attempt_cost(columns: Collection[str], ladder: TierLadder) -> pl.Expr:
    """Cost of each attempt row by rules 1-3 (null where none applies), for rows with these columns and a `tier`
    index column."""
    in_price = _per_tier(ladder, lambda t: t.input_usd_per_mtok)
    out_price = _per_tier(ladder, lambda t: t.output_usd_per_mtok)
    cost = pl.lit(None, dtype=pl.Float64)
    if "output_chars" in columns:
        chars_in = pl.col("prompt").str.len_chars() / CHARS_PER_TOKEN
        chars_out = pl.col("output_chars") / CHARS_PER_TOKEN
        cost = (chars_in * in_price + chars_out * out_price) / 1e6
    if "input_tokens" in columns and "output_tokens" in columns:
        prompt = pl.col("input_tokens")
        for column, multiplier in CACHE_COLUMNS.items():
            if column in columns:
                prompt = prompt + pl.col(column).fill_null(0.0) * _per_tier(ladder, multiplier)
        tokens = (prompt * in_price + pl.col("output_tokens") * out_price) / 1e6
        cost = pl.coalesce(tokens, cost)
    if "cost_usd" in columns:
        cost = pl.coalesce(pl.col("cost_usd"), cost)
    return cost


def fill_missing_costs(per_request: pl.DataFrame, ladder: TierLadder) -> pl.DataFrame:
    """Fill `cost_<tier>` where rules 1-3 gave nothing, by rule 4 and then rule 5."""
    prompt_tokens = pl.col("prompt").str.len_chars() / CHARS_PER_TOKEN
    filled = []
    for tier in ladder.tiers:
        column = f"cost_{tier.name}"
        mean = per_request[column].mean()
        fallback = (
            pl.lit(mean, dtype=pl.Float64)
            if mean is not None
            else (prompt_tokens * tier.input_usd_per_mtok + DEFAULT_OUTPUT_TOKENS * tier.output_usd_per_mtok) / 1e6
        )
        filled.append(pl.col(column).fill_null(fallback))
    return per_request.with_columns(filled)
