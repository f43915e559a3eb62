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
# Prompt-cache parts of a cost: the attempt's token column, and the multiplier of the tier's input price they cost.
CACHE_COLUMNS: dict[str, tuple[str, Callable[[Tier], float]]] = {
    "cache_read": ("cache_read_input_tokens", lambda tier: tier.cache_read_multiplier),
    "cache_write": ("cache_creation_input_tokens", lambda tier: tier.cache_write_multiplier),
}


def _per_tier(ladder: TierLadder, figure: Callable[[Tier], float]) -> pl.Expr:
    """An expression giving each row's value of a per-tier figure, by its `tier` index column (a when/then chain:
    polars streams it, where `replace_strict` would hold every row in memory)."""
    value = pl.lit(None, dtype=pl.Float64)
    for index, tier in reversed(list(enumerate(ladder.tiers))):
        value = pl.when(pl.col("tier") == index).then(pl.lit(figure(tier), dtype=pl.Float64)).otherwise(value)
    return value


# What an attempt paid for, as `cost_parts` splits its cost by rules 2 and 3.
COST_PARTS = ("input", "output", "cache_read", "cache_write")


def cost_parts(columns: Collection[str], ladder: TierLadder) -> dict[str, pl.Expr]:
    """Each attempt's cost by rule 2 (tokens), else rule 3 (characters), split into `COST_PARTS` in USD: null where
    neither applies, cache parts 0 where the rule is characters. For rows with these columns and a `tier` column."""
    in_price = _per_tier(ladder, lambda t: t.input_usd_per_mtok) / 1e6
    out_price = _per_tier(ladder, lambda t: t.output_usd_per_mtok) / 1e6
    nothing = pl.lit(None, dtype=pl.Float64)
    parts = dict.fromkeys(COST_PARTS, nothing)
    if "output_chars" in columns:
        by_chars = pl.col("output_chars").is_not_null()
        parts = {
            "input": pl.when(by_chars).then(pl.col("prompt").str.len_chars() / CHARS_PER_TOKEN * in_price),
            "output": pl.col("output_chars") / CHARS_PER_TOKEN * out_price,
            "cache_read": pl.when(by_chars).then(0.0),
            "cache_write": pl.when(by_chars).then(0.0),
        }
    if "input_tokens" in columns and "output_tokens" in columns:
        by_tokens = pl.col("input_tokens").is_not_null() & pl.col("output_tokens").is_not_null()
        cached = {
            part: pl.col(column).fill_null(0.0) * _per_tier(ladder, multiplier) * in_price if column in columns else 0.0
            for part, (column, multiplier) in CACHE_COLUMNS.items()
        }
        tokens = {"input": pl.col("input_tokens") * in_price, "output": pl.col("output_tokens") * out_price, **cached}
        parts = {part: pl.when(by_tokens).then(tokens[part]).otherwise(parts[part]) for part in COST_PARTS}
    return parts


def attempt_cost(columns: Collection[str], ladder: TierLadder) -> pl.Expr:
    """Cost of each attempt row by rules 1-3 (null where none applies), for rows with these columns and a `tier`
    index column."""
    parts = cost_parts(columns, ladder)
    cost = parts["input"] + parts["output"] + parts["cache_read"] + parts["cache_write"]
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
