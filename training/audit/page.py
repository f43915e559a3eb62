"""report.html: the audit a team lead reads in five minutes. One self-contained page: the charts are embedded as
PNG data, the style is inline, and nothing is fetched or run (no scripts, no network)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from html import escape
from typing import Any

from tierwise.training.audit.plots import savings_chart, spend_chart
from tierwise.training.audit.report import LEVERS
from tierwise.training.audit.table import HEADER, LEVER_TITLES, headline_rows, share, usd

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1250px;
       color: #1d232a; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.6em; text-align: right; vertical-align: top; }
th { background: #f3f5f7; } td:first-child, th:first-child { text-align: left; }
tr.total td { font-weight: 600; background: #f8fafb; }
.note { color: #57606a; font-size: 0.9em; } img { max-width: 100%; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; } .charts img { flex: 1 1 520px; max-width: 600px; }
td.why { text-align: left; }
"""

LEVER_RULES = {
    "right_size": "every request on the cheapest single tier whose success rate, on the requests where it and the top "
    "tier were both tried, is at least the quality target x the top tier's.",
    "route": "a router trained and scored on the workload's own requests, cross-fitted (3 folds: no request is "
    "scored by a router that trained on it), each request on the tier it picks; compared with right-sizing.",
    "batch": "every attempt at Message Batches prices (50% of list), for workloads whose band is async (from "
    "--workloads, else the logged latency_band); without a band, shown as if the workload were async and left out "
    "of the total.",
    "cache": "input tokens of a prompt prefix the workload repeats (cut at a blank line, before the last block), at "
    "least the tier's minimum cacheable length, read at 0.1x the input price when the same tier saw it within the "
    "5-minute cache lifetime, else written at 1.25x; only where caching pays.",
    "escalation_waste": "attempts below the right-size tier on requests where every such attempt failed: starting at "
    "that tier, they are not made and nothing else changes.",
}
SOURCES = (
    '<a href="https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching">Anthropic, Prompt caching</a> '
    "(minimum cacheable lengths: 4096 tokens for Claude Haiku 4.5 and Opus 4.5/4.6, 1024 for Sonnet 4.5/4.6; "
    "5-minute lifetime, refreshed on every read); "
    '<a href="https://docs.anthropic.com/en/docs/about-claude/pricing">Anthropic, Pricing</a> (cache reads 0.1x and '
    "5-minute cache writes 1.25x the input price; Message Batches 50%). Each tier's multipliers and minimum come "
    "from the tier ladder."
)


def _image(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(
    header: list[str] | tuple[str, ...], rows: list[list[str]], total_last: bool = False, note_last: bool = False
) -> str:
    """A table; `total_last`: the last row is a total; `note_last`: the last column is words, not numbers."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        kind = ' class="total"' if total_last and i == len(rows) - 1 else ""
        cells = [f"<td>{escape(cell)}</td>" for cell in row]
        if note_last:
            cells[-1] = f'<td class="why">{escape(row[-1])}</td>'
        body.append(f"<tr{kind}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(values: list[float | None], form: Callable[[float | None], str] = usd) -> str:
    low, high = values
    return f"[{form(low)}, {form(high)}]"


def _lever_note(name: str, lever: dict[str, Any]) -> str:
    """What a lever's number rests on, in a few words."""
    if lever["saving_usd"] is None and lever.get("reason"):
        return f"not measured: {lever['reason']}"
    if name == "right_size":
        untested = f"; untested: {', '.join(lever['untested_tiers'])}" if lever.get("untested_tiers") else ""
        return f"tier {lever['tier']}{untested}" if lever.get("tier") else "per workload"
    if name == "route" and "tier_shares" in lever:
        shares = ", ".join(f"{t} {share(s)}" for t, s in lever["tier_shares"].items())
        versus = f"; vs right-size {usd(lever['vs_right_size_usd'])} USD {_ci(lever['vs_right_size_ci'])}"
        return shares + (versus if "vs_right_size_usd" in lever else "")
    if name == "batch" and "applies" in lever:
        return f"band {lever['band'] or 'unknown'} ({lever['band_source'] or 'not given'}): {lever['applies']}"
    if name == "cache":
        return f"{lever['reads']:,} reads, {lever['writes']:,} writes, {lever['cached_tokens']:,.0f} tokens"
    if name == "escalation_waste" and "failed_attempts" in lever:
        return f"{lever['failed_attempts']:,} failed attempts"
    return ""


def _levers_table(entry: dict[str, Any]) -> str:
    rows = []
    for name in LEVERS:
        lever = entry["levers"][name]
        rows.append(
            [
                LEVER_TITLES[name],
                usd(lever["saving_usd"]),
                _ci(lever["saving_ci"]),
                share(lever["saving_share"]),
                _ci(lever["saving_share_ci"], share),
                _number(lever["quality_change"], 3),
                _lever_note(name, lever),
            ]
        )
    header = ["lever", "saving USD", "95% interval", "share", "95% interval", "quality change", "what it rests on"]
    return _table(header, rows, note_last=True)


def _tiers_table(entry: dict[str, Any]) -> str:
    rows = [
        [
            tier,
            f"{row['attempts']:,}",
            usd(row["spend_usd"]),
            share(row["spend_share"]),
            _number(row["success"]),
            f"{row['success_requests']:,}",
            usd(row["always_cost_usd"]),
            _number(row["latency_p50_ms"], 0),
            _number(row["latency_p95_ms"], 0),
        ]
        for tier, row in entry["tiers"].items()
    ]
    header = [
        "tier",
        "attempts",
        "spend USD",
        "share",
        "success",
        "tried on",
        "always: USD/request",
        "p50 ms",
        "p95 ms",
    ]
    return _table(header, rows)


def _section(name: str, entry: dict[str, Any]) -> str:
    spend = entry["spend"]
    parts = ", ".join(f"{part.removesuffix('_usd').replace('_', ' ')} {usd(v)}" for part, v in spend.items())
    band = f"band: {entry['band']} (from the {entry['band_source']})" if entry.get("band") else "band: not known"
    return (
        f"<h3>{escape(name)}</h3>"
        f"<p>{entry['requests']:,} requests, {entry['attempts']:,} attempts; spend {usd(entry['spend_usd'])} USD "
        f"({escape(parts)}); success as logged {_number(entry['quality'])}; {escape(band)}.</p>"
        f"{_tiers_table(entry)}{_levers_table(entry)}"
    )


def render_page(report: dict[str, Any]) -> str:
    """The whole page, from report.json's contents."""
    logs = report["logs"]
    files = ", ".join(escape(f) for f in logs["files"])
    rules = "".join(f"<li><b>{LEVER_TITLES[k]}</b>: {escape(v)}</li>" for k, v in LEVER_RULES.items())
    sections = "".join(_section(name, entry) for name, entry in report["workloads"].items())
    workload_note = (
        "" if logs["workload_column"] else "<p class='note'>The logs carry no workload column: one group.</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tierwise audit</title><style>{STYLE}</style></head>
<body>
<h1>Where the spend goes, and what each lever would save</h1>
<p class="note">{logs["requests"]:,} requests ({logs["attempts"]:,} attempts) from {files}; tiers
{escape(" < ".join(report["tiers"]))}; quality target {report["quality_target"]:g} of the top tier's success
rate; 95% intervals over {report["interval"]["resamples"]} bootstrap resamples of the requests.</p>
{workload_note}
<h2>Headline</h2>
<p class="note">Each lever's saving as a share of the workload's logged spend [95% interval]; q: its change in
success rate where it is not zero. Levers overlap: their savings do not add up.</p>
{_table(list(HEADER), headline_rows(report), total_last=True)}
<div class="charts">{_image(spend_chart(report), "spend by workload and tier")}
{_image(savings_chart(report), "saving by lever and workload")}</div>
<h2>Per workload</h2>
{sections}
<h3>total</h3>{_levers_table(report["total"])}
<h2>How each number is made</h2>
<ul>{rules}</ul>
<p class="note">Sources: {SOURCES}</p>
<p class="note">Every number, and its definition: report.json, documented in docs/evaluation.md ("tierwise audit").</p>
</body></html>
"""
