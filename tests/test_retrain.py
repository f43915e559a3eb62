"""Gated retraining on a real SQLite registry: the first version becomes champion, a better challenger is
promoted, and one trained on shuffled labels is refused and left as challenger."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from tierwise.cli import main
from training.sample_logs import write_sample_logs
from training.tracking.retrain import (
    COST_MARGIN,
    COST_TOLERANCE,
    QUALITY_MARGIN,
    QUALITY_TOLERANCE,
    Standing,
    gate,
)

NAME = "retrain-test"


def shuffled_labels(logs: Path, out: Path, seed: int = 0) -> Path:
    """The same logs with prompts permuted across the training requests: labels no longer follow the text.

    Test-split requests are untouched, so champion and challenger are still judged on true outcomes.
    """
    frame = pl.read_ndjson(logs)
    train = frame.filter(pl.col("split") == "train").unique("request_id", keep="first").sort("request_id")
    order = np.random.default_rng(seed).permutation(train.height)
    moved = pl.DataFrame({"request_id": train["request_id"], "moved": train["prompt"].to_numpy()[order]})
    frame = frame.join(moved, on="request_id", how="left")
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.with_columns(pl.coalesce("moved", "prompt").alias("prompt")).drop("moved").write_ndjson(out)
    return out


def retrain(*args: str) -> str:
    result = CliRunner().invoke(main, ["retrain", NAME, *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def rounds(tmp_path_factory) -> dict[str, str]:
    """Three retrains in a row: shuffled on an empty registry, then the last 20 days of true logs, then shuffled."""
    work = tmp_path_factory.mktemp("retrain")
    true_logs = write_sample_logs(work / "true", 1500, seed=11)
    noise = shuffled_labels(true_logs, work / "shuffled" / "attempts.jsonl")
    return {
        "first": retrain(str(noise)),
        "better": retrain(str(true_logs), "--window", "20"),
        "worse": retrain(str(noise)),
    }


def decision_rows(output: str) -> dict[str, tuple[float, float]]:
    """role -> (quality, cost per request) from the printed table."""
    rows = {}
    for role in ("challenger", "champion"):
        found = re.search(rf"^{role}\s+\d+\s+([\d.]+)\s+([\d.]+)", output, re.MULTILINE)
        if found:
            rows[role] = (float(found.group(1)), float(found.group(2)))
    return rows


def test_on_an_empty_registry_the_first_version_becomes_champion(rounds, mlflow_store):
    assert "decision: v1 PROMOTED to champion: the registry had no champion yet" in rounds["first"]
    assert "champion" not in decision_rows(rounds["first"])


def test_a_better_challenger_is_promoted_with_both_rows_printed(rounds, mlflow_store):
    output = rounds["better"]
    assert re.search(r"window: \d+ of 1500 requests last tried within 20 days", output)
    assert "decision: v2 PROMOTED to champion" in output
    assert f"quality >= champion - {QUALITY_TOLERANCE}" in output and f"champion + {QUALITY_MARGIN}" in output
    rows = decision_rows(output)
    assert rows["challenger"][0] >= rows["champion"][0] + QUALITY_MARGIN
    assert rows["challenger"][1] <= rows["champion"][1] * (1 - COST_MARGIN)
    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    windowed = client.get_model_version(NAME, "2")
    assert int(windowed.tags["train_requests"]) < int(client.get_model_version(NAME, "1").tags["train_requests"])
    assert client.get_run(windowed.run_id).data.tags["tierwise.window_days"] == "20"
    assert windowed.tags["retrain_decision"].startswith("promoted against v1")


def test_a_challenger_trained_on_shuffled_labels_is_refused_and_stays_challenger(rounds, mlflow_store):
    output = rounds["worse"]
    assert "decision: v3 kept as challenger: lower quality than the champion" in output
    rows = decision_rows(output)
    assert rows["challenger"][0] < rows["champion"][0] - QUALITY_TOLERANCE
    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    assert client.get_registered_model(NAME).aliases == {"champion": 2, "challenger": 3}
    refused = client.get_model_version(NAME, "3")
    assert refused.tags["retrain_decision"].startswith("kept as challenger against v2")


def standing(quality: float, cost: float) -> Standing:
    return Standing("v", quality, cost, cost, None)


@pytest.mark.parametrize(
    ("challenger", "promoted", "reason"),
    [
        (standing(0.80 - QUALITY_TOLERANCE, 1.0 - COST_MARGIN), True, "as good on quality at lower cost"),
        (standing(0.80 + QUALITY_MARGIN, 1.0 + COST_TOLERANCE), True, "better on quality at no more cost"),
        (standing(0.80, 1.0 - COST_MARGIN / 2), False, "not cheaper"),
        (standing(0.80 + QUALITY_MARGIN, 1.0 + 2 * COST_TOLERANCE), False, "not cheaper"),
        (standing(0.80 - 2 * QUALITY_TOLERANCE, 0.5), False, "lower quality"),
    ],
)
def test_gate_margins(challenger, promoted, reason):
    verdict, why = gate(challenger, standing(0.80, 1.0))
    assert verdict is promoted and why.startswith(reason)


def test_window_needs_timestamps(tmp_path, sample_logs):
    no_time = tmp_path / "attempts.jsonl"
    pl.read_ndjson(sample_logs).drop("timestamp").write_ndjson(no_time)
    result = CliRunner().invoke(main, ["retrain", "window-test", str(no_time), "--window", "3"])
    assert result.exit_code == 2 and "timestamp" in result.output


def test_retrain_scores_each_router_once_on_the_held_out_rows(tmp_path, monkeypatch, mlflow_store):
    """The challenger's held-out evaluation from training is reused; only the champion is scored here."""
    from classifier.tiers import TierLadder
    from training.evaluation import evaluate
    from training.logs import read_attempts
    from training.tracking.registry import Registry
    from training.tracking.retrain import retrain as run_retrain
    from training.train import TrainOptions

    scored: list[tuple[str, int]] = []
    real = evaluate.router_probabilities

    def counted(router, prompts, *args, **kwargs):
        scored.append((router.version, len(prompts)))
        return real(router, prompts, *args, **kwargs)

    monkeypatch.setattr(evaluate, "router_probabilities", counted)
    registry, ladder = Registry(mlflow_store), TierLadder.load()
    for seed in (31, 32):
        logs = write_sample_logs(tmp_path / f"logs{seed}", 300, seed=seed)
        decision = run_retrain("scored-once", read_attempts([logs]), registry, ladder, TrainOptions())
    assert decision.champion is not None
    # v1 once by its training; then v2 by its training and v1 (the champion) on the same rows, once each
    (first, _), (second, rows_second), (champion, rows_champion) = scored
    assert first == champion != second and rows_second == rows_champion
