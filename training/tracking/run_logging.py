"""Recording a training run in MLflow: params, data lineage, held-out metrics, plots, and the model itself."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from training.attempts import SOURCE_FILE
from training.tracking.pyfunc import log_router_model
from training.tracking.registry import Registry
from training.tracking.run_owner import owner_tags
from training.tracking.store import DEFAULT_EXPERIMENT, activate, use_experiment
from training.train import TrainResult

MODEL_NAME_IN_RUN = "router"


@dataclass(frozen=True)
class TrackedRun:
    """Where a training run went: its MLflow run, and the registered version and alias if it was registered."""

    run_id: str
    model_uri: str
    version: str | None = None
    alias: str | None = None


def run_params(result: TrainResult) -> dict[str, Any]:
    """Everything that decides the model: encoder, head and its hyper-parameters, tiers and prices, rule, seed."""
    manifest = result.manifest
    params: dict[str, Any] = {k: v for k, v in result.params.items() if k != "tiers"}
    params["tiers"] = ",".join(result.params["tiers"])
    for tier in manifest.tier_ladder.tiers:
        params[f"price_{tier.name}_in_usd_per_mtok"] = tier.input_usd_per_mtok
        params[f"price_{tier.name}_out_usd_per_mtok"] = tier.output_usd_per_mtok
    params["policy_rule"] = manifest.policy.rule
    params["policy_threshold"] = round(manifest.policy.threshold, 6)
    params["policy_chosen_by"] = manifest.policy.chosen_by[:500]
    params["encoder_name"] = manifest.encoder.name
    return params


def version_tags(result: TrainResult) -> dict[str, str]:
    """What a registered version carries: data fingerprint and size, encoder, bundle version, every metric."""
    manifest = result.manifest
    requests = manifest.data["requests"]
    tags = {
        "data_fingerprint": manifest.data["fingerprint"],
        "data_files": ",".join(Path(entry["path"]).name for entry in manifest.data["files"]),
        "train_requests": str(requests["train"]),
        "test_requests": str(requests["test"]),
        "encoder": manifest.encoder.name,
        "bundle_version": manifest.version,
    }
    return tags | {f"metric.{key}": f"{value:.6g}" for key, value in manifest.metrics.items()}


def _log_datasets(result: TrainResult) -> None:
    """One MLflow dataset input per log file, with its content hash as the digest (lineage)."""
    import mlflow

    digests = {entry["path"]: entry["sha256"] for entry in result.manifest.data["files"]}
    frame = result.log.frame
    for path, digest in digests.items():
        rows = frame.filter(pl.col(SOURCE_FILE) == path).select("request_id", "model", "success")
        dataset = mlflow.data.from_pandas(rows.to_pandas(), source=path, name=Path(path).name, digest=digest[:16])
        mlflow.log_input(dataset, context="training", tags={"sha256": digest})


def _log_evaluation(result: TrainResult, out: Path) -> None:
    """The evaluation JSON, the cost-quality chart and the per-tier calibration plot of the held-out rows."""
    import mlflow

    from training.evaluation.plot import plot_calibration, plot_report

    if result.evaluation is None:
        return
    plot_report(result.evaluation, out / "cost_quality.png")
    plot_calibration(result.evaluation, out / "calibration.png")
    (out / "evaluation.json").write_text(json.dumps(result.evaluation.to_json(), indent=2))
    mlflow.log_artifacts(str(out), artifact_path="evaluation")


def log_training_run(
    result: TrainResult,
    registry: Registry,
    register: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    tags: dict[str, str] | None = None,
) -> TrackedRun:
    """Record a finished training run; with `register`, add the model as a new version of that name.

    A newly registered version becomes `champion` when the model has none yet, else `challenger` (one
    compare-and-set, so two registrations at once never both claim champion). `tags` are added to the run's
    own, and so are its owner's pid and host, so a later command can end the run if this one is killed.
    """
    import mlflow

    activate(registry.uri)
    use_experiment(experiment, registry.uri)
    manifest = result.manifest
    with mlflow.start_run(run_name=f"train-{manifest.version}", tags=owner_tags()) as run:
        mlflow.log_params(run_params(result))
        mlflow.set_tags(
            {"tierwise.data_fingerprint": manifest.data["fingerprint"], "tierwise.bundle": manifest.version}
            | (tags or {})
        )
        _log_datasets(result)
        mlflow.log_metrics({k: float(v) for k, v in manifest.metrics.items()})
        with tempfile.TemporaryDirectory() as tmp:
            _log_evaluation(result, Path(tmp))
        info = log_router_model(MODEL_NAME_IN_RUN, result.bundle_dir, manifest.tier_ladder)
    if register is None:
        return TrackedRun(run.info.run_id, info.model_uri)
    version = registry.register(register, info.model_uri, run.info.run_id, info.model_id, version_tags(result))
    alias = registry.claim(register, version)
    return TrackedRun(run.info.run_id, info.model_uri, version, alias)
