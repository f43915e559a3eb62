"""The cost-quality chart: router, static mix and other baselines, oracle frontier, on one set of axes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from tierwise.classifier.outputs import atomic_file
from tierwise.training.evaluation.report import BASELINES, EvalReport
from tierwise.training.evaluation.table import format_metric


def plot_report(report: EvalReport, path: str | Path, whose: str = "") -> None:
    """Draw success rate against cost (fraction of always-top) for the router and every baseline, as PNG.

    `whose` (a version and run) heads the title, so a chart seen beside others says which it is."""
    top = report.anchors.top_cost
    fig = Figure(figsize=(7.5, 5.5), dpi=120)
    ax = fig.add_subplot()
    m = report.router.metrics
    ax.plot(
        report.router.curve.cost / top,
        report.router.curve.quality,
        color="C0",
        linewidth=2,
        label=f"router (gain over static mix {_pp(m['gain_over_static'])}, APGR {format_metric(m['apgr'])})",
    )
    for name, swept in report.baselines.items():
        color, line = BASELINES[name].style
        order = swept.curve.cost.argsort(kind="stable")
        ax.plot(
            swept.curve.cost[order] / top,
            swept.curve.quality[order],
            color=color,
            linestyle=line,
            linewidth=1.2,
            label=f"{BASELINES[name].label} (APGR {format_metric(swept.metrics['apgr'])})",
        )
    frontier = report.oracle_frontier
    ax.plot(frontier.cost / top, frontier.quality, color="C3", linestyle=":", linewidth=1.2, label="oracle frontier")
    _always_points(ax, report)
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
    ax.set_title(_titled(whose, f"cost vs quality on {report.evaluated} requests"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def plot_calibration(report: EvalReport, path: str | Path, bins: int = 10, whose: str = "") -> None:
    """Reliability diagram per tier: mean predicted P(success) against the observed success rate, as PNG."""
    tiers, probs, success = report.tiers, report.probabilities, report.outcomes
    fig = Figure(figsize=(4.0 * len(tiers), 4.0), dpi=110)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for k, tier in enumerate(tiers):
        ax = fig.add_subplot(1, len(tiers), k + 1)
        known = np.isfinite(success[:, k])
        p, y = probs[known, k], success[known, k]
        which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
        filled = [b for b in range(bins) if (which == b).any()]
        ax.plot([0, 1], [0, 1], color="C7", linestyle="--", linewidth=1)
        ax.plot(
            [p[which == b].mean() for b in filled],
            [y[which == b].mean() for b in filled],
            marker="o",
            color="C0",
        )
        ax.set(title=f"{tier} (n={int(known.sum())})", xlabel="predicted P(success)", xlim=(0, 1), ylim=(0, 1))
        if k == 0:
            ax.set_ylabel("observed success rate")
    if whose:
        fig.suptitle(_titled(whose, "calibration per tier"), fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig: Figure, path: str | Path) -> None:
    """Save a chart through `atomic_file`, in the format its file name says (PNG without one)."""
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".").lower() or "png")


def plot_versions(reports: dict[str, EvalReport], path: str | Path, whose: str = "") -> None:
    """Several routers scored on the same requests: each one's cost-quality curve and default operating point,
    with the static mix and the always-one-tier points of those requests, as PNG."""
    first = next(iter(reports.values()))
    top = first.anchors.top_cost
    fig = Figure(figsize=(7.5, 5.5), dpi=120)
    ax = fig.add_subplot()
    static = first.baselines["static_mix"]
    order = static.curve.cost.argsort(kind="stable")
    ax.plot(
        static.curve.cost[order] / top,
        static.curve.quality[order],
        color="black",
        linewidth=1.2,
        label=BASELINES["static_mix"].label,
    )
    _always_points(ax, first)
    for k, (label, report) in enumerate(reports.items()):
        m, op = report.router.metrics, report.operating_point
        ax.plot(
            report.router.curve.cost / top,
            report.router.curve.quality,
            color=f"C{k}",
            linewidth=2,
            label=f"{label} (gain over static mix {_pp(m['gain_over_static'])})",
        )
        ax.scatter(op.point.cost / top, op.point.quality, color=f"C{k}", edgecolor="black", s=70, zorder=4)
    ax.set_xlabel("mean cost per request (fraction of always-top)")
    ax.set_ylabel("success rate")
    ax.set_title(_titled(whose, f"cost vs quality on the same {first.evaluated} requests"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def _pp(gain: float | None) -> str:
    """A gain in success rate as percentage points, as MLflow shows it (`docs/mlflow.md`)."""
    return "-" if gain is None else f"{100 * gain:+.2f} pp"


def _titled(whose: str, what: str) -> str:
    return f"{whose}\n{what}" if whose else what


def _always_points(ax, report: EvalReport) -> None:
    """Each tier alone, as a labelled square."""
    top = report.anchors.top_cost
    for tier, point in report.always.items():
        ax.scatter(point.cost / top, point.quality, color="black", marker="s", zorder=3)
        ax.annotate(f"always {tier}", (point.cost / top, point.quality), textcoords="offset points", xytext=(5, -10))
