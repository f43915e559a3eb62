"""Side-by-side comparison of registered versions: metrics, data, encoder and aliases.

Without logs the metrics are the ones each version's training run recorded on its own held-out rows; with logs
every version is re-evaluated on the same rows, so the numbers are comparable (the intervals too: the same
requests, the same resamples), and they are logged as an MLflow comparison run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierError, TierLadder
from tierwise.training.evaluation.evaluate import evaluate_router, evaluation_ladder
from tierwise.training.evaluation.report import EvalReport
from tierwise.training.evaluation.summary import summary_metrics
from tierwise.training.labels import label_requests
from tierwise.training.logs import AttemptLog
from tierwise.training.tracking.registry import ModelRef, Registry, RegistryError
from tierwise.training.tracking.run_logging import log_comparison_run

SHOWN_METRICS = (
    "gain_over_static",
    "cost_at_top_quality",
    "apgr",
    "cpt50",
    "cpt80",
    "cost_ratio_at_95",
    "cost_ratio",
    "quality_ratio",
    "quality",
    "under_routing_rate",
    "over_routing_rate",
    "exact_tier_accuracy",
    "ece_mean",
    "latency_p50_us",
)


@dataclass(frozen=True)
class VersionRow:
    """One column of the comparison table."""

    version: str
    aliases: list[str]
    created: str
    bundle: str
    encoder: str
    data_fingerprint: str
    train_requests: str
    metrics: dict[str, float]
    evaluated: int | None = None


def with_mean_ece(metrics: dict[str, float]) -> dict[str, float]:
    """Add `ece_mean`, the mean of the per-tier ECEs, so versions with different tier names still compare."""
    eces = [v for k, v in metrics.items() if k.startswith("ece_") and k != "ece_mean"]
    return {**metrics, "ece_mean": sum(eces) / len(eces)} if eces else dict(metrics)


def reevaluated(
    routers: list[Router], log: AttemptLog, ladder: TierLadder | None, split: str | None
) -> list[EvalReport]:
    """Every router evaluated on the same labelled rows (one ladder: `ladder`, else the newest version's)."""
    ladder = evaluation_ladder(routers[-1], ladder)
    for router in routers:
        if router.ladder.names != ladder.names:
            raise TierError(
                f"version {router.version} routes between {router.ladder.names}, not {ladder.names}: "
                "versions with different tiers cannot be evaluated on the same rows"
            )
    labels = label_requests(log, ladder).frame
    return [evaluate_router(router, labels, split=split) for router in routers]


def version_rows(
    registry: Registry,
    name: str,
    versions: Sequence[str] = (),
    log: AttemptLog | None = None,
    ladder: TierLadder | None = None,
    split: str | None = "test",
) -> list[VersionRow]:
    """The versions to compare (all of them by default), each with recorded or re-evaluated metrics."""
    known = registry.versions(name)
    chosen = [str(v) for v in versions] if versions else sorted(known, key=int)
    missing = [v for v in chosen if v not in known]
    if missing:
        raise RegistryError(f"{name} has no version(s) {missing}; it has {sorted(known, key=int)}")
    aliases = registry.aliases_by_version(name)
    evaluations: list[EvalReport | None] = [None] * len(chosen)
    if log is None:
        runs = [registry.client.get_run(known[version].run_id) for version in chosen]
        metrics = [dict(run.data.metrics) for run in runs]
        trained_on = [run.data.params.get("train_requests", "?") for run in runs]
    else:
        routers = [Router.load(registry.bundle(ModelRef(name, version=version))) for version in chosen]
        evaluations = reevaluated(routers, log, ladder, split)
        metrics = [summary_metrics(evaluation, {}) for evaluation in evaluations]
        for found, router in zip(metrics, routers, strict=True):
            found["latency_p50_us"] = router.manifest.metrics.get("latency_p50_us", float("nan"))
        trained_on = [str(router.manifest.data["requests"]["train"]) for router in routers]
    rows = []
    for version, numbers, train_requests, evaluation in zip(chosen, metrics, trained_on, evaluations, strict=True):
        tags = known[version].tags
        created = datetime.fromtimestamp(known[version].creation_timestamp / 1000, UTC)
        rows.append(
            VersionRow(
                version=version,
                aliases=aliases.get(version, []),
                created=created.strftime("%Y-%m-%d %H:%M"),
                bundle=tags.get("bundle_version", "?"),
                encoder=tags.get("encoder", "?"),
                data_fingerprint=tags.get("data_fingerprint", "?"),
                train_requests=train_requests,
                metrics=with_mean_ece(numbers),
                evaluated=evaluation.evaluated if evaluation is not None else None,
            )
        )
    return rows


def log_comparison(registry: Registry, experiment: str, name: str, rows: list[VersionRow], log: AttemptLog) -> str:
    """The re-evaluated numbers of every version as one MLflow comparison run (`v<N>/<metric>`); its id."""
    metrics = {f"v{row.version}/{key}": value for row in rows for key, value in row.metrics.items() if value == value}
    versions = ", ".join(f"v{row.version}" for row in rows)
    return log_comparison_run(
        registry,
        experiment,
        f"compare {name} · {versions} · {rows[0].evaluated} req",
        metrics,
        {"tierwise.comparison_of": name, "tierwise.data_fingerprint": log.fingerprint()["fingerprint"]},
    )


def metric_cell(metrics: dict[str, float], key: str) -> str:
    """A metric to three decimals, with its 95% interval `[lo, hi]` when one was recorded ('-': none, or never)."""

    def shown(value: float | None) -> str:
        return "-" if value is None or value != value else f"{value:.3f}"

    cell = shown(metrics.get(key))
    if f"{key}_ci_lo" in metrics or f"{key}_ci_hi" in metrics:
        cell += f" [{shown(metrics.get(f'{key}_ci_lo'))}, {shown(metrics.get(f'{key}_ci_hi'))}]"
    return cell


def render_comparison(rows: list[VersionRow], evaluated_on: str) -> str:
    """A table with one column per version and one row per field (UTC times, metrics to three decimals)."""
    table: list[tuple[str, list[str]]] = [
        ("version", [f"v{r.version}" for r in rows]),
        ("aliases", [",".join(r.aliases) or "-" for r in rows]),
        ("created", [r.created for r in rows]),
        ("bundle", [r.bundle for r in rows]),
        ("encoder", [r.encoder for r in rows]),
        ("data", [r.data_fingerprint for r in rows]),
        ("train requests", [r.train_requests for r in rows]),
    ]
    for key in SHOWN_METRICS:
        if any(r.metrics.get(key) is not None for r in rows):
            table.append((key, [metric_cell(r.metrics, key) for r in rows]))
    label = max(len(title) for title, _ in table) + 2
    width = max(len(cell) for _, cells in table for cell in cells) + 2
    lines = [f"metrics: {evaluated_on}"]
    lines += [f"{title:<{label}}" + "".join(f"{cell:>{width}}" for cell in cells) for title, cells in table]
    return "\n".join(lines)
