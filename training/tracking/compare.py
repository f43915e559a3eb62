"""Side-by-side comparison of registered versions: metrics, data, encoder and aliases.

Without logs the metrics are the ones each version recorded on its own held-out rows; with logs every
version is re-evaluated on the same rows, so the numbers are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from classifier.router import Router
from training.evaluation.evaluate import evaluate_router, evaluation_ladder
from training.labels import label_requests
from training.logs import AttemptLog
from training.tracking.registry import RegistryError, aliases_by_version, bundle_for_version, client
from training.train import summary_metrics

SHOWN_METRICS = (
    "apgr",
    "cpt50",
    "cost_ratio",
    "quality_ratio",
    "quality",
    "under_routing_rate",
    "over_routing_rate",
    "ece_mean",
    "latency_p50_us",
)


@dataclass(frozen=True)
class VersionRow:
    """One column of the comparison table."""

    version: str
    aliases: list[str]
    encoder: str
    data_fingerprint: str
    created: str
    metrics: dict[str, float]


def with_mean_ece(metrics: dict[str, float]) -> dict[str, float]:
    """Add `ece_mean`, the mean of the per-tier ECEs, so versions with different tier names still compare."""
    eces = [v for k, v in metrics.items() if k.startswith("ece_") and k != "ece_mean"]
    return {**metrics, "ece_mean": sum(eces) / len(eces)} if eces else dict(metrics)


def version_rows(
    name: str,
    versions: Sequence[str] | None = None,
    log: AttemptLog | None = None,
    tiers: str | None = None,
    split: str | None = "test",
    tracking: str | None = None,
) -> list[VersionRow]:
    """The versions to compare (all of them by default), each with recorded or re-evaluated metrics."""
    registry = client(tracking)
    known = {str(v.version): v for v in registry.search_model_versions(f"name='{name}'")}
    if not known:
        raise RegistryError(f"no registered model named {name!r}")
    chosen = [str(v) for v in versions] if versions else sorted(known, key=int)
    missing = [v for v in chosen if v not in known]
    if missing:
        raise RegistryError(f"{name} has no version(s) {missing}; it has {sorted(known, key=int)}")
    aliases = aliases_by_version(name, tracking)
    rows = []
    for version in chosen:
        tags = known[version].tags
        if log is None:
            metrics = {k[len("metric.") :]: float(v) for k, v in tags.items() if k.startswith("metric.")}
        else:
            router = Router.load(bundle_for_version(name, version, tracking))
            labels = label_requests(log, evaluation_ladder(router, tiers)).frame
            metrics = summary_metrics(evaluate_router(router, labels, split=split), {})
            metrics["latency_p50_us"] = router.manifest.metrics.get("latency_p50_us", float("nan"))
        rows.append(
            VersionRow(
                version=version,
                aliases=aliases.get(version, []),
                encoder=tags.get("encoder", "?"),
                data_fingerprint=tags.get("data_fingerprint", "?"),
                created=str(known[version].creation_timestamp),
                metrics=with_mean_ece(metrics),
            )
        )
    return rows


def render_comparison(rows: list[VersionRow], evaluated_on: str) -> str:
    """A table with one column per version and one row per field."""
    width = max(12, *(len(f"v{r.version}") for r in rows))
    label = 20

    def line(title: str, cells: list[str]) -> str:
        return f"{title:<{label}}" + "".join(f"{c:>{width + 2}}" for c in cells)

    lines = [
        f"metrics: {evaluated_on}",
        line("version", [f"v{r.version}" for r in rows]),
        line("aliases", [",".join(r.aliases) or "-" for r in rows]),
        line("encoder", [r.encoder[:width] for r in rows]),
        line("data", [r.data_fingerprint[:width] for r in rows]),
    ]
    for key in SHOWN_METRICS:
        values = [r.metrics.get(key) for r in rows]
        if any(v is not None for v in values):
            lines.append(line(key, ["-" if v is None or v != v else f"{v:.3f}" for v in values]))
    return "\n".join(lines)
