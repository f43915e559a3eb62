"""The audit's headline: one row per workload and the total, each lever's saving with its interval and what it does
to quality. The terminal, report.html and docs/benchmarks.md show this same table."""

from __future__ import annotations

from typing import Any

from tierwise.training.audit.report import LEVERS

LEVER_TITLES = {
    "right_size": "right-size",
    "route": "route",
    "batch": "batch",
    "cache": "cache",
    "escalation_waste": "escalation waste",
}
HEADER = ("workload", "requests", "spend USD", *(LEVER_TITLES[lever] for lever in LEVERS))


def usd(value: float | None) -> str:
    """An amount in USD, to four significant figures (small workloads spend fractions of a cent)."""
    return "-" if value is None else f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def share(value: float | None) -> str:
    return "-" if value is None else f"{round(value * 100, 1) or 0.0:.1f}%"


def lever_cell(lever: dict[str, Any]) -> str:
    """`share [lo, hi] (quality ±x.xxx)`, the lever's tier or band where it has one; `-` where not measured."""
    if lever["saving_usd"] is None:
        return "-"
    if lever.get("applies") == "no":
        return f"no ({lever['band']})"
    low, high = lever["saving_share_ci"]
    text = f"{share(lever['saving_share'])} [{share(low)}, {share(high)}]"
    quality = lever["quality_change"]
    if quality is not None and round(quality, 3):
        text += f" q{quality:+.3f}"
    if lever.get("tier"):
        text = f"{lever['tier']}: {text}"
    if lever.get("applies") == "if async":
        text += " if async"
    return text


def headline_rows(report: dict[str, Any]) -> list[list[str]]:
    """The table's rows: every workload, largest spend first, then the total."""
    entries = [*report["workloads"].items(), ("total", report["total"])]
    return [
        [name, f"{entry['requests']:,}", usd(entry["spend_usd"]), *(lever_cell(entry["levers"][k]) for k in LEVERS)]
        for name, entry in entries
    ]


def render_text(report: dict[str, Any]) -> str:
    """The headline as aligned plain text."""
    rows = [list(HEADER), *headline_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def render_markdown(report: dict[str, Any]) -> str:
    """The headline as a markdown table (for docs)."""
    rows = [list(HEADER), ["---"] * len(HEADER), *headline_rows(report)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)
