"""Recording runs in MLflow so a person can read them: training runs (params, data lineage, held-out metrics,
plots, the model, a headline description) and comparison runs (several versions measured on the same rows).

Every run is opened when its work starts, so its duration is the work's, and logs how long each stage took
(`time_<stage>_s`). Its description (MLflow's run note) is the headline table (`headline.py`).

Names: a training run is `<log file stem> · <encoder>`, renamed `<model name> v<N> · <encoder> · <requests> req`
once registered; its logged model is named after the registered model. Datasets are named after where the logs
are (`<folder>/<file>`), and the encoder by the one name `tierwise train --encoder` takes. Comparison runs go to
an experiment of their own (`<experiment>-comparisons`), so the training runs' views hold training metrics only;
their metrics are named by version (`v3/...`, and `v4-v3/...` for a paired difference).

This module records; which version holds which alias, and the descriptions saying why, are
`tierwise.training.tracking.promotion`'s.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from tierwise.classifier.bundle import Manifest, PolicySpec
from tierwise.registry.models import Registry
from tierwise.registry.store import DEFAULT_EXPERIMENT, activate, use_experiment
from tierwise.training.data.attempts import SOURCE_FILE
from tierwise.training.data.logs import STREAMING, AttemptLog
from tierwise.training.evaluation.summary import flat_headline
from tierwise.training.fit.train import TrainResult
from tierwise.training.tracking.headline import Facts, headline_table, run_metrics
from tierwise.training.tracking.pyfunc import log_router_model
from tierwise.training.tracking.run_owner import owner_tags

UNREGISTERED_MODEL = "router"
NOTE_TAG = "mlflow.note.content"
RUN_NAME_TAG = "mlflow.runName"
COMPARISON_TAG = "tierwise.comparison"
TIME_PREFIX = "time_"


def comparison_experiment(experiment: str) -> str:
    """Where the comparison runs of an experiment's versions go."""
    return f"{experiment}-comparisons"


def dataset_name(path: str | Path) -> str:
    """A log file named by where it is (`mmlu_pro/attempts.parquet`), not only by its file name."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def requests_in(result: TrainResult) -> int:
    """How many labelled requests the run's logs hold (training and held-out)."""
    counts = result.manifest.data["requests"]
    return int(counts["train"] + counts["test"])


def run_name(result: TrainResult, model: str | None = None, version: str | None = None) -> str:
    """`<model> v<N> · <encoder> · <requests> req` for a registered version, else `<log file stem> · <encoder>`."""
    if model is not None:
        return f"{model} v{version} · {result.options.encoder} · {requests_in(result)} req"
    return first_run_name(result.log.files, result.options.encoder)


def first_run_name(files: list[Path], encoder: str) -> str:
    """A training run's name before it is registered: `<log file stem> · <encoder>`."""
    more = f" +{len(files) - 1}" if len(files) > 1 else ""
    return f"{Path(files[0]).stem}{more} · {encoder}"


def logged_model_name(register: str | None) -> str:
    """The logged model's name: the registered model's (in the characters MLflow allows there), else `router`."""
    return re.sub(r"[/:.%\"']", "-", register) if register else UNREGISTERED_MODEL


def guarantee_text(policy: PolicySpec) -> str:
    """The quality guarantee behind a version's threshold, in one phrase."""
    guarantee = policy.guarantee
    if not guarantee:
        return "none (an unguarded threshold, chosen on validation rows)"
    target, confidence = guarantee["quality_target"], guarantee["confidence"]
    if not guarantee.get("certified"):
        return f"{target:.0%} of always-top quality not certifiable: every request goes to the top tier"
    return (
        f">= {target:.0%} of always-top quality with {confidence:.0%} confidence (lower bound "
        f"{guarantee['quality_lower_bound']:.1%} on {guarantee['calibration_requests']} calibration requests)"
    )


def policy_params(policy: PolicySpec) -> dict[str, str]:
    """How a version routes by default: rule, threshold, and the guarantee behind it."""
    return {
        "policy_rule": policy.rule,
        "policy_threshold": f"{policy.threshold:.4f}",
        "guarantee": guarantee_text(policy),
    }


def data_text(requests: str, files: list[str]) -> str:
    """`2407 held-out of 12032 requests in mmlu_pro/attempts.parquet`."""
    return f"{requests} in {', '.join(dataset_name(f) for f in files)}"


def evaluated_params(manifest: Manifest, requests: str, files: Sequence[Path]) -> dict[str, str]:
    """How a version routes (`policy_params`), its encoder, and the data it was evaluated on (`data_text`): what
    retrain and compare show of each version they score."""
    data = data_text(requests, [str(f) for f in files])
    return policy_params(manifest.policy) | {"encoder": manifest.encoder.kind, "data": data}


def run_params(result: TrainResult) -> dict[str, str]:
    """Everything that decides the model: encoder, head and its hyper-parameters, tiers and prices, rule,
    threshold and guarantee, seed, and the data it learned from and was tested on."""
    manifest = result.manifest
    params: dict[str, Any] = {k: v for k, v in result.params.items() if k != "tiers"}
    params["tiers"] = ",".join(result.params["tiers"])
    for tier in manifest.tier_ladder.tiers:
        params[f"price_{tier.name}_in_usd_per_mtok"] = tier.input_usd_per_mtok
        params[f"price_{tier.name}_out_usd_per_mtok"] = tier.output_usd_per_mtok
    params |= policy_params(manifest.policy)
    params["policy_chosen_by"] = manifest.policy.chosen_by[:500]
    counts = manifest.data["requests"]
    params["train_requests"] = counts["train"]
    params["test_requests"] = counts["test"]
    files = [entry["path"] for entry in manifest.data["files"]]
    params["data"] = data_text(f"{counts['test']} held-out of {requests_in(result)} requests", files)[:6000]
    if result.dropped_tiers:
        params["dropped_tiers"] = ",".join(result.dropped_tiers)
    return {key: str(value) for key, value in params.items()}


def version_tags(result: TrainResult) -> dict[str, str]:
    """A registered version's identity: data fingerprint and files, encoder, bundle version."""
    manifest = result.manifest
    return {
        "data_fingerprint": manifest.data["fingerprint"],
        "data_files": ",".join(dataset_name(entry["path"]) for entry in manifest.data["files"]),
        "encoder": manifest.encoder.kind,
        "bundle_version": manifest.version,
    }


def log_datasets(log: AttemptLog, files: list[dict[str, str]], context: str) -> None:
    """One MLflow dataset input per log file (`files`: path and SHA-256, as a fingerprint lists them), named
    after its location, with the start of its hash as the digest (lineage)."""
    import mlflow

    for entry in files:
        path, digest = entry["path"], entry["sha256"]
        rows = log.attempts.filter(pl.col(SOURCE_FILE) == path).select("request_id", "model", "success")
        dataset = mlflow.data.from_polars(
            rows.collect(engine=STREAMING), source=path, name=dataset_name(path), digest=digest[:16]
        )
        mlflow.log_input(dataset, context=context, tags={"sha256": digest})


def log_plots(plots: Mapping[str, Callable[[Path], None]]) -> None:
    """Each plot drawn into a file of its name and logged at the run's root (the UI's run comparison shows
    the charts of several runs side by side)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        for file_name, draw in plots.items():
            draw(Path(tmp) / file_name)
        mlflow.log_artifacts(tmp)


@dataclass
class OpenRun:
    """A run opened before its work: its id, and how long each stage of the work took."""

    run_id: str
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage of the work; logged as `time_<name>_s` when the run ends."""
        started = time.perf_counter()
        yield
        self.timings[f"{TIME_PREFIX}{name}_s"] = time.perf_counter() - started

    def title(self, name: str) -> str:
        """What heads the run's plots: its name and id."""
        return f"{name} (run {self.run_id[:8]})"


@dataclass(frozen=True)
class TrackedRun:
    """Where a training run went: its MLflow run, and its registered version if any."""

    run_id: str
    version: str | None = None


@dataclass
class TrainingRun(OpenRun):
    """A training's run, open while it trains; `record` logs what it produced."""

    registry: Registry = field(kw_only=True)

    def record(self, result: TrainResult, register: str | None = None) -> TrackedRun:
        """Log a finished training: params, datasets, held-out metrics and stage timings, the model (a new
        version of `register` when given), plots titled with the run, and the headline as the description."""
        import mlflow
        from tierwise.training.evaluation.plot import plot_calibration, plot_report

        with self.stage("record"):
            manifest = result.manifest
            evaluation = result.traffic_evaluation or result.evaluation
            params = run_params(result)
            metrics = run_metrics(manifest.metrics, flat_headline(evaluation) if evaluation else None)
            mlflow.log_params(params)
            mlflow.set_tags(
                {"tierwise.data_fingerprint": manifest.data["fingerprint"], "tierwise.bundle": manifest.version}
            )
            log_datasets(result.log, manifest.data["files"], "training")
            mlflow.log_metrics(metrics)
            info = log_router_model(logged_model_name(register), result.bundle_dir, manifest.tier_ladder)
            version = None
            if register is not None:
                version = self.registry.register(
                    register, info.model_uri, self.run_id, info.model_id, version_tags(result)
                )
            name = run_name(result, register, version)
            mlflow.set_tag(RUN_NAME_TAG, name)
            if result.evaluation is not None:
                report, title = result.evaluation, self.title(name)
                log_plots(
                    {
                        "cost_quality.png": lambda path: plot_report(report, path, whose=title),
                        "calibration.png": lambda path: plot_calibration(report, path, whose=title),
                        "evaluation.json": lambda path: path.write_text(json.dumps(report.to_json(), indent=2)),
                    }
                )
            label = f"v{version}" if version else "this run"
            mlflow.set_tag(NOTE_TAG, headline_table({label: Facts(metrics, params)}, title=name))
        stages = {f"{TIME_PREFIX}{k}": v for k, v in result.timings.items() if k.endswith("_s")}
        mlflow.log_metrics(stages | self.timings)
        return TrackedRun(self.run_id, version)


@contextmanager
def training_run(
    registry: Registry,
    log: AttemptLog,
    encoder: str,
    experiment: str = DEFAULT_EXPERIMENT,
    tags: dict[str, str] | None = None,
) -> Iterator[TrainingRun]:
    """Open a training's run before the work starts, so its duration covers the work (a failure ends it FAILED).

    `tags` are added to the run's own, and so are its owner's pid and host, so a later command can end the run
    if this one is killed.
    """
    import mlflow

    activate(registry.uri)
    use_experiment(experiment, registry.uri)
    with mlflow.start_run(run_name=first_run_name(log.files, encoder), tags=owner_tags() | (tags or {})) as run:
        yield TrainingRun(run.info.run_id, registry=registry)


def log_training_run(
    result: TrainResult,
    registry: Registry,
    register: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    tags: dict[str, str] | None = None,
) -> TrackedRun:
    """Record a training that was done before its run opened (the run's duration is then the recording's)."""
    with training_run(registry, result.log, result.options.encoder, experiment, tags) as run:
        return run.record(result, register)


@dataclass
class ComparisonRun(OpenRun):
    """A comparison's run, open while it scores; `record` logs what it found."""

    def record(
        self,
        name: str,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
        note: str,
        log: AttemptLog,
        files: list[dict[str, str]],
        plots: Mapping[str, Callable[[Path], None]] | None = None,
    ) -> None:
        """Log a finished comparison: its final name, the numbers by version (grouped by metric, the headline
        first: a run page lists metrics in the order they were logged), what it compared (params), the
        evaluation data (`log`, its `files` as its fingerprint lists them, hashed once by the caller), its plots
        titled with the run, and `note` as its description."""
        import mlflow

        mlflow.set_tag(RUN_NAME_TAG, name)
        mlflow.log_params({key: str(value)[:6000] for key, value in params.items()})
        by_metric = sorted(metrics, key=lambda key: key.rpartition("/")[::-2])  # v1/x, v2/x, ... then v1/y
        mlflow.log_metrics({key: metrics[key] for key in by_metric if metrics[key] == metrics[key]})
        log_datasets(log, files, "evaluation")
        if plots:
            log_plots(plots)
        mlflow.set_tag(NOTE_TAG, note)


@contextmanager
def comparison_run(registry: Registry, experiment: str, name: str, tags: dict[str, str]) -> Iterator[ComparisonRun]:
    """Open a comparison's run, in the comparisons experiment of `experiment`, before its work starts."""
    import mlflow

    activate(registry.uri)
    use_experiment(comparison_experiment(experiment), registry.uri)
    with mlflow.start_run(run_name=name, tags=owner_tags() | {COMPARISON_TAG: "true"} | tags) as run:
        comparing = ComparisonRun(run.info.run_id)
        yield comparing
        mlflow.log_metrics(comparing.timings)
