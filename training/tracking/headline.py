"""A version's headline as a person reads it in MLflow: the numbers, their names, and the short table that heads
every run's and every version's description. It imports nothing heavy: `tierwise promote` (base install)
writes descriptions with it.

The two headline numbers are in units that read at the two decimals MLflow's charts show, and are recorded to
those two decimals, so every view shows the same number: the gain
over the static mix (the best fixed mix of tiers) in percentage points of success, and the cost at top quality
in percent of always-top. Their names start with a digit so they sort before every other metric, and each
interval end is named after its metric (`..._lo`, `..._hi`) so it sorts beside it.

"Never" (docs/mlflow.md): a cost the router never reaches top quality at is left out, as is an interval end that
some resamples never reach, and `2_cost_at_top_quality_reached` is 0 (1 when it is reached), so every MLflow view
shows the same 0 whatever it shows for a missing number. Text (descriptions, `tierwise compare`) says `never`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

GAIN = "1_gain_over_static_pp"
COST_AT_TOP = "2_cost_at_top_quality_pct"
REACHED = "2_cost_at_top_quality_reached"
LO, HI = "_lo", "_hi"
NEVER = "never"
# headline name -> the evaluation's own name (docs/evaluation.md) of the same number, as a fraction
SOURCES = {GAIN: "gain_over_static", COST_AT_TOP: "cost_at_top_quality"}
# The evaluation's names the headline replaces on a run (cost_ratio_at_100 is cost_at_top_quality again).
REPLACED = frozenset(
    {f"{source}{end}" for source in SOURCES.values() for end in ("", "_ci_lo", "_ci_hi")} | {"cost_ratio_at_100"}
)
LEGEND = (
    "gain: percentage points of success over the best fixed mix of tiers at the same cost; cost at top quality: "
    "the cost, in % of always-top, at which the router matches always-top's success rate; [95% interval]; "
    "never: not reached."
)


def headline_metrics(flat: Mapping[str, float] | None) -> dict[str, float]:
    """The headline numbers of an evaluation (`summary.flat_headline`; None: unevaluated, no headline) in
    readable units, to the two decimals every view shows, under their sorted names."""
    if flat is None:
        return {}
    metrics = {
        f"{name}{end}": round(100.0 * flat[f"{source}{suffix}"], 2)
        for name, source in SOURCES.items()
        for end, suffix in (("", ""), (LO, "_ci_lo"), (HI, "_ci_hi"))
        if f"{source}{suffix}" in flat
    }
    return metrics | {REACHED: float(SOURCES[COST_AT_TOP] in flat)}


def run_metrics(metrics: Mapping[str, float], flat: Mapping[str, float] | None) -> dict[str, float]:
    """Flat metrics as a run records them: the headline (from `flat`, as in `headline_metrics`) first, in place
    of the numbers it restates (a run page lists metrics in the order they were logged)."""
    return headline_metrics(flat) | {k: float(v) for k, v in metrics.items() if k not in REPLACED}


def headline_cell(metrics: Mapping[str, float], name: str, units: bool = True) -> str:
    """`+0.26 pp [+0.05, +0.47]` or `87.40% [80.10, never]`: a headline number with its interval, where one
    was computed (collected traffic has none); `-` when the run has no such number at all. Without `units`,
    the bare numbers, for a table whose row title gives the unit."""
    gain = name == GAIN
    never = NEVER if not gain and REACHED in metrics else "-"
    if name not in metrics and never == "-":
        return "-"

    def number(key: str) -> str:
        value = metrics.get(key)
        if value is None:
            return never
        return f"{value:+.2f}" if gain else f"{value:.2f}"

    unit = (" pp" if gain else "%") if units and name in metrics else ""
    has_interval = f"{GAIN}{LO}" in metrics or f"{GAIN}{HI}" in metrics
    interval = f" [{number(name + LO)}, {number(name + HI)}]" if has_interval else ""
    return number(name) + unit + interval


@dataclass(frozen=True)
class Facts:
    """What a headline table says of one version: its numbers and how it routes, from a run's params and
    metrics (or the same names built from a bundle and a re-evaluation)."""

    metrics: Mapping[str, float]
    params: Mapping[str, str]

    def rows(self) -> dict[str, str]:
        """Row title -> cell."""
        m, p = self.metrics, self.params
        quality, cost = m.get("quality"), m.get("cost_ratio")
        at_threshold = "-"
        if quality is not None and cost is not None:
            at_threshold = f"{100 * quality:.2f}% success at {100 * cost:.2f}% of always-top cost"
        return {
            "gain over the static mix": headline_cell(m, GAIN),
            "cost at top quality": headline_cell(m, COST_AT_TOP),
            "at its threshold": at_threshold,
            "rule, threshold": f"{p.get('policy_rule', '-')}, {p.get('policy_threshold', '-')}",
            "guarantee": p.get("guarantee", "-"),
            "encoder": p.get("encoder", "-"),
            "data": p.get("data", "-"),
        }


def headline_table(columns: Mapping[str, Facts], title: str = "") -> str:
    """A markdown table, one column per version: what MLflow shows at the top of a run or version page."""
    rows = {label: facts.rows() for label, facts in columns.items()}
    titles = list(next(iter(rows.values())))
    lines = [f"**{title}**", ""] if title else []
    lines += ["| | " + " | ".join(rows) + " |", "|---|" + "---|" * len(rows)]
    lines += [f"| {t} | " + " | ".join(cells[t] for cells in rows.values()) + " |" for t in titles]
    return "\n".join([*lines, "", LEGEND])
