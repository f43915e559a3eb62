"""Recording runs in MLflow so a person can read them: training runs (params, data lineage, held-out metrics,
plots, the model) and comparison runs (several versions measured on the same rows).

Names: a training run is `<log file stem> · <encoder>`, renamed `<model name> v<N> · <encoder> · <requests> req`
once registered; a comparison run says what it compared. A registered version's tags are its identity only
(data fingerprint, files, encoder, bundle); its metrics stay on its run, and decisions about it (the retrain
gate, a refusal to make it champion) go in its description.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from tierwise.training.attempts import SOURCE_FILE
from tierwise.training.logs import STREAMING
from tierwise.training.tracking.promotion import fitness_problems
from tierwise.training.tracking.pyfunc import log_router_model
from tierwise.training.tracking.registry import CHALLENGER, Registry
from tierwise.training.tracking.run_owner import owner_tags
from tierwise.training.tracking.store import DEFAULT_EXPERIMENT, activate, use_experiment
from tierwise.training.train import TrainResult

MODEL_NAME_IN_RUN = "router"
REFUSED_TAG = "champion_refused"


@dataclass(frozen=True)
class TrackedRun:
    """Where a training run went: its MLflow run, and the registered version and alias if it was registered.

    `refused` lists why the version may not be champion (empty when nothing speaks against it).
    """

    run_id: str
    model_uri: str
    version: str | None = None
    alias: str | None = None
    refused: list[str] = field(default_factory=list)


def requests_in(result: TrainResult) -> int:
    """How many labelled requests the run's logs hold (training and held-out)."""
    counts = result.manifest.data["requests"]
    return int(counts["train"] + counts["test"])


def run_name(result: TrainResult, model: str | None = None, version: str | None = None) -> str:
    """`<model> v<N> · <encoder> · <requests> req` for a registered version, else `<log file stem> · <encoder>`."""
    encoder = result.options.encoder
    if model is not None:
        return f"{model} v{version} · {encoder} · {requests_in(result)} req"
    files = result.log.files
    more = f" +{len(files) - 1}" if len(files) > 1 else ""
    return f"{Path(files[0]).stem}{more} · {encoder}"


def run_params(result: TrainResult) -> dict[str, Any]:
    """Everything that decides the model: encoder, head and its hyper-parameters, tiers and prices, rule, seed,
    and how many requests it learned from and was tested on."""
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
    params["train_requests"] = manifest.data["requests"]["train"]
    params["test_requests"] = manifest.data["requests"]["test"]
    if result.dropped_tiers:
        params["dropped_tiers"] = ",".join(result.dropped_tiers)
    return params


def version_tags(result: TrainResult) -> dict[str, str]:
    """A registered version's identity: data fingerprint and files, encoder, bundle version."""
    manifest = result.manifest
    return {
        "data_fingerprint": manifest.data["fingerprint"],
        "data_files": ",".join(Path(entry["path"]).name for entry in manifest.data["files"]),
        "encoder": manifest.encoder.name,
        "bundle_version": manifest.version,
    }


def _log_datasets(result: TrainResult) -> None:
    """One MLflow dataset input per log file, with its content hash as the digest (lineage)."""
    import mlflow

    digests = {entry["path"]: entry["sha256"] for entry in result.manifest.data["files"]}
    for path, digest in digests.items():
        rows = result.log.attempts.filter(pl.col(SOURCE_FILE) == path).select("request_id", "model", "success")
        dataset = mlflow.data.from_polars(
            rows.collect(engine=STREAMING), source=path, name=Path(path).name, digest=digest[:16]
        )
        mlflow.log_input(dataset, context="training", tags={"sha256": digest})


def _log_evaluation(result: TrainResult, out: Path) -> None:
    """The evaluation JSON, the cost-quality chart and the per-tier calibration plot of the held-out rows, at the
    run's artifact root (so the UI's run comparison shows the charts of several runs side by side)."""
    import mlflow
    from tierwise.training.evaluation.plot import plot_calibration, plot_report

    if result.evaluation is None:
        return
    plot_report(result.evaluation, out / "cost_quality.png")
    plot_calibration(result.evaluation, out / "calibration.png")
    (out / "evaluation.json").write_text(json.dumps(result.evaluation.to_json(), indent=2))
    mlflow.log_artifacts(str(out))


def describe_version(registry: Registry, name: str, version: str, text: str) -> None:
    """Write a registered version's description (what was decided about it, and why)."""
    registry.client.update_model_version(name, version, description=text)


def log_training_run(
    result: TrainResult,
    registry: Registry,
    register: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    tags: dict[str, str] | None = None,
) -> TrackedRun:
    """Record a finished training run; with `register`, add the model as a new version of that name.

    A newly registered version becomes `champion` when the model has none yet and nothing speaks against it
    (`promotion.fitness_problems`), else `challenger` (one compare-and-set, so two registrations at once never
    both claim champion); a refusal is tagged and described on the version. `tags` are added to the run's own,
    and so are its owner's pid and host, so a later command can end the run if this one is killed.
    """
    import mlflow

    activate(registry.uri)
    use_experiment(experiment, registry.uri)
    manifest = result.manifest
    with mlflow.start_run(run_name=run_name(result), tags=owner_tags()) as run:
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
    registry.client.update_run(run.info.run_id, name=run_name(result, register, version))
    refused = fitness_problems(result.evaluation, manifest.policy)
    if refused:
        registry.set_alias(register, CHALLENGER, version)
        registry.client.set_model_version_tag(register, version, REFUSED_TAG, "; ".join(refused))
        describe_version(registry, register, version, "Not made champion: " + "; ".join(refused) + ".")
    alias = CHALLENGER if refused else registry.claim(register, version)
    return TrackedRun(run.info.run_id, info.model_uri, version, alias, refused)


def log_comparison_run(
    registry: Registry, experiment: str, name: str, metrics: dict[str, float], tags: dict[str, str]
) -> str:
    """A run holding like-for-like numbers of several versions (`v<N>/<metric>`, `difference/<metric>`); its id."""
    import mlflow

    activate(registry.uri)
    use_experiment(experiment, registry.uri)
    with mlflow.start_run(run_name=name, tags=owner_tags()) as run:
        mlflow.set_tags({"tierwise.comparison": "true"} | tags)
        mlflow.log_metrics(metrics)
    return run.info.run_id
