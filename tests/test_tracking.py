"""MLflow tracking and registry on a real SQLite store: runs, registered versions, pyfunc, compare, promote."""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from tierwise.classifier.errors import InputError
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.router import Router
from tierwise.registry.models import Registry
from tierwise.registry.sources import open_model_source
from tierwise.registry.store import activate, tracking_uri
from tierwise.training.data.sample_logs import write_sample_logs
from tierwise.training.tracking.pyfunc import CODE_PACKAGE, MODEL_CODE, RUNTIME_DISTRIBUTIONS, pip_requirements

from tierwise.cli import main

NAME = "tracking-test"
PROMPTS = ["Say hello to the team.", "Prove that the square root of 2 is irrational, step by step.", ""]


def train(logs: Path, out: Path, *extra: str) -> str:
    result = CliRunner().invoke(main, ["train", str(logs), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def client(mlflow_store) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)


@pytest.fixture(scope="module")
def second_logs(tmp_path_factory) -> Path:
    return write_sample_logs(tmp_path_factory.mktemp("second-logs"), 400, seed=21)


@pytest.fixture(scope="module")
def registered(tmp_path_factory, sample_logs, second_logs) -> list[dict]:
    """`tierwise train --register` twice, on different logs: what each printed and where its bundle is."""
    work = tmp_path_factory.mktemp("registered")
    runs = []
    for k, logs in enumerate((sample_logs, second_logs), start=1):
        output = train(logs, work / f"b{k}", "--register", NAME)
        run_id = re.search(r"mlflow run (\w+)", output).group(1)
        runs.append({"output": output, "run_id": run_id, "bundle": work / f"b{k}", "logs": logs})
    return runs


def test_train_and_register_twice_gives_a_champion_then_a_challenger(registered, client):
    assert "registered tracking-test version 1 as champion" in registered[0]["output"]
    assert "registered tracking-test version 2 as challenger" in registered[1]["output"]
    assert client.get_registered_model(NAME).aliases == {"champion": 1, "challenger": 2}
    for number, run in enumerate(registered, start=1):
        version = client.get_model_version(NAME, str(number))
        manifest = Router.load(run["bundle"]).manifest
        assert version.run_id == run["run_id"]
        assert version.tags["data_fingerprint"] == manifest.data["fingerprint"]
        assert version.tags["bundle_version"] == manifest.version
        assert version.tags["encoder"] == manifest.encoder.kind == "static"  # one name, as --encoder takes it
        # tags say what the version is; its numbers stay on its run
        assert set(version.tags) == {"data_fingerprint", "data_files", "encoder", "bundle_version"}
        assert client.get_run(version.run_id).data.metrics["apgr"] == pytest.approx(manifest.metrics["apgr"])
        requests = manifest.data["requests"]["train"] + manifest.data["requests"]["test"]
        assert client.get_run(version.run_id).info.run_name == f"{NAME} v{number} · static · {requests} req"
    tags = [client.get_model_version(NAME, n).tags["data_fingerprint"] for n in ("1", "2")]
    assert tags[0] != tags[1]


def test_a_training_run_records_params_lineage_metrics_and_artifacts(registered, client, tmp_path):
    run_info = registered[0]
    run = client.get_run(run_info["run_id"])
    manifest = Router.load(run_info["bundle"]).manifest
    params = run.data.params
    assert params["encoder"] == "static" and params["seed"] == "0" and params["threshold_rule"] == "auto"
    assert params["tiers"] == "haiku,sonnet,opus"
    assert float(params["price_opus_out_usd_per_mtok"]) == 25.0
    assert float(params["policy_threshold"]) == pytest.approx(manifest.policy.threshold, abs=5e-5)
    assert params["encoder"] == "static" and "encoder_name" not in params

    metrics = run.data.metrics
    expected = {"apgr", "cost_ratio", "quality_ratio", "exact_tier_accuracy", "under_routing_rate"}
    expected |= {"over_routing_rate", "latency_p50_us", "latency_p99_us", "static_mix_apgr", "random_apgr"}
    expected |= {"max_gain_over_static", "headroom_captured", "1_gain_over_static_pp", "2_cost_at_top_quality_reached"}
    expected |= {f"1_gain_over_static_pp_{end}" for end in ("lo", "hi")}
    expected |= {f"{key}_ci_{end}" for key in ("apgr", "cost_ratio_at_95") for end in ("lo", "hi")}
    expected |= {f"time_{stage}_s" for stage in ("label", "embed", "fit", "export", "total", "record")}
    expected |= {f"{kind}_{tier}" for kind in ("ece", "accuracy") for tier in ("haiku", "sonnet", "opus")}
    assert expected <= set(metrics)
    assert metrics["apgr"] == pytest.approx(manifest.metrics["apgr"])
    assert metrics["1_gain_over_static_pp"] == round(100 * manifest.metrics["gain_over_static"], 2)
    assert not {"gain_over_static", "cost_at_top_quality", "cost_ratio_at_100"} & set(metrics)  # restated once

    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == f"{run_info['logs'].parent.name}/{run_info['logs'].name}"
    assert dataset.dataset.digest == hashlib.sha256(run_info["logs"].read_bytes()).hexdigest()[:16]
    assert run.data.tags["tierwise.data_fingerprint"] == manifest.data["fingerprint"]

    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"cost_quality.png", "calibration.png"}
    local = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path)))
    for plot in ("cost_quality.png", "calibration.png"):
        assert (local / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    evaluation = json.loads((local / "evaluation.json").read_text())
    assert evaluation["apgr"] == pytest.approx(metrics["apgr"])


def test_every_train_is_a_run_even_without_register(sample_logs, client, tmp_path):
    experiment = client.get_experiment_by_name("tierwise").experiment_id
    before = len(client.search_runs([experiment]))
    output = train(sample_logs, tmp_path / "b", "--experiment", "tierwise")
    assert "registered" not in output
    run_id = re.search(r"mlflow run (\w+)", output).group(1)
    assert len(client.search_runs([experiment])) == before + 1
    assert client.get_run(run_id).data.metrics["apgr"] > 0
    assert client.get_run(run_id).info.run_name == f"{sample_logs.stem} · static"


def test_pyfunc_routes_like_the_bundle(registered, mlflow_store):
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    router = Router.load(registered[0]["bundle"])
    frame = model.predict(pd.DataFrame({"prompt": PROMPTS}))
    expected = router.predict_batch(PROMPTS)
    assert frame["tier"].tolist() == [p.tier for p in expected]
    assert frame["model"].tolist() == [p.model for p in expected]
    assert frame["fallback_chain"].tolist() == [">".join(p.fallback_chain) for p in expected]
    for tier in router.ladder.names:
        assert frame[f"p_{tier}"].tolist() == pytest.approx([p.probabilities[tier] for p in expected], abs=1e-6)
    strict = model.predict(pd.DataFrame({"prompt": PROMPTS}), params={"quality_target": 1.0})
    assert strict["tier"].tolist() == [p.tier for p in router.predict_batch(PROMPTS, RouteOptions(quality_target=1.0))]


def test_pyfunc_needs_only_its_pinned_requirements(registered, tmp_path):
    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1", dst_path=str(tmp_path)))
    assert (model_dir / "requirements.txt").read_text().split() == pip_requirements()
    bundles = [p.parent.name for p in (model_dir / "artifacts").glob("*/manifest.json")]
    assert bundles == [registered[0]["bundle"].name]
    # Every third-party import of the model code and of the classifier package it carries is a requirement.
    sources = [MODEL_CODE, *(model_dir / "code" / CODE_PACKAGE).glob("*.py")]
    imported = set()
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    assert "tierwise" not in imported, "the stored runtime must run without tierwise installed"
    owners = importlib.metadata.packages_distributions()
    third_party = {name for name in imported if name in owners and name != CODE_PACKAGE}
    assert third_party == {"mlflow", "pandas", "numpy", "onnxruntime", "tokenizers"}
    assert all(set(owners[name]) & set(RUNTIME_DISTRIBUTIONS) for name in third_party)
    # Loaded in a fresh interpreter, it routes without the training stack (beyond what MLflow loads) or tierwise.
    script = (
        "import sys, mlflow.pyfunc, pandas as pd\n"
        "before = set(sys.modules)\n"
        f"m = mlflow.pyfunc.load_model({str(model_dir)!r})\n"
        "print(m.predict(pd.DataFrame({'prompt': ['hello']}))['tier'][0])\n"
        "print(sorted({n.split('.')[0] for n in set(sys.modules) - before} & "
        "{'torch', 'sklearn', 'sentence_transformers', 'polars', 'tierwise'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    tier, heavy = done.stdout.split("\n")[-3:-1]
    assert tier in ("haiku", "sonnet", "opus") and heavy == "[]"


def test_registry_uris_resolve_to_the_registered_bundles(registered, mlflow_store):
    def resolved(spec: str) -> Router:
        return Router.load(open_model_source(spec, mlflow_store).resolve().path)

    assert resolved(f"models:/{NAME}@champion").version == Router.load(registered[0]["bundle"]).version
    assert resolved(f"models:/{NAME}/2").version == Router.load(registered[1]["bundle"]).version
    for bad, message in [
        (f"models:/{NAME}@nope", "nope"),
        (f"models:/{NAME}/99", "99"),
        ("models:/no-such-model@champion", "no-such-model"),
        (f"models:/{NAME}", "expected models:/NAME@ALIAS"),
    ]:
        with pytest.raises(InputError, match=message):
            resolved(bad)


def test_predict_accepts_a_registry_uri(registered):
    result = CliRunner().invoke(main, ["predict", "--model", f"models:/{NAME}/2", "Say hi."])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["model_version"] == Router.load(registered[1]["bundle"]).version


def test_eval_accepts_a_registry_uri(registered, sample_logs):
    result = CliRunner().invoke(main, ["eval", "--model", f"models:/{NAME}@challenger", str(sample_logs)])
    assert result.exit_code == 0, result.output
    assert f"models:/{NAME}@challenger (version {Router.load(registered[1]['bundle']).version}" in result.output


def compare(*args: str) -> str:
    result = CliRunner().invoke(main, ["compare", NAME, *args])
    assert result.exit_code == 0, result.output
    return result.output


def row(output: str, title: str) -> list[str]:
    """The cells of one row of the comparison table (a metric's cell is its value, its interval dropped)."""
    (line,) = [line for line in output.splitlines() if line.startswith(title + " ")]
    return re.sub(r" \[[^]]*\]", "", line[len(title) :]).split()


def test_compare_shows_versions_side_by_side(registered, client):
    output = compare()
    assert row(output, "version") == ["v1", "v2"]
    assert row(output, "aliases") == ["champion", "challenger"]
    fingerprints = [client.get_model_version(NAME, n).tags["data_fingerprint"] for n in ("1", "2")]
    assert row(output, "data") == fingerprints
    runs = [client.get_run(client.get_model_version(NAME, n).run_id) for n in ("1", "2")]
    recorded = [run.data.metrics["apgr"] for run in runs]
    assert [float(v) for v in row(output, "apgr")] == pytest.approx(recorded, abs=6e-4)
    lo, hi = runs[0].data.metrics["apgr_ci_lo"], runs[0].data.metrics["apgr_ci_hi"]
    assert re.search(rf"^apgr\s+\d\.\d{{3}} \[{lo:.3f}, {hi:.3f}\]", output, re.MULTILINE)
    assert row(output, "train requests") == [run.data.params["train_requests"] for run in runs]
    # the rule and threshold each version routes by, and the headline in the units MLflow shows
    assert row(output, "rule") == [run.data.params["policy_rule"] for run in runs]
    assert row(output, "threshold") == [run.data.params["policy_threshold"] for run in runs]
    gains = [f"{run.data.metrics['1_gain_over_static_pp']:+.2f}" for run in runs]
    assert row(output, "gain over static, pp") == gains


def test_compare_reevaluates_every_version_on_the_same_logs(registered, second_logs, client):
    from tierwise.training.evaluation.evaluate import evaluate_router

    from tests.helpers import label_files

    output = compare("--versions", "1", "2", "--logs", str(second_logs))
    assert "re-evaluated on test rows of" in output
    _, labels = label_files([second_logs])
    reports = [evaluate_router(Router.load(run["bundle"]), labels.frame).to_json() for run in registered]
    for k, report in enumerate(reports):
        assert float(row(output, "apgr")[k]) == pytest.approx(report["apgr"], abs=6e-4)
    again = compare("--versions", "1", "--versions", "2", "--logs", str(second_logs))
    assert again.splitlines()[:-1] == output.splitlines()[:-1]
    # the like-for-like numbers are a comparison run
    run = client.get_run(re.search(r"mlflow comparison run (\w+)", output).group(1))
    assert run.info.run_name == f"compare {NAME} · v1, v2 · {reports[0]['evaluated']} req"
    assert client.get_experiment(run.info.experiment_id).name == "tierwise-comparisons"
    for k, report in enumerate(reports, start=1):
        assert run.data.metrics[f"v{k}/apgr"] == pytest.approx(report["apgr"])
        lo = run.data.metrics[f"v{k}/1_gain_over_static_pp_lo"]
        assert lo == round(100 * report["gain_over_static_ci"][0], 2)
        assert f"v{k}" in run.data.tags["mlflow.note.content"]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"cost_quality.png"}
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == [f"{second_logs.parent.name}/{second_logs.name}"]


def test_compare_versions_takes_several_values_after_one_flag(registered):
    assert row(compare("--versions", "2"), "version") == ["v2"]
    assert row(compare("--versions", "2", "1"), "version") == ["v2", "v1"]
    result = CliRunner().invoke(main, ["compare", NAME, "--versions", "1", "7"])
    assert result.exit_code == 2 and "7" in result.output and "Traceback" not in result.output


def test_promote_moves_the_champion(registered, client):
    try:
        result = CliRunner().invoke(main, ["promote", NAME, "2"])
        assert result.exit_code == 0, result.output
        assert "champion is now version 2 (was 1)" in result.output
        assert client.get_registered_model(NAME).aliases == {"champion": 2}
        assert row(compare(), "aliases") == ["-", "champion"]
        missing = CliRunner().invoke(main, ["promote", NAME, "9"])
        assert missing.exit_code == 2 and "9" in missing.output
    finally:
        client.set_registered_model_alias(NAME, "champion", "1")
        client.set_registered_model_alias(NAME, "challenger", "2")


def test_an_explicit_store_does_not_become_the_next_default(tmp_path, mlflow_store):
    other = f"sqlite:///{tmp_path / 'other.db'}"
    activate(other)
    try:
        assert mlflow.get_tracking_uri() == other
        assert tracking_uri() == mlflow_store  # MLflow exports the URI it is given; tierwise puts the old one back
    finally:
        activate(mlflow_store)


def test_reading_the_registry_leaves_mlflow_global_uri_alone(registered, tmp_path, mlflow_store):
    activate(mlflow_store)
    elsewhere = Registry(f"sqlite:///{tmp_path / 'elsewhere.db'}", create=True)
    assert elsewhere.alias_version(NAME, "champion") is None
    assert mlflow.get_tracking_uri() == mlflow_store
