"""What a lever saves on a set of requests, with its 95% interval and its effect on quality.

A lever says what each request would cost under it and whether it would succeed (NaN where that is unknown).
Its saving is the logged cost minus that, summed over the requests; `saving_share` divides by the logged spend;
`quality` is the lever's success rate on the requests where its outcome is known, and `quality_change` that minus
the logged success rate on the same requests. Intervals are percentile bootstrap intervals over the requests
(`tierwise.training.evaluation.bootstrap`: 500 resamples, seed 0), all of a set's numbers from the same
resamples; the lever's own choices (which tier, which router) are held fixed across resamples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tierwise.training.evaluation.bootstrap import percentile_interval, resampled_sums

SAVING_KEYS = (
    "saving_usd",
    "saving_share",
    "saving_ci",
    "saving_share_ci",
    "quality",
    "quality_change",
    "quality_change_ci",
)


@dataclass(frozen=True)
class LeverOutcome:
    """What a lever makes of each request: its cost (USD) and success (1, 0, NaN unknown); None where the lever
    cannot be measured (`details` says why). `sums` are further per-request amounts reported with their intervals
    (`<name>_usd`, `<name>_ci`), such as a router's saving over right-sizing. A lever shown only as what it would
    save (batching a workload of unknown band) is not `in_total`: the total counts its requests as logged."""

    cost: np.ndarray | None
    success: np.ndarray | None
    details: dict[str, Any] = field(default_factory=dict)
    sums: Mapping[str, np.ndarray] = field(default_factory=dict)
    in_total: bool = True

    @classmethod
    def unmeasured(cls, **details: Any) -> LeverOutcome:
        return cls(None, None, details)


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator > 0 else None


def _ratios(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def summarise(
    logged_cost: np.ndarray, logged_success: np.ndarray, levers: Mapping[str, LeverOutcome]
) -> dict[str, dict[str, Any]]:
    """Each lever's saving, share, quality change and intervals (`SAVING_KEYS`), then its details."""
    columns = [np.asarray(logged_cost, dtype=np.float64)]
    places: dict[str, int] = {}
    for name, lever in levers.items():
        if lever.cost is None or lever.success is None:
            continue
        known = np.isfinite(lever.success)
        places[name] = len(columns)
        columns += [
            logged_cost - lever.cost,
            np.where(known, lever.success - logged_success, 0.0),
            known.astype(np.float64),
            *lever.sums.values(),
        ]
    values = np.column_stack(columns)
    totals, resampled = values.sum(axis=0), resampled_sums(values)
    spend, spends = totals[0], resampled[:, 0]
    found = {}
    for name, lever in levers.items():
        if name not in places:
            found[name] = {key: [None, None] if key.endswith("_ci") else None for key in SAVING_KEYS} | lever.details
            continue
        at = places[name]
        saving, dq, known = totals[at : at + 3]
        sums = {
            key: {f"{key}_usd": float(totals[at + 3 + i]), f"{key}_ci": percentile_interval(resampled[:, at + 3 + i])}
            for i, key in enumerate(lever.sums)
        }
        found[name] = {
            "saving_usd": float(saving),
            "saving_share": _ratio(saving, spend),
            "saving_ci": percentile_interval(resampled[:, at]).to_json(),
            "saving_share_ci": percentile_interval(_ratios(resampled[:, at], spends)).to_json(),
            "quality": float(np.nanmean(lever.success)) if known else None,
            "quality_change": _ratio(dq, known),
            "quality_change_ci": percentile_interval(_ratios(resampled[:, at + 1], resampled[:, at + 2])).to_json(),
            **{k: v.to_json() if k.endswith("_ci") else v for pair in sums.values() for k, v in pair.items()},
            **lever.details,
        }
    return found
