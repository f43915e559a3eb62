"""The cost-versus-time chart of a band evaluation: every strategy's mean cost against its time to an acceptable
answer, and the router across latency budgets."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from tierwise.training.evaluation.bands import BandReport
from tierwise.training.evaluation.plot import save_figure


def plot_band_report(report: BandReport, path: str | Path) -> None:
    """Mean cost per request against mean time to an acceptable answer (s), as PNG; each point is labelled with
    its quality (within the budget, when there is one), since a fast strategy may answer fewer requests."""
    budget = report.options.budget_ms
    fig = Figure(figsize=(7.5, 5.5), dpi=120)
    ax = fig.add_subplot()
    if report.budget_sweep:
        points = [(sim.summary(b)["time_to_acceptable_ms"]["mean"], sim.mean_cost()) for b, sim in report.budget_sweep]
        points = [(t / 1000, c) for t, c in points if t is not None]
        ax.plot(*zip(*points, strict=True), color="C0", marker=".", linewidth=1, label="router across budgets")
    styles = {"router": ("C0", "o", 80), "static mix": ("C2", "D", 50), "oracle": ("C3", "*", 160)}
    for name, sim in report.strategies().items():
        mean = sim.summary(budget)["time_to_acceptable_ms"]["mean"]
        if mean is None:
            continue
        color, marker, size = styles.get(name, ("black", "s", 40))
        ax.scatter(mean / 1000, sim.mean_cost(), color=color, marker=marker, s=size, zorder=3, edgecolor="black")
        label = f"{name} (quality {sim.quality(budget):.2f})"
        ax.annotate(label, (mean / 1000, sim.mean_cost()), textcoords="offset points", xytext=(6, -10), fontsize=8)
    title = f"cost vs time to an acceptable answer, band {report.options.band}"
    if budget is not None:
        title += f" ({budget / 1000:g} s budget)"
    ax.set(xlabel="mean time to an acceptable answer (s)", ylabel="mean cost per request (USD)", title=title)
    ax.grid(alpha=0.3)
    if report.budget_sweep:
        ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)
