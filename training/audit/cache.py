"""Prompt caching: the input tokens of prompt prefixes a workload repeats, priced at the prompt cache's rates.

The rule (Anthropic's prompt caching, https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching, and its
prices, https://docs.anthropic.com/en/docs/about-claude/pricing):
- A request's cacheable prefix is the longest start of its prompt that another request of the workload shares, cut
  back to the end of a block boundary (a blank line: what separates the messages of a rendered chat), so the last
  block (the question that changes) is never part of it. Requests sharing a prefix form a group.
- An attempt caches its prefix when the prefix reaches its tier's minimum cacheable length
  (`Tier.min_cacheable_tokens`: 4096 tokens for Claude Haiku 4.5 and Opus 4.5/4.6, 1024 for Sonnet 4.5/4.6) and
  its prompt did not use the cache already. Prefix tokens are the attempt's logged prompt tokens (input plus cached)
  times the prefix's share of the prompt's characters, else the prefix's characters / 4.
- Each tier (model) has its own cache. In time order within a group and tier, an attempt within the cache lifetime
  (5 minutes, refreshed by every read: `CACHE_LIFETIME_S`) of the one before reads the prefix at the cache read
  multiplier of the input price (0.1x), any other writes it at the write multiplier (1.25x). Without timestamps
  every attempt after a group's first counts as a read: an upper bound, flagged `timed: false`.
- A group is cached on a tier only where that saves money over its attempts there.
The saving of an attempt is its prefix tokens x input price x (1 - multiplier); answers do not change.
"""

from __future__ import annotations

from itertools import pairwise

import polars as pl
from tierwise.classifier.tiers import CACHE_LIFETIME_S
from tierwise.training.audit.data import ALREADY_CACHED, PROMPT_TOKENS, Workload
from tierwise.training.audit.saving import LeverOutcome
from tierwise.training.data.costs import CHARS_PER_TOKEN

BOUNDARY = "\n\n"
GROUP = "_prefix"


def _shared_length(a: str, b: str) -> int:
    """Characters two texts share at their start (binary search over slices: C-speed comparisons)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def prefix_lengths(prompts: list[str]) -> list[int]:
    """Each prompt's cacheable prefix in characters (see the module doc), 0 where it has none.

    In sorted order the longest start a prompt shares with any other is the one it shares with a neighbour."""
    shared = [0] * len(prompts)
    for a, b in pairwise(sorted(range(len(prompts)), key=prompts.__getitem__)):
        length = _shared_length(prompts[a], prompts[b])
        shared[a], shared[b] = max(shared[a], length), max(shared[b], length)
    ends = [prompt.rfind(BOUNDARY, 0, length) for prompt, length in zip(prompts, shared, strict=True)]
    return [end + len(BOUNDARY) if end >= 0 else 0 for end in ends]


def _groups(workload: Workload) -> pl.DataFrame:
    """request_id, its prefix group (null: none shared) and the prefix's characters and share of the prompt."""
    prompts = workload.frame["prompt"].fill_null("").to_list()
    lengths = prefix_lengths(prompts)
    ids: dict[str, int] = {}
    groups = [ids.setdefault(p[:n], len(ids)) if n else None for p, n in zip(prompts, lengths, strict=True)]
    return pl.DataFrame(
        {
            "request_id": workload.frame["request_id"],
            GROUP: pl.Series(groups, dtype=pl.Int64),
            "_chars": pl.Series(lengths, dtype=pl.Float64),
            "_share": pl.Series([n / max(len(p), 1) for p, n in zip(prompts, lengths, strict=True)]),
        }
    )


def cache(workload: Workload) -> LeverOutcome:
    """Each request's attempts with their repeated prefix read from (or written to) the prompt cache."""
    tiers = workload.ladder.tiers
    index = list(range(len(tiers)))

    def per_tier(values: list[float]) -> pl.Expr:
        return pl.col("tier").replace_strict(index, values, return_dtype=pl.Float64)

    tokens = pl.coalesce(pl.col(PROMPT_TOKENS) * pl.col("_share"), pl.col("_chars") / CHARS_PER_TOKEN)
    attempts = (
        workload.attempts.join(_groups(workload), on="request_id", how="left")
        .filter(pl.col(GROUP).is_not_null() & ~pl.col(ALREADY_CACHED))
        .with_columns(tokens.alias("_tokens"))
        .filter(pl.col("_tokens") >= per_tier([float(t.min_cacheable_tokens) for t in tiers]))
    )
    timed = workload.attempts.height > 0 and workload.attempts["timestamp"].null_count() == 0
    order = [GROUP, "tier", "timestamp"] if timed else [GROUP, "tier"]
    attempts = attempts.sort(order, maintain_order=True)
    lane = [GROUP, "tier"]
    if timed:
        gap = pl.col("timestamp").diff().over(lane).dt.total_microseconds() / 1e6
        read = gap.is_not_null() & (gap <= CACHE_LIFETIME_S)
    else:
        read = pl.int_range(pl.len()).over(lane) > 0
    price = per_tier([t.input_usd_per_mtok / 1e6 for t in tiers])
    kept = per_tier([1 - t.cache_read_multiplier for t in tiers])
    lost = per_tier([1 - t.cache_write_multiplier for t in tiers])
    attempts = attempts.with_columns(read.alias("_read"))
    attempts = attempts.with_columns(
        (pl.col("_tokens") * price * pl.when(pl.col("_read")).then(kept).otherwise(lost)).alias("_saving")
    ).filter(pl.col("_saving").sum().over(lane) > 0)
    saving = workload.per_request(pl.col("_saving"), attempts)
    details = {
        "prefixes": attempts[GROUP].n_unique(),
        "cached_attempts": attempts.height,
        "reads": int(attempts["_read"].sum()),
        "writes": int((~attempts["_read"]).sum()),
        "cached_tokens": float(attempts["_tokens"].sum()),
        "timed": timed,
    }
    return LeverOutcome(workload.logged_cost - saving, workload.logged_success, details)
