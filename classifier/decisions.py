"""Routing decisions as table columns: what batch scoring writes and the MLflow pyfunc model returns.

One row per prompt: `tier`, `model`, `fallback_chain` (tiers joined with ">") and `p_<tier>` for every tier
of the ladder, so a decision scored on this machine and one scored by the pyfunc on Spark compare column by
column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .router import Prediction

CHAIN_SEPARATOR = ">"


def decision_schema(tiers: Sequence[str]) -> list[tuple[str, str]]:
    """The decision columns and their kinds ("string" or "double"), in order, for a ladder's tier names."""
    return [("tier", "string"), ("model", "string"), ("fallback_chain", "string")] + [
        (f"p_{tier}", "double") for tier in tiers
    ]


def decision_columns(predictions: Sequence[Prediction], tiers: Sequence[str]) -> dict[str, list[Any]]:
    """The decision columns of `decision_schema(tiers)`, filled from predictions (one value per prediction)."""
    return {
        "tier": [p.tier for p in predictions],
        "model": [p.model for p in predictions],
        "fallback_chain": [CHAIN_SEPARATOR.join(p.fallback_chain) for p in predictions],
        **{f"p_{tier}": [p.probabilities[tier] for p in predictions] for tier in tiers},
    }
