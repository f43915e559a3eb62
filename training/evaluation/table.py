"""The plain-text view of an evaluation: the savings headline with intervals, then router and baselines."""

from __future__ import annotations

from tierwise.training.evaluation.bootstrap import RESAMPLES, Interval
from tierwise.training.evaluation.report import BASELINES, EvalReport, SweptRouter

CURVE_COLUMNS = (
    ("APGR", "apgr", 8),
    ("CPT50", "cpt50", 8),
    ("CPT80", "cpt80", 8),
    ("cost@95", "cost_ratio_at_95", 9),
    ("cost@100", "cost_ratio_at_100", 10),
    ("AIQ", "aiq", 8),
    ("gain", "gain_over_static", 9),
)


def format_metric(value: float | None, signed: bool = False) -> str:
    """A metric to three decimals, or '-' where it is undefined."""
    if value is None:
        return "-"
    rounded = round(value, 3) or 0.0  # no "-0.000" for float noise around zero
    return f"{rounded:+.3f}" if signed else f"{rounded:.3f}"


def with_interval(value: float | None, interval: Interval, signed: bool = False, never: str = "never") -> str:
    """`value [lo, hi]`; an end the curve never reaches reads `never`."""

    def end(v: float | None) -> str:
        return never if v is None else format_metric(v, signed)

    return f"{end(value)} [{end(interval.lo)}, {end(interval.hi)}]"


def headline_lines(report: EvalReport) -> list[str]:
    """The savings over the best fixed mix of tiers, and the cost and gap metrics, each with its interval."""
    m, ci = report.router.metrics, report.intervals
    headroom = m["headroom_captured"]
    gain = with_interval(m["gain_over_static"], ci["gain_over_static"], signed=True, never="-")
    lines = [
        f"router against the best fixed mix of tiers (static mix: {', '.join(report.static_mix_tiers)}); "
        f"95% intervals over {RESAMPLES} resamples of the {report.evaluated} requests:",
        f"  gain over static mix    {gain}"
        f"  (max {format_metric(m['max_gain_over_static'], signed=True)}; "
        f"{'-' if headroom is None else f'{headroom:.1%}'} of the oracle frontier's headroom)",
        f"  cost at top quality     {with_interval(m['cost_at_top_quality'], ci['cost_at_top_quality'])}"
        "  (the static mix needs 1.000)",
        f"  cost at 95% of top      {with_interval(m['cost_ratio_at_95'], ci['cost_ratio_at_95'])}",
        f"  APGR                    {with_interval(m['apgr'], ci['apgr'], never='-')}",
    ]
    if report.routellm is not None:
        r = report.routellm
        lines.append(
            f"  RouteLLM (two tiers)    APGR {format_metric(r['routellm_apgr'])}, "
            f"CPT50 {format_metric(r['routellm_cpt50'])}, CPT80 {format_metric(r['routellm_cpt80'])} "
            "(share of calls to the top tier)"
        )
    return lines


def curve_rows(report: EvalReport) -> list[str]:
    """One row per swept router: the router, then every swept baseline."""
    header = f"{'':<20}" + "".join(f"{title:>{width}}" for title, _, width in CURVE_COLUMNS)
    rows: list[tuple[str, SweptRouter]] = [("router", report.router)]
    rows += [(BASELINES[name].label, swept) for name, swept in report.baselines.items()]
    lines = [header]
    for name, swept in rows:
        cells = [
            f"{format_metric(swept.metrics[key], signed=key == 'gain_over_static'):>{width}}"
            for _, key, width in CURVE_COLUMNS
        ]
        lines.append(f"{name:<20}" + "".join(cells))
    return lines


def render_table(report: EvalReport) -> str:
    """The evaluation for the terminal: headline, curves, fixed points, the default threshold, calibration."""
    lines = [*headline_lines(report), *curve_rows(report)]
    points = {**{f"always {tier}": point for tier, point in report.always.items()}, "oracle": report.oracle}
    for name, point in points.items():
        cost = format_metric(report.cost_ratio(point.cost))
        lines.append(f"{name:<20}cost {cost} x top, quality {point.quality:.3f}")
    op = report.operating_point
    lines.append(
        f"at threshold {op.threshold:.3f}: cost {format_metric(report.cost_ratio(op.point.cost))} x top, "
        f"quality {op.point.quality:.3f}, under-routing {op.rates.under_routing:.3f}, "
        f"over-routing {op.rates.over_routing:.3f}, exact tier {op.rates.exact_tier_accuracy:.3f}"
    )
    lines.append(
        "ECE per tier: "
        + ", ".join(f"{c.tier} {format_metric(c.ece)}" for c in report.calibration)
        + f"   ({report.evaluated} of {report.requests} requests evaluated; "
        f"{report.requests - report.evaluated} lack an outcome on some tier)"
    )
    return "\n".join(lines)
