"""Escalation waste: spend on failed attempts that a better first tier would have avoided.

The better first tier is the workload's right-size tier. A request whose every attempt below it failed got its
answer (or none) from that tier or above: starting there, those attempts are not made and nothing else changes.
Requests with a success below it are left as they are (starting higher would cost them more: right-sizing's
business, not waste).
"""

from __future__ import annotations

import polars as pl
from tierwise.training.audit.data import Workload
from tierwise.training.audit.saving import LeverOutcome


def escalation_waste(workload: Workload, first_tier: str | None) -> LeverOutcome:
    """What each request spent on attempts below `first_tier` that all failed, removed."""
    if first_tier is None:
        return LeverOutcome.unmeasured(first_tier=None, reason="no right-size tier to start from")
    below = workload.attempts.filter(pl.col("tier") < workload.ladder.index(first_tier))
    failed = below.filter(~pl.col("success").any().over("request_id"))
    waste = workload.per_request(pl.col("cost"), failed)
    affected = failed["request_id"].n_unique()
    details = {"first_tier": first_tier, "failed_attempts": failed.height, "affected_requests": affected}
    return LeverOutcome(workload.logged_cost - waste, workload.logged_success, details)
