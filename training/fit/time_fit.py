"""Fitting each tier's time model at train time: from the logged latencies where there are enough, else from the
ladder's published speed figures applied to the logged output lengths.

A tier with at least MIN_TIMED_ATTEMPTS logged `latency_ms` is fitted from them: its latency quantiles are the
logged ones; its first-token time is the median `ttft_ms` where logged, and its output rate the median of
output tokens over the time after the first token. Without `ttft_ms`, both come from a least-squares line of
latency on output tokens (intercept = first token, slope = 1 / rate) when the logs carry output tokens.
A tier with too few timings gets the ladder's estimate instead (`Tier.first_token_ms`, `output_tokens_per_s`):
first token plus each of its attempts' output tokens (or `output_chars` / 4) at the rate, or
DEFAULT_OUTPUT_TOKENS when the logs hold no output lengths. A tier with neither has no time model, and then
the bundle has none: a budget cannot be judged on some tiers only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from tierwise.classifier.tiers import Tier, TierLadder
from tierwise.classifier.timing import TierTime
from tierwise.training.data.costs import CHARS_PER_TOKEN, DEFAULT_OUTPUT_TOKENS
from tierwise.training.data.labels import with_tiers

MIN_TIMED_ATTEMPTS = 20
# The attempt columns a time model is fitted from (with `model`), so callers read no more of large logs.
TIMED_COLUMNS = ("latency_ms", "ttft_ms", "output_tokens", "output_chars")


@dataclass(frozen=True)
class TimeFit:
    """The fitted time model of every tier (None when some tier has neither timings nor ladder figures), and
    the tiers that lack both, for the training report."""

    times: list[TierTime] | None
    untimed_tiers: list[str]

    def to_manifest(self) -> list[dict] | None:
        return None if self.times is None else [t.to_json() for t in self.times]


def fit_tier_times(attempts: pl.DataFrame, ladder: TierLadder) -> TimeFit:
    """Each tier's time model from an attempt log's rows (see the module docstring for the rule)."""
    frame = with_tiers(attempts, ladder).filter(pl.col("tier").is_not_null())
    fitted: list[TierTime | None] = []
    for index, tier in enumerate(ladder.tiers):
        rows = frame.filter(pl.col("tier") == index)
        fitted.append(_from_logs(rows) or _from_ladder(tier, rows))
    untimed = [tier.name for tier, time in zip(ladder.tiers, fitted, strict=True) if time is None]
    times = None if untimed else [time for time in fitted if time is not None]
    return TimeFit(times, untimed)


def _column(rows: pl.DataFrame, name: str) -> np.ndarray:
    """A measure column as floats (NaN where not logged; all NaN when the logs lack the column)."""
    if name not in rows.columns:
        return np.full(rows.height, np.nan)
    return rows[name].cast(pl.Float64).fill_null(np.nan).to_numpy()


def _output_tokens(rows: pl.DataFrame) -> np.ndarray:
    """Each attempt's output tokens: logged, else `output_chars` / CHARS_PER_TOKEN (NaN when neither)."""
    tokens = _column(rows, "output_tokens")
    return np.where(np.isnan(tokens), _column(rows, "output_chars") / CHARS_PER_TOKEN, tokens)


def _from_logs(rows: pl.DataFrame) -> TierTime | None:
    latency = _column(rows, "latency_ms")
    timed = ~np.isnan(latency)
    if timed.sum() < MIN_TIMED_ATTEMPTS:
        return None
    ttft, tokens = _column(rows, "ttft_ms")[timed], _output_tokens(rows)[timed]
    latency = latency[timed]
    first_token, rate = _speed(latency, ttft, tokens)
    return TierTime.from_latencies(latency, first_token, rate, f"logs: {int(timed.sum())} attempts")


def _speed(latency: np.ndarray, ttft: np.ndarray, tokens: np.ndarray) -> tuple[float | None, float | None]:
    """First-token time (ms) and output rate (tokens/s) of logged attempts; None where the logs cannot tell."""
    known_ttft = ~np.isnan(ttft)
    if known_ttft.sum() >= MIN_TIMED_ATTEMPTS:
        first_token = float(np.median(ttft[known_ttft]))
        streaming = known_ttft & ~np.isnan(tokens) & (tokens > 0) & (latency > ttft)
        if streaming.sum() < MIN_TIMED_ATTEMPTS:
            return first_token, None
        return first_token, float(np.median(1000.0 * tokens[streaming] / (latency - ttft)[streaming]))
    known = ~np.isnan(tokens)
    if known.sum() < MIN_TIMED_ATTEMPTS or np.ptp(tokens[known]) == 0:
        return None, None
    slope, intercept = np.polyfit(tokens[known], latency[known], 1)
    if slope <= 0:
        return None, None
    return max(float(intercept), 0.0), 1000.0 / float(slope)


def _from_ladder(tier: Tier, rows: pl.DataFrame) -> TierTime | None:
    if tier.first_token_ms is None or tier.output_tokens_per_s is None:
        return None
    tokens = _output_tokens(rows)
    tokens = tokens[~np.isnan(tokens)]
    lengths = f"output lengths of {tokens.size} attempts"
    if tokens.size == 0:
        tokens, lengths = np.array([float(DEFAULT_OUTPUT_TOKENS)]), f"{DEFAULT_OUTPUT_TOKENS} output tokens assumed"
    figures = f"{tier.first_token_ms:g} ms first token, {tier.output_tokens_per_s:g} tokens/s"
    source = tier.time_source or f"estimate: {figures}"
    return TierTime.estimate(tier.first_token_ms, tier.output_tokens_per_s, tokens, f"{source}; {lengths}")
