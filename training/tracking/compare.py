"""Side-by-side comparison of registered versions: the headline, how each routes, data, encoder and aliases.

Without logs the metrics are the ones each version's training run recorded on its own held-out rows; with logs
every version is re-evaluated on the same rows, so the numbers are comparable (the intervals too: the same
requests, the same resamples), in a comparison run (`run_logging.comparison_run`) opened before the scoring:
each version's numbers under `v<N>/`, the evaluation data, the versions' curves on one chart, and the headline
table as its description.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierError, TierLadder
from tierwise.registry.models import ModelRef, Registry, RegistryError
from tierwise.registry.store import DEFAULT_EXPERIMENT
from tierwise.training.data.labels import label_requests
from tierwise.training.data.logs import AttemptLog
from tierwise.training.evaluation.evaluate import evaluate_router, evaluation_ladder
from tierwise.training.evaluation.report import EvalReport
from tierwise.training.evaluation.summary import flat_headline, summary_metrics
from tierwise.training.tracking.headline import (
    COST_AT_TOP,
    GAIN,
    NEVER,
    Facts,
    headline_cell,
    headline_table,
    run_metrics,
)
from tierwise.training.tracking.run_logging import comparison_run, dataset_name, evaluated_params

HEADLINE_ROWS = (("gain over static, pp", GAIN), ("cost at top quality, %", COST_AT_TOP))
SHOWN_METRICS = (
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
FACT_PARAMS = ("policy_rule", "policy_threshold", "guarantee", "encoder", "data")


@dataclass(frozen=True)
class VersionRow:
    """One column of the comparison table."""

    version: str
    aliases: list[str]
    created: str
    bundle: str
    data_fingerprint: str
    train_requests: str
    metrics: dict[str, float]
    params: dict[str, str]
    evaluation: EvalReport | None = None

    @property
    def label(self) -> str:
        """`v3` or `v3 @champion`."""
        return f"v{self.version}" + "".join(f" @{alias}" for alias in self.aliases)

    def facts(self) -> Facts:
        return Facts(self.metrics, self.params)


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
        runs = [registry.run(known[version].run_id) for version in chosen]
        metrics = [dict(run.data.metrics) for run in runs]
        params = [{k: v for k, v in run.data.params.items() if k in FACT_PARAMS} for run in runs]
        trained_on = [run.data.params.get("train_requests", "?") for run in runs]
    else:
        routers = [Router.load(registry.bundle(ModelRef(name, version=version))) for version in chosen]
        evaluations = list(reevaluated(routers, log, ladder, split))
        metrics, params = [], []
        rows_of = f"{split or 'all'} rows"
        for evaluation, router in zip(evaluations, routers, strict=True):
            latency = {"latency_p50_us": router.manifest.metrics.get("latency_p50_us", float("nan"))}
            metrics.append(run_metrics(summary_metrics(evaluation, latency), flat_headline(evaluation)))
            params.append(evaluated_params(router.manifest, f"{evaluation.evaluated} requests ({rows_of})", log.files))
        trained_on = [str(router.manifest.data["requests"]["train"]) for router in routers]
    rows = []
    for k, version in enumerate(chosen):
        tags = known[version].tags
        created = datetime.fromtimestamp(known[version].creation_timestamp / 1000, UTC)
        rows.append(
            VersionRow(
                version=version,
                aliases=aliases.get(version, []),
                created=created.strftime("%Y-%m-%d %H:%M"),
                bundle=tags.get("bundle_version", "?"),
                data_fingerprint=tags.get("data_fingerprint", "?"),
                train_requests=trained_on[k],
                metrics=with_mean_ece(metrics[k]),
                params={"encoder": tags.get("encoder", "?")} | params[k],
                evaluation=evaluations[k],
            )
        )
    return rows


def compare_versions(
    registry: Registry,
    name: str,
    versions: Sequence[str] = (),
    log: AttemptLog | None = None,
    ladder: TierLadder | None = None,
    split: str | None = "test",
    experiment: str = DEFAULT_EXPERIMENT,
) -> tuple[list[VersionRow], str | None]:
    """`version_rows`; with a log, inside a comparison run that records them. The rows and that run's id."""
    if log is None:
        return version_rows(registry, name, versions, log, ladder, split), None
    fingerprint = log.fingerprint()
    about = {"tierwise.comparison_of": name, "tierwise.data_fingerprint": fingerprint["fingerprint"]}
    with comparison_run(registry, experiment, f"compare {name}", about) as comparing:
        with comparing.stage("evaluate"):
            rows = version_rows(registry, name, versions, log, ladder, split)
        run_name = (
            f"compare {name} · {', '.join(f'v{row.version}' for row in rows)} · {rows[0].evaluation.evaluated} req"
        )
        comparing.record(
            run_name,
            {f"v{row.version}/{key}": value for row in rows for key, value in row.metrics.items()},
            {
                "versions": ",".join(row.version for row in rows),
                "split": split or "all",
                "evaluated_requests": rows[0].evaluation.evaluated,
                "logs": ",".join(dataset_name(f) for f in log.files),
            },
            comparison_description(rows),
            log,
            fingerprint["files"],
            {"cost_quality.png": lambda path: _plot(rows, path, comparing.title(run_name))},
        )
    return rows, comparing.run_id


def _plot(rows: list[VersionRow], path: Any, whose: str) -> None:
    from tierwise.training.evaluation.plot import plot_versions

    plot_versions({row.label: row.evaluation for row in rows if row.evaluation is not None}, path, whose=whose)


def best(rows: list[VersionRow]) -> str:
    """Which version leads on each headline number, in one line."""

    def leader(key: str, sign: float) -> str:
        scored = [(sign * row.metrics[key], row) for row in rows if key in row.metrics]
        if not scored:
            return "-"
        row = max(scored, key=lambda pair: pair[0])[1]
        return f"{row.label} ({headline_cell(row.metrics, key)})"

    return (
        f"highest gain over the static mix: {leader(GAIN, 1.0)}; "
        f"lowest cost at top quality: {leader(COST_AT_TOP, -1.0)}"
    )


def comparison_description(rows: list[VersionRow]) -> str:
    """A comparison run's description: who leads, then every version's headline side by side."""
    return f"**{best(rows)}**\n\n" + headline_table({row.label: row.facts() for row in rows})


def metric_cell(metrics: Mapping[str, float], key: str) -> str:
    """A metric to three decimals, with its 95% interval `[lo, hi]` when one was recorded; a part of a metric
    that was recorded elsewhere but not there is a level never reached (`never`); `-`: not recorded."""
    parts = (key, f"{key}_ci_lo", f"{key}_ci_hi")
    missing = NEVER if any(part in metrics for part in parts) else "-"

    def shown(part: str) -> str:
        value = metrics.get(part)
        return missing if value is None or value != value else f"{value:.3f}"

    cell = shown(key)
    if parts[1] in metrics or parts[2] in metrics:
        cell += f" [{shown(parts[1])}, {shown(parts[2])}]"
    return cell


def render_comparison(rows: list[VersionRow], evaluated_on: str) -> str:
    """A table with one column per version and one row per field (UTC times, metrics to three decimals)."""
    table: list[tuple[str, list[str]]] = [
        ("version", [f"v{r.version}" for r in rows]),
        ("aliases", [",".join(r.aliases) or "-" for r in rows]),
        ("created", [r.created for r in rows]),
        ("rule", [r.params.get("policy_rule", "-") for r in rows]),
        ("threshold", [r.params.get("policy_threshold", "-") for r in rows]),
        ("encoder", [r.params.get("encoder", "-") for r in rows]),
        ("bundle", [r.bundle for r in rows]),
        ("data", [r.data_fingerprint for r in rows]),
        ("train requests", [r.train_requests for r in rows]),
    ]
    table += [(title, [headline_cell(r.metrics, key, units=False) for r in rows]) for title, key in HEADLINE_ROWS]
    for key in SHOWN_METRICS:
        if any(r.metrics.get(key) is not None for r in rows):
            table.append((key, [metric_cell(r.metrics, key) for r in rows]))
    label = max(len(title) for title, _ in table) + 2
    width = max(len(cell) for _, cells in table for cell in cells) + 2
    lines = [f"metrics: {evaluated_on}; gain in percentage points, cost at top quality in % of always-top"]
    lines += [f"{title:<{label}}" + "".join(f"{cell:>{width}}" for cell in cells) for title, cells in table]
    return "\n".join(lines)
