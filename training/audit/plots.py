"""The audit's charts, as PNG bytes for report.html to embed: where the spend goes, and what each lever saves."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from tierwise.training.audit.report import LEVERS
from tierwise.training.audit.table import LEVER_TITLES

MOST_WORKLOADS = 20  # a chart names the largest workloads; the table lists them all


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def spend_chart(report: dict[str, Any]) -> bytes:
    """Logged spend per workload (largest first), split by tier."""
    names = list(report["workloads"])[:MOST_WORKLOADS]
    tiers = report["tiers"]
    fig = Figure(figsize=(8, 0.45 * len(names) + 1.4), dpi=110)
    ax = fig.add_subplot()
    rows = np.arange(len(names))[::-1]
    left = np.zeros(len(names))
    for index, tier in enumerate(tiers):
        spent = np.array([report["workloads"][n]["tiers"][tier]["spend_usd"] for n in names])
        ax.barh(rows, spent, left=left, color=f"C{index}", label=tier)
        left += spent
    ax.set_yticks(rows, names)
    ax.set_xlabel("spend as logged, USD")
    ax.set_title("Where the spend goes, by workload and tier")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def savings_chart(report: dict[str, Any]) -> bytes:
    """Each lever's saving as a share of each workload's spend, with its 95% interval."""
    names = [*list(report["workloads"])[:MOST_WORKLOADS], "total"]
    entries = {**report["workloads"], "total": report["total"]}
    fig = Figure(figsize=(8, 0.75 * len(names) + 1.6), dpi=110)
    ax = fig.add_subplot()
    height = 0.8 / len(LEVERS)
    rows = np.arange(len(names))[::-1]
    for index, lever in enumerate(LEVERS):
        found = [entries[n]["levers"][lever] for n in names]
        shares = np.array([f["saving_share"] if f["saving_share"] is not None else np.nan for f in found])
        low = np.array([f["saving_share_ci"][0] if f["saving_share_ci"][0] is not None else np.nan for f in found])
        high = np.array([f["saving_share_ci"][1] if f["saving_share_ci"][1] is not None else np.nan for f in found])
        errors = np.nan_to_num(np.vstack([shares - low, high - shares]).clip(min=0))
        where = rows + (len(LEVERS) / 2 - index - 0.5) * height
        ax.barh(where, np.nan_to_num(shares), height, xerr=errors, color=f"C{index}", label=LEVER_TITLES[lever])
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_yticks(rows, names)
    ax.set_xlabel("saving, share of the workload's logged spend (95% interval)")
    ax.set_title("What each lever would save")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)
