"""Where a workload's spend goes, as logged: by what it paid for and by tier, with each tier's success and latency.

`spend` splits the logged cost into input, output, cache read and cache write (tokens at the ladder's prices, else
characters / 4: `tierwise.training.data.costs.cost_parts`); `unattributed` is what those do not explain (a logged
`cost_usd` without tokens, or one that differs from list prices). Per tier: its attempts, spend and share of it,
its success rate on the requests it was tried on, what always using it would cost per request (every request
priced by the cost rule), and the p50 and p95 of its logged latencies. `complete_success` and `complete_cost_usd`
are the same on the `complete_requests`, those with every tier's outcome known: the rows `tierwise eval` scores,
so they are its always-one-tier points.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from tierwise.training.audit.data import Workload
from tierwise.training.data.costs import COST_PARTS
from tierwise.training.evaluation.curves import known_rows

LATENCY_QUANTILES = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95}


def spend_summary(workload: Workload) -> dict[str, Any]:
    """The workload's requests, spend (total and parts), logged success rate and per-tier table."""
    attempts = workload.attempts
    total = float(attempts["cost"].sum())
    parts = {f"{part}_usd": float(attempts[part].fill_null(0.0).sum()) for part in COST_PARTS}
    return {
        "requests": workload.requests,
        "attempts": attempts.height,
        "spend_usd": total,
        "spend": parts | {"unattributed_usd": total - sum(parts.values())},
        "quality": float(np.mean(workload.logged_success)) if workload.requests else None,
        "complete_requests": int(known_rows(workload.success, workload.cost).sum()),
        "tiers": _tiers(workload, total),
    }


def _tiers(workload: Workload, total: float) -> dict[str, dict[str, Any]]:
    success, cost = workload.success, workload.cost
    complete = known_rows(success, cost)
    tiers = {}
    for index, name in enumerate(workload.ladder.names):
        rows = workload.attempts.filter(pl.col("tier") == index)
        spent = float(rows["cost"].sum())
        known = np.isfinite(success[:, index])
        latency = rows["latency_ms"].drop_nulls()
        tiers[name] = {
            "attempts": rows.height,
            "spend_usd": spent,
            "spend_share": spent / total if total > 0 else None,
            "success": float(success[known, index].mean()) if known.any() else None,
            "success_requests": int(known.sum()),
            "always_cost_usd": float(cost[:, index].mean()) if workload.requests else None,
            "complete_success": float(success[complete, index].mean()) if complete.any() else None,
            "complete_cost_usd": float(cost[complete, index].mean()) if complete.any() else None,
            **{key: _quantile(latency, q) for key, q in LATENCY_QUANTILES.items()},
        }
    return tiers


def _quantile(values: pl.Series, q: float) -> float | None:
    return float(values.quantile(q, "linear")) if values.len() else None
