"""The cost-quality chart: router, baselines and oracle on one set of axes."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from training.evaluation.report import EvalReport, format_metric


def plot_report(report: EvalReport, path: str | Path) -> None:
    """Draw success rate against cost (fraction of always-top) for the router and every baseline, as PNG."""
    top = report.anchors.top_cost
    fig = Figure(figsize=(7.5, 5.5), dpi=120)
    ax = fig.add_subplot()
    m = report.router.metrics
    ax.plot(
        report.router.curve.cost / top,
        report.router.curve.quality,
        color="C0",
        linewidth=2,
        label=f"router (APGR {format_metric(m['apgr'])})",
    )
    styles = {"random": ("C7", "--"), "length": ("C1", "-"), "knn": ("C2", "-")}
    names = {"random": "random mix", "length": "prompt length", "knn": "k-NN"}
    for name, swept in report.baseline_sweeps().items():
        color, line = styles[name]
        order = swept.curve.cost.argsort(kind="stable")
        ax.plot(
            swept.curve.cost[order] / top,
            swept.curve.quality[order],
            color=color,
            linestyle=line,
            linewidth=1.2,
            label=f"{names[name]} (APGR {format_metric(swept.metrics['apgr'])})",
        )
    for tier, point in report.always.items():
        ax.scatter(point.cost / top, point.quality, color="black", marker="s", zorder=3)
        ax.annotate(f"always {tier}", (point.cost / top, point.quality), textcoords="offset points", xytext=(5, -10))
    ax.scatter(report.oracle.cost / top, report.oracle.quality, color="C3", marker="*", s=160, zorder=3, label="oracle")
    op = report.operating_point
    ax.scatter(
        op.point.cost / top,
        op.point.quality,
        color="C0",
        edgecolor="black",
        s=70,
        zorder=4,
        label=f"router at threshold {op.threshold:.2f}",
    )
    ax.set_xlabel("mean cost per request (fraction of always-top)")
    ax.set_ylabel("success rate")
    ax.set_title(f"cost vs quality on {report.evaluated} requests")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)
