"""The audit's numbers, as `report.json` holds them: per workload and in total, the spend as logged and what each
lever would save (`docs/evaluation.md`, "tierwise audit", documents every key).

Each workload's levers are measured on its own requests. The total applies each workload's levers to its requests
(its right-size tier, its router, ...) and sums; levers overlap (right-sizing and escalation waste remove some of
the same attempts), so their savings do not add up to one another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from tierwise.classifier.workloads import Workloads
from tierwise.training.audit.batch import YES, batch
from tierwise.training.audit.cache import cache
from tierwise.training.audit.data import AuditData, Workload
from tierwise.training.audit.right_size import right_size
from tierwise.training.audit.route import route
from tierwise.training.audit.saving import LeverOutcome, summarise
from tierwise.training.audit.spend import spend_summary
from tierwise.training.audit.waste import escalation_waste
from tierwise.training.evaluation.bootstrap import LEVEL, RESAMPLES

FORMAT = "tierwise-audit/1"
LEVERS = ("right_size", "route", "batch", "cache", "escalation_waste")
Levers = dict[str, LeverOutcome]


@dataclass(frozen=True)
class Band:
    """A workload's latency band and where it was found: the workloads file, the logs, or nowhere (None)."""

    band: str | None
    source: str | None

    @classmethod
    def of(cls, workload: Workload, workloads: Workloads | None) -> Band:
        """The workloads file's band for it (its entry, else the default entry), else the logged one."""
        policy = workloads.policy_for(workload.name) if workloads is not None else None
        if policy is not None and policy.band:
            return cls(policy.band, "workloads file")
        logged = workload.logged_band()
        return cls(logged, "logs") if logged else cls(None, None)


def workload_levers(workload: Workload, vectors: np.ndarray, target: float, band: Band) -> Levers:
    """Every lever measured on one workload's requests (`vectors`: their prompt embeddings)."""
    sized = right_size(workload, target)
    return {
        "right_size": sized,
        "route": route(workload, vectors, target, sized.cost),
        "batch": batch(workload, band.band, band.source),
        "cache": cache(workload),
        "escalation_waste": escalation_waste(workload, sized.details.get("tier")),
    }


def workload_entry(workload: Workload, levers: Levers) -> dict[str, Any]:
    """One workload's report.json entry."""
    return {**spend_summary(workload), "levers": summarise(workload.logged_cost, workload.logged_success, levers)}


def _in_total(workload: Workload, lever: LeverOutcome) -> tuple[np.ndarray, np.ndarray, bool]:
    """A lever's cost and success per request where the total counts it, else the requests as logged."""
    if lever.cost is None or lever.success is None or not lever.in_total:
        return workload.logged_cost, workload.logged_success, False
    return lever.cost, lever.success, True


def total_entry(data: AuditData, measured: Mapping[str, Levers]) -> dict[str, Any]:
    """The total: every request, each under its own workload's levers."""
    workloads = data.workloads
    frames = pl.concat([w.frame for w in workloads])
    everything = Workload("total", frames, pl.concat([w.attempts for w in workloads]), data.ladder)
    levers: Levers = {}
    for name in LEVERS:
        outcomes = [(w, measured[w.name][name]) for w in workloads]
        counted = [_in_total(w, lever) for w, lever in outcomes]
        keys = sorted({key for _, lever in outcomes for key in lever.sums})
        sums = {
            key: np.concatenate(
                [lever.sums[key] if key in lever.sums and used else np.zeros(w.requests)
                 for (w, lever), (_, _, used) in zip(outcomes, counted, strict=True)]
            )
            for key in keys
        }  # fmt: skip
        levers[name] = LeverOutcome(
            np.concatenate([cost for cost, _, _ in counted]),
            np.concatenate([success for _, success, _ in counted]),
            _total_details(name, outcomes),
            sums,
        )
    return workload_entry(everything, levers)


def _total_details(name: str, outcomes: list[tuple[Workload, LeverOutcome]]) -> dict[str, Any]:
    """What the total's lever is made of, per workload."""
    if name == "right_size":
        return {"tier": None, "tiers": {w.name: o.details.get("tier") for w, o in outcomes}}
    if name == "route":
        return {"workloads_measured": [w.name for w, o in outcomes if o.cost is not None]}
    if name == "batch":
        return {
            "workloads": [w.name for w, o in outcomes if o.details["applies"] == YES],
            "if_async_usd": sum(o.details["if_async_usd"] for _, o in outcomes),
        }
    if name == "cache":
        keys = ("cached_attempts", "reads", "writes", "cached_tokens")
        return {key: sum(o.details[key] for _, o in outcomes) for key in keys}
    return {"failed_attempts": sum(o.details.get("failed_attempts", 0) for _, o in outcomes)}


def build_report(
    data: AuditData,
    measured: Mapping[str, Levers],
    target: float,
    workloads: Workloads | None,
    bands: Mapping[str, Band],
) -> dict[str, Any]:
    """report.json: the format, what was read, the settings, every workload's entry and the total."""
    labels = data.labels
    return {
        "format": FORMAT,
        "logs": {
            "files": [str(path) for path in data.files],
            "requests": labels.frame.height,
            "attempts": labels.attempts,
            "unknown_model_attempts": sum(labels.unknown_models.values()),
            "workload_column": data.column if data.has_workloads else None,
        },
        "tiers": data.ladder.names,
        "quality_target": target,
        "interval": {"level": LEVEL, "resamples": RESAMPLES},
        "workloads_file": workloads.source if workloads is not None else None,
        "workloads": {
            w.name: {"band": bands[w.name].band, "band_source": bands[w.name].source}
            | workload_entry(w, measured[w.name])
            for w in data.workloads
        },
        "total": total_entry(data, measured),
    }
