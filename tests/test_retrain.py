"""Gated retraining on a real SQLite registry: the first version becomes champion, a better challenger is
promoted, and one trained on shuffled labels is refused and left as challenger."""

from __future__ import annotations

import re

import polars as pl
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from tierwise.training.data.sample_logs import write_sample_logs
from tierwise.training.evaluation.bootstrap import Interval
from tierwise.training.tracking.promotion import COST_TOLERANCE, QUALITY_TOLERANCE, PairedDifference, gate, gate_rule

from tests.helpers import gated_retrains, shuffled_labels
from tests.readme_outputs import README, REGENERATE, pyfunc_predictions, quoted
from tierwise.cli import main

NAME = "retrain-test"


@pytest.fixture(scope="module")
def rounds(tmp_path_factory, mlflow_store) -> dict[str, str]:
    """Three retrains in a row: shuffled on an empty registry, then the last 20 days of true logs, then shuffled."""
    return gated_retrains(tmp_path_factory.mktemp("retrain"), NAME, mlflow_store)


def decision_rows(output: str) -> dict[str, tuple[float, float]]:
    """role -> (quality, cost per request) from the printed table."""
    rows = {}
    for role in ("challenger", "champion"):
        found = re.search(rf"^{role}\s+\d+\s+([\d.]+)\s+([\d.]+)", output, re.MULTILINE)
        if found:
            rows[role] = (float(found.group(1)), float(found.group(2)))
    return rows


def difference(output: str) -> dict[str, tuple[float, float, float]]:
    """The printed paired difference: name -> (value, lo, hi), as fractions."""
    points, percent = r"([+-]\d+\.\d{2})", r"([+-]\d+\.\d)%"
    found = re.search(
        rf"challenger - champion on \d+ requests: quality {points} pp \[{points}, {points}\], "
        rf"cost {percent} \[{percent}, {percent}\]$",
        output,
        re.MULTILINE,
    )
    assert found, output
    values = [float(v) / 100 for v in found.groups()]
    return {"quality": tuple(values[:3]), "cost": tuple(values[3:])}


def test_on_an_empty_registry_the_first_version_becomes_champion(rounds, mlflow_store):
    assert "decision: v1 PROMOTED to champion: the registry had no champion yet" in rounds["first"]
    assert "champion" not in decision_rows(rounds["first"])


def test_a_better_challenger_is_promoted_with_both_rows_and_the_paired_difference(rounds, mlflow_store):
    output = rounds["better"]
    assert re.search(r"window: \d+ of \d+ requests last tried within 20 days", output)
    assert "decision: v2 PROMOTED to champion" in output
    assert f"gate: {gate_rule()}" in output and "quality difference > -1.00 pp" in output
    rows, paired = decision_rows(output), difference(output)
    assert paired["quality"][0] == pytest.approx(rows["challenger"][0] - rows["champion"][0], abs=1.1e-4)
    # better, surely, at no more cost (the printed bound is rounded to 0.1%: the gate held it below the tolerance)
    assert paired["quality"][1] > 0 and paired["cost"][2] <= COST_TOLERANCE
    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    windowed = client.get_model_version(NAME, "2")
    first = client.get_model_version(NAME, "1")
    trained = [int(client.get_run(v.run_id).data.params["train_requests"]) for v in (windowed, first)]
    assert trained[0] < trained[1]
    assert client.get_run(windowed.run_id).data.tags["tierwise.window_days"] == "20"
    assert (
        windowed.description.startswith("champion (replacing v1): promoted by `tierwise retrain` on ")
        and "against v1: better on quality" in windowed.description.split("\n")[0]
    )
    assert client.get_model_version(NAME, "1").description.startswith("no longer champion: v2 replaced it")
    assert set(windowed.tags) == {"data_fingerprint", "data_files", "encoder", "bundle_version"}


def test_a_challenger_trained_on_shuffled_labels_is_refused_and_stays_challenger(rounds, mlflow_store):
    output = rounds["worse"]
    assert "decision: v3 kept as challenger: lower quality than the champion" in output
    assert difference(output)["quality"][2] < 0  # the whole interval below the champion
    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    assert client.get_registered_model(NAME).aliases == {"champion": 2, "challenger": 3}
    refused = client.get_model_version(NAME, "3")
    assert refused.description.startswith("kept as challenger by `tierwise retrain` on ")
    assert "against v2: lower quality than the champion: quality -" in refused.description


def test_every_retrain_logs_its_like_for_like_numbers_as_a_comparison_run(rounds, mlflow_store):
    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    experiment = client.get_experiment_by_name("tierwise-comparisons").experiment_id
    runs = client.search_runs([experiment], f"tags.`tierwise.comparison_of` = '{NAME}'", order_by=["start_time ASC"])
    names = [run.info.run_name for run in runs]
    assert re.fullmatch(rf"retrain {NAME} · v1 · \d+ req", names[0])
    assert re.fullmatch(rf"retrain {NAME} · v2 vs v1 · \d+ req", names[1])
    metrics = runs[1].data.metrics
    rows, paired = decision_rows(rounds["better"]), difference(rounds["better"])
    assert metrics["v2/quality"] == pytest.approx(rows["challenger"][0], abs=6e-5)
    assert metrics["v1/quality"] == pytest.approx(rows["champion"][0], abs=6e-5)
    assert metrics["v2-v1/quality_pp_lo"] == pytest.approx(100 * paired["quality"][1], abs=6e-3)
    assert metrics["v2-v1/cost_pct_hi"] == pytest.approx(100 * paired["cost"][2], abs=6e-2)
    assert metrics["promoted"] == 1.0 and runs[2].data.metrics["promoted"] == 0.0
    assert {"v2/1_gain_over_static_pp", "v2/1_gain_over_static_pp_lo", "v1/apgr", "time_score_champion_s"} <= set(
        metrics
    )
    params = runs[1].data.params
    assert (params["challenger_version"], params["champion_version"]) == ("2", "1")
    assert float(params["gate_quality_tolerance_pp"]) == 100 * QUALITY_TOLERANCE
    assert float(params["gate_cost_tolerance_pct"]) == 100 * COST_TOLERANCE
    assert runs[1].data.tags["mlflow.note.content"].startswith("**v2 PROMOTED to champion: better on quality")
    assert {a.path for a in client.list_artifacts(runs[1].info.run_id)} == {"cost_quality.png"}
    assert runs[1].inputs.dataset_inputs


def paired(quality: tuple[float, float], cost: tuple[float, float]) -> PairedDifference:
    return PairedDifference(100, sum(quality) / 2, Interval(*quality), sum(cost) / 2, Interval(*cost))


@pytest.mark.parametrize(
    ("difference_", "promoted", "reason"),
    [
        (paired((-QUALITY_TOLERANCE / 2, 0.02), (-0.10, -0.01)), True, "as good on quality (quality +0.75 pp [-0.50,"),
        (paired((0.001, 0.05), (-0.02, COST_TOLERANCE / 2)), True, "better on quality (quality +2.55 pp [+0.10, +5"),
        (paired((-0.02, 0.02), (-0.10, -0.01)), False, "quality may be lower by more than the 1.00 pp allowed"),
        (paired((-0.005, 0.02), (-0.10, 0.001)), False, "not surely cheaper (cost -5.0% [-10.0%, +0.1%]"),
        (paired((0.001, 0.05), (-0.02, 2 * COST_TOLERANCE)), False, "quality +2.55 pp [+0.10, +5.00] is surely better"),
        (paired((-0.05, -0.001), (-0.5, -0.4)), False, "lower quality than the champion: quality -2.55 pp"),
    ],
)
def test_gate_reads_the_paired_intervals(difference_, promoted, reason):
    verdict, why = gate(difference_)
    assert verdict is promoted and why.startswith(reason)


def test_a_version_provably_below_the_static_mix_is_not_made_champion(tmp_path, mlflow_store):
    logs = write_sample_logs(tmp_path / "true", 600, seed=7)
    noise = shuffled_labels(logs, tmp_path / "shuffled" / "attempts.jsonl")
    result = CliRunner().invoke(main, ["train", str(noise), "--out", str(tmp_path / "b"), "--register", "unfit"])
    assert result.exit_code == 0, result.output
    assert "registered unfit version 1 as challenger" in result.output
    assert "not made champion: its gain over the static mix is below 0 on the held-out rows" in result.output
    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    assert client.get_registered_model("unfit").aliases == {"challenger": 1}
    version = client.get_model_version("unfit", "1")
    assert version.tags["champion_refused"].startswith("its gain over the static mix is below 0")
    assert version.description.startswith("challenger, not made champion: its gain over the static mix is below 0")


def test_window_needs_timestamps(tmp_path, sample_logs):
    no_time = tmp_path / "attempts.jsonl"
    pl.read_ndjson(sample_logs).drop("timestamp").write_ndjson(no_time)
    result = CliRunner().invoke(main, ["retrain", "window-test", str(no_time), "--window", "3"])
    assert result.exit_code == 2 and "timestamp" in result.output


def test_retrain_scores_each_router_once_on_the_held_out_rows(tmp_path, monkeypatch, mlflow_store):
    """The challenger's held-out evaluation from training is reused; only the champion is scored here."""
    from tierwise.classifier.tiers import TierLadder
    from tierwise.registry.models import Registry
    from tierwise.training.data.logs import read_attempts
    from tierwise.training.evaluation import evaluate
    from tierwise.training.fit.train import TrainOptions
    from tierwise.training.tracking.retrain import retrain as run_retrain

    scored: list[tuple[str, int]] = []
    real = evaluate.router_probabilities

    def counted(router, prompts, *args, **kwargs):
        scored.append((router.version, len(prompts)))
        return real(router, prompts, *args, **kwargs)

    monkeypatch.setattr(evaluate, "router_probabilities", counted)
    registry, ladder = Registry(mlflow_store, create=True), TierLadder.load()
    for seed in (31, 32):
        logs = write_sample_logs(tmp_path / f"logs{seed}", 300, seed=seed)
        decision = run_retrain("scored-once", read_attempts([logs]), registry, ladder, TrainOptions())
    assert decision.champion is not None
    # v1 once by its training; then v2 by its training and v1 (the champion) on the same rows, once each
    (first, _), (second, rows_second), (champion, rows_champion) = scored
    assert first == champion != second and rows_second == rows_champion


def test_the_readme_quotes_this_retrain_and_the_predictions_of_the_champion_it_leaves(rounds, mlflow_store, tmp_path):
    readme = quoted(README.read_text())
    stale = f"README.md's MLflow section is stale: run `{REGENERATE}`"
    assert readme["retrain-gate"] == rounds["better"], stale
    assert readme["pyfunc-predict"] == pyfunc_predictions(tmp_path, mlflow_store, NAME), stale
