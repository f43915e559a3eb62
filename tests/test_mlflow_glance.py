"""Comparing versions in MLflow at a glance (issue 25), on a real SQLite store: two trains of logs that share a file
name, a retrain and a compare. Descriptions hold the headline and agree with the numbers; the training runs' view
holds no comparison metric; a run lasts as long as its work; datasets say where they are; "never" reads the same
in every view; and only `promotion` moves aliases."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from tierwise.registry.models import Registry
from tierwise.training.data.sample_logs import write_sample_logs
from tierwise.training.evaluation.report import build_report
from tierwise.training.evaluation.summary import flat_headline
from tierwise.training.tracking.headline import COST_AT_TOP, GAIN, REACHED, headline_cell, run_metrics
from tierwise.training.tracking.promotion import describe
from tierwise.training.tracking.run_logging import NOTE_TAG

from tierwise.cli import main

NAME = "glance"
EXPERIMENT = "glance"
ROOT = Path(__file__).resolve().parents[1]
INSIDE_TOTAL = {f"time_{stage}_s" for stage in ("label", "embed", "fit", "export")}  # parts of time_total_s


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """v1 trained on east/attempts.jsonl, v2 on west/attempts.jsonl (another rule), v3 retrained on both, and a
    compare of all three on west's rows, in a store of their own."""
    work = tmp_path_factory.mktemp("glance")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    east, west = write_sample_logs(work / "east", 400, seed=5), write_sample_logs(work / "west", 500, seed=6)
    common = ["--tracking-uri", uri, "--experiment", EXPERIMENT]
    outputs = {
        "v1": cli("train", str(east), "--out", str(work / "b1"), "--register", NAME, *common),
        "v2": cli(
            "train", str(west), "--out", str(work / "b2"), "--register", NAME, "--threshold-rule", "absolute", *common
        ),
        "retrain": cli("retrain", NAME, str(east), str(west), *common),
        "compare": cli("compare", NAME, "--logs", str(west), *common),
    }
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return {"uri": uri, "client": client, "outputs": outputs, "east": east, "west": west}


def runs_of(client: MlflowClient, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def table_cell(text: str, row: str) -> str:
    """The first cell of a row of a markdown headline table."""
    found = re.search(rf"^\| {re.escape(row)} \| ([^|]*) \|", text, re.MULTILINE)
    assert found, text
    return found.group(1)


def test_each_version_describes_why_it_holds_its_alias_and_its_headline_true_to_its_run(store):
    client = store["client"]
    aliases = client.get_registered_model(NAME).aliases
    for number in ("1", "2", "3"):
        version = client.get_model_version(NAME, number)
        run = client.get_run(version.run_id)
        metrics, params = run.data.metrics, run.data.params
        # the decision first, then exactly the run's own description (its headline table)
        assert version.description.endswith(run.data.tags[NOTE_TAG])
        assert table_cell(version.description, "gain over the static mix").startswith(f"{metrics[GAIN]:+.2f} pp [")
        lo, hi = metrics[f"{GAIN}_lo"], metrics[f"{GAIN}_hi"]
        assert f"[{lo:+.2f}, {hi:+.2f}]" in table_cell(version.description, "gain over the static mix")
        assert table_cell(version.description, "cost at top quality") == headline_cell(metrics, COST_AT_TOP)
        rule = f"{params['policy_rule']}, {params['policy_threshold']}"
        assert table_cell(version.description, "rule, threshold") == rule
        assert table_cell(version.description, "guarantee").startswith("none")
        assert "attempts.jsonl" in table_cell(version.description, "data")
    model = client.get_registered_model(NAME).description  # the model page: who holds each alias, and why
    assert f"- **@champion: v{aliases['champion']}**: champion" in model
    assert f"- **@challenger: v{aliases['challenger']}**: " in model
    champion = client.get_model_version(NAME, str(aliases["champion"]))
    assert champion.description.startswith("champion")  # and says why
    assert re.match(
        r"champion: the first version of glance fit to serve|champion \(replacing v1\)",
        champion.description,
    )
    decision = re.search(r"^decision: (v3 .*)$", store["outputs"]["retrain"], re.MULTILINE).group(1)
    assert decision.split(": ", 1)[1] in client.get_model_version(NAME, "3").description  # what retrain printed


def test_the_training_runs_view_holds_no_comparison_metric(store):
    client = store["client"]
    training = runs_of(client, EXPERIMENT)
    assert sorted(run.info.run_name for run in training) == [
        f"{NAME} v{n} · static · {k} req" for n, k in ((1, 400), (2, 500), (3, 900))
    ]
    for run in training:
        assert not [key for key in run.data.metrics if "/" in key]  # no group of charts but the training run's
        headline = [GAIN, f"{GAIN}_hi", f"{GAIN}_lo", COST_AT_TOP, f"{COST_AT_TOP}_hi", f"{COST_AT_TOP}_lo", REACHED]
        assert sorted(run.data.metrics)[:7] == headline  # first, each interval end beside its metric
    comparisons = runs_of(client, f"{EXPERIMENT}-comparisons")
    assert sorted(run.info.run_name.split(" · ")[0] for run in comparisons) == [f"compare {NAME}", f"retrain {NAME}"]
    for run in comparisons:
        assert all(re.match(r"v\d+(-v\d+)?/|promoted$|time_", key) for key in run.data.metrics), run.data.metrics
        assert run.data.tags[NOTE_TAG].startswith("**") and "| gain over the static mix |" in run.data.tags[NOTE_TAG]
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"cost_quality.png"}


def test_a_run_lasts_as_long_as_its_work(store):
    for run in runs_of(store["client"], EXPERIMENT) + runs_of(store["client"], f"{EXPERIMENT}-comparisons"):
        lasted = (run.info.end_time - run.info.start_time) / 1000
        stages = {key: value for key, value in run.data.metrics.items() if key.startswith("time_")}
        assert stages, run.info.run_name
        work = sum(value for key, value in stages.items() if key not in INSIDE_TOTAL)
        assert lasted >= work > 0, (run.info.run_name, lasted, stages)


def test_two_logs_of_the_same_file_name_are_told_apart(store):
    client, east, west = store["client"], store["east"], store["west"]
    assert east.name == west.name
    names = {
        f"v{n}": [
            d.dataset.name for d in client.get_run(client.get_model_version(NAME, n).run_id).inputs.dataset_inputs
        ]
        for n in ("1", "2", "3")
    }
    assert names == {
        "v1": ["east/attempts.jsonl"],
        "v2": ["west/attempts.jsonl"],
        "v3": ["east/attempts.jsonl", "west/attempts.jsonl"],
    }
    assert client.get_model_version(NAME, "3").tags["data_files"] == "east/attempts.jsonl,west/attempts.jsonl"


def test_logged_models_carry_the_registered_name_and_encoders_one_name(store):
    client = store["client"]
    for number in ("1", "2", "3"):
        version = client.get_model_version(NAME, number)
        assert client.get_logged_model(version.source.removeprefix("models:/")).name == NAME
        assert version.tags["encoder"] == client.get_run(version.run_id).data.params["encoder"] == "static"


def test_compare_prints_the_rule_and_threshold_of_each_version(store):
    output = store["outputs"]["compare"]
    params = [store["client"].get_run(store["client"].get_model_version(NAME, n).run_id).data.params for n in "123"]
    assert re.search(r"^rule\s+" + r"\s+".join(p["policy_rule"] for p in params) + "$", output, re.MULTILINE)
    assert re.search(r"^threshold\s+" + r"\s+".join(p["policy_threshold"] for p in params) + "$", output, re.MULTILINE)


def stuck_router_metrics() -> dict[str, float]:
    """A router that never leaves the cheap tier, so it never reaches top quality: its run metrics."""
    rng = np.random.default_rng(0)
    draw = rng.random(400)
    success = np.column_stack([draw < 0.3, draw < 0.8]).astype(float)
    report = build_report(["cheap", "dear"], success, np.tile([1.0, 4.0], (400, 1)), np.ones_like(success), 0.5)
    flat = flat_headline(report)
    assert "cost_at_top_quality" not in flat
    return run_metrics(flat, flat)


def test_never_reads_the_same_in_every_view(store, tmp_path):
    uri, client = store["uri"], store["client"]
    metrics = stuck_router_metrics()
    assert metrics[REACHED] == 0.0 and not any(key.startswith(COST_AT_TOP) for key in metrics)
    run = client.create_run(client.create_experiment("never"), run_name="never v1")
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.log_param(run.info.run_id, "policy_rule", "absolute")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("never-test")
    client.create_model_version("never-test", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    describe(Registry(uri), "never-test", "1", "challenger")
    described = table_cell(client.get_model_version("never-test", "1").description, "cost at top quality")
    printed = re.search(
        r"^cost at top quality, %\s+(.+?)\s*$", cli("compare", "never-test", "--tracking-uri", uri), re.MULTILINE
    )
    assert described == printed.group(1) == "never [never, never]"
    # every reached version says so by the same metric, next to its numbers
    assert all(run.data.metrics[REACHED] == 1.0 for run in runs_of(client, EXPERIMENT))


def test_only_promotion_moves_aliases_and_only_the_registry_touches_its_client():
    """Logging logs; promotion decides and sets aliases; nothing outside registry.py reaches into its client."""
    moves = {"claim", "set_alias", "promote", "tag_version"}
    for folder in ("registry", "training", "serving", "tierwise", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            source = path.read_text()
            if relative != "registry/models.py":
                assert not re.search(r"registry\.client\b|Registry\([^)]*\)\.client\b", source), relative
            if relative in ("registry/models.py", "training/tracking/promotion.py"):
                continue
            called = {
                n.func.attr
                for n in ast.walk(ast.parse(source))
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            }
            assert not called & moves, (relative, called & moves)
    logging_module = (ROOT / "training/tracking/run_logging.py").read_text()
    assert "fitness" not in logging_module and "CHAMPION" not in logging_module
