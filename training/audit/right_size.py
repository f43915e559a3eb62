"""Right-size: the cheapest single tier that meets the quality target on a workload, from its requests where that
tier and the top tier were both tried.

A tier meets the target Q when its success rate on those requests is at least Q x the top tier's on the same
requests (the share of always-top quality `tierwise train --quality-target` keeps). A cheaper tier tried on fewer
than MIN_COMPARED of them is untested: the recommendation skips it, and the report prices a replay of a sample of
the workload on it through the Batch API (`tierwise replay`), which would tell.
"""

from __future__ import annotations

import numpy as np
from tierwise.training.audit.data import Workload
from tierwise.training.audit.saving import LeverOutcome

MIN_COMPARED = 30
REPLAY_SAMPLE = 200


def right_size(workload: Workload, target: float) -> LeverOutcome:
    """Every request on the recommended tier; `details` name it and what the choice rests on."""
    success, cost, ladder = workload.success, workload.cost, workload.ladder
    top = len(ladder) - 1
    top_known = np.isfinite(success[:, top])
    if not top_known.any():
        return LeverOutcome.unmeasured(tier=None, reason=f"the top tier ({ladder.top.name}) was never tried here")
    rates: dict[str, dict[str, float | int | None]] = {}
    untested: list[int] = []
    chosen = top
    for index, tier in enumerate(ladder.tiers[:-1]):
        both = np.isfinite(success[:, index]) & top_known
        rate = float(success[both, index].mean()) if both.any() else None
        top_rate = float(success[both, top].mean()) if both.any() else None
        rates[tier.name] = {"success": rate, "top_success": top_rate, "compared_requests": int(both.sum())}
        if both.sum() < MIN_COMPARED:
            untested.append(index)
        elif rate is not None and top_rate is not None and rate >= target * top_rate:
            chosen = index
            break
    top_rate = float(success[top_known, top].mean())
    rates[ladder.top.name] = {"success": top_rate, "compared_requests": int(top_known.sum())}
    untested = [index for index in untested if index < chosen]
    return LeverOutcome(
        cost[:, chosen],
        success[:, chosen],
        {
            "tier": ladder.tiers[chosen].name,
            "target": target,
            "tiers": rates,
            "untested_tiers": [ladder.tiers[index].name for index in untested],
            "replay": _replay(workload, untested) if untested else None,
        },
    )


def _replay(workload: Workload, untested: list[int]) -> dict[str, object]:
    """What replaying a sample of the workload on its untested tiers would cost at Batch API prices."""
    sample = min(REPLAY_SAMPLE, workload.requests)
    tiers = [workload.ladder.tiers[index] for index in untested]
    price = sum(
        sample * float(np.mean(workload.cost[:, index])) * workload.ladder.tiers[index].batch_multiplier
        for index in untested
    )
    return {
        "tiers": [t.name for t in tiers],
        "requests": sample,
        "cost_usd": price,
        "command": f"tierwise replay LOGS --out REPLAYED.parquet --max-requests {sample}",
    }
