"""From a labelled-requests frame (`tierwise.training.data.labels`) to the arrays the evaluation works on."""

from __future__ import annotations

import numpy as np
import polars as pl
from tierwise.classifier.tiers import TierError


def outcome_arrays(frame: pl.DataFrame, tiers: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, T) success (1/0, NaN where the tier was never tried) and cost in USD, cheapest tier first."""
    missing = [c for name in tiers for c in (f"success_{name}", f"cost_{name}") if c not in frame.columns]
    if missing:
        raise TierError(f"labelled requests lack columns {missing}: were they labelled with the same tier ladder?")
    success = frame.select(pl.col(f"success_{name}").cast(pl.Float64) for name in tiers).to_numpy()
    cost = frame.select(pl.col(f"cost_{name}").cast(pl.Float64) for name in tiers).to_numpy()
    return np.asarray(success, dtype=np.float64), np.asarray(cost, dtype=np.float64)


def prompt_chars(frame: pl.DataFrame) -> np.ndarray:
    """Length of each prompt in characters, for the prompt-length baseline."""
    return frame["prompt"].str.len_chars().fill_null(0).to_numpy()
