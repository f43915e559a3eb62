"""From a labelled-requests frame (`training.labels`) to the arrays the evaluation works on."""

from __future__ import annotations

import numpy as np
import polars as pl


def select_split(frame: pl.DataFrame, split: str | None, column: str = "split") -> pl.DataFrame:
    """The requests of one split (all of them when `split` is None), refusing an absent column or empty split."""
    if split is None:
        return frame
    if column not in frame.columns:
        raise ValueError(f"the logs have no {column!r} column, so split {split!r} cannot be selected")
    chosen = frame.filter(pl.col(column) == split)
    if chosen.height == 0:
        found = sorted(str(v) for v in frame[column].unique().drop_nulls().to_list())
        raise ValueError(f"no request has {column} = {split!r} (found: {', '.join(found) or 'none'})")
    return chosen


def outcome_arrays(frame: pl.DataFrame, tiers: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, T) success (1/0, NaN where the tier was never tried) and cost in USD, cheapest tier first."""
    missing = [c for name in tiers for c in (f"success_{name}", f"cost_{name}") if c not in frame.columns]
    if missing:
        raise ValueError(f"labelled requests lack columns {missing}: were they labelled with the same tier ladder?")
    success = frame.select(pl.col(f"success_{name}").cast(pl.Float64) for name in tiers).to_numpy()
    cost = frame.select(pl.col(f"cost_{name}").cast(pl.Float64) for name in tiers).to_numpy()
    return np.asarray(success, dtype=np.float64), np.asarray(cost, dtype=np.float64)


def prompt_chars(frame: pl.DataFrame) -> np.ndarray:
    """Length of each prompt in characters, for the prompt-length baseline."""
    return frame["prompt"].str.len_chars().fill_null(0).to_numpy()
