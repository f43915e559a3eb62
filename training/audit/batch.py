"""Batch: the workload's spend at Message Batches API prices (each tier's `batch_multiplier`, Anthropic's 50%).

It applies to workloads whose band is `async` (nobody waits; a batch answers within 24 hours). The band comes from
`--workloads`, else from the band most of the workload's requests were logged in (collected traffic's
`latency_band`); without either the saving is shown as what it would be if the workload were async, and is left
out of the total. An interactive or tolerant workload saves nothing here (`if_async_usd` still says how much).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from tierwise.training.audit.data import Workload
from tierwise.training.audit.saving import LeverOutcome

YES, IF_ASYNC, NO = "yes", "if async", "no"


def batch(workload: Workload, band: str | None, band_source: str | None) -> LeverOutcome:
    """Every attempt at its tier's Batch price, where the band allows it."""
    multipliers = [tier.batch_multiplier for tier in workload.ladder.tiers]
    multiplier = pl.col("tier").replace_strict(list(range(len(multipliers))), multipliers, return_dtype=pl.Float64)
    batched = workload.per_request(pl.col("cost") * multiplier)
    applies = YES if band == "async" else IF_ASYNC if band is None else NO
    logged = workload.logged_cost
    saving = float(np.sum(logged - batched))
    details = {"band": band, "band_source": band_source, "applies": applies, "if_async_usd": saving}
    return LeverOutcome(logged if applies == NO else batched, workload.logged_success, details, in_total=applies == YES)
