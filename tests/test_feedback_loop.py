"""The learning loop closed on a real server: route generated requests, report their known outcomes escalating
along the chain, collect, retrain, promote through the gate, and watch the server follow the alias.

The champion is biased the way a deployed router is: it was trained where only the top tier ever worked, so it
sends everything to the top tier (the registry would not make it champion; the test promotes it by hand).
Exploration shows the cheaper tiers answering; the challenger trained on the collected traffic learns it and is
promoted. Nothing acknowledged is lost across a SIGTERM and a restart.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import grpc
import polars as pl
from click.testing import CliRunner
from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierLadder
from tierwise.registry.models import CHAMPION, ModelRef, Registry
from tierwise.serving.process import ServerProcess
from tierwise.serving.simulate import TrafficReport, send_one, send_traffic, tier_models
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc
from tierwise.training.data.labels import label_requests
from tierwise.training.data.logs import read_attempts
from tierwise.training.data.sample_logs import write_sample_logs
from tierwise.training.tracking.promotion import register_trained

from tests.helpers import train_files
from tierwise.cli import main as cli
from tierwise.labelled_traffic import known_requests

NAME = "feedback-loop"


def only_the_top_tier_works(logs: Path, out: Path) -> Path:
    """The same requests where every tier but the top one fails: a champion trained on it always goes top."""
    top = TierLadder.load().top.models
    frame = pl.read_ndjson(logs).with_columns(pl.col("model").is_in(list(top)).alias("success"))
    out.parent.mkdir(parents=True)
    frame.write_ndjson(out)
    return out


def cli_ok(*args: str) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def wait_for_version(stub: pb_grpc.RouterStub, version: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).version == version:
            return
        time.sleep(0.2)
    raise AssertionError(f"the server never served version {version}")


def champion_version(store: str) -> str:
    """The bundle version the registry's champion alias points at now."""
    registry = Registry(store)
    return Router.load(registry.bundle_dir(registry.version(ModelRef(NAME, alias=CHAMPION)))).version


def test_served_traffic_retrains_a_better_champion_and_loses_nothing(tmp_path, mlflow_store):
    old_logs = write_sample_logs(tmp_path / "old", 300, seed=21)
    champion = train_files([only_the_top_tier_works(old_logs, tmp_path / "biased" / "a.jsonl")], tmp_path / "champion")
    registered = register_trained(champion, Registry(mlflow_store), NAME)
    assert registered.refused, "always-top is no better than the static mix: the registry refuses it by itself"
    Registry(mlflow_store).promote(NAME, str(registered.version))  # the operator puts it in service anyway

    truth = label_requests(read_attempts([write_sample_logs(tmp_path / "truth", 3000, seed=22)]), TierLadder.load())
    requests = [r for r in known_requests(truth) if len(r.success) == 3]  # every tier's outcome known
    first, late, second = requests[:500], requests[500:520], requests[520:]
    decisions, outcomes = tmp_path / "decisions.jsonl", tmp_path / "outcomes.jsonl"
    args = ["--model", f"models:/{NAME}@champion", "--port", "0", "--no-metrics", "--reload-interval", "0.5"]
    args += [
        "--decision-log",
        str(decisions),
        "--outcome-log",
        str(outcomes),
        "--explore-rate",
        "0.5",
        "--explore-seed",
        "1",
    ]
    sent = TrafficReport()

    with ServerProcess(args) as server, grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RouterStub(channel)
        models = tier_models(stub)
        for request in first[:50]:
            sent.add(send_one(stub, request, models))  # the unary path
        sent.add(send_traffic(stub, first[50:], batch_size=100))  # batches and an outcome stream
        routed_late = [
            stub.Predict(pb.PredictRequest(prompt=r.prompt, request_id=r.request_id), timeout=10) for r in late
        ]
        assert server.stop() == 0  # SIGTERM: drains, and writes what the logs had queued
    assert sent.explored > 0

    with ServerProcess(args) as server, grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RouterStub(channel)
        for request, routed in zip(late, routed_late, strict=True):  # decided before the restart, reported after
            tier = routed.fallback_chain[0]
            outcome = pb.Outcome(request_id=request.request_id, model=models[tier], success=request.success[tier])
            assert stub.ReportOutcome(outcome, timeout=10).known_request is False  # unknown here, still kept
            sent.acknowledged.append((outcome.request_id, outcome.model, 0))
        sent.add(send_traffic(stub, second, batch_size=200))
        regraded = sent.acknowledged[0]
        later = pb.Outcome(request_id=regraded[0], model=regraded[1], attempt=regraded[2], latency_ms=900.0)
        stub.ReportOutcome(later, timeout=10)  # a second report of an attempt merges into its row
        assert server.stop() == 0

    attempts = tmp_path / "attempts.parquet"
    summary = cli_ok("collect", decisions, outcomes, "--out", attempts)
    assert "unmatched:  0 attempts" in summary
    rows = pl.read_parquet(attempts)
    assert Counter(zip(rows["request_id"], rows["model"], rows["attempt"], strict=True)) == Counter(sent.acknowledged)
    merged = rows.filter(pl.col("request_id") == regraded[0], pl.col("model") == regraded[1])
    assert merged["latency_ms"].to_list() == [900.0] and merged["success"].is_not_null().all()

    assert "status:" in cli_ok("label", attempts, "--out", tmp_path / "labels.parquet")
    assert "replay" in cli_ok(
        "replay", attempts, "--out", tmp_path / "replayed.parquet", "--grader", "judge", "--dry-run"
    )
    assert "mlflow run" in cli_ok("train", attempts, "--out", tmp_path / "trained")
    scored = cli_ok("eval", "--model", tmp_path / "trained", attempts, "--json", tmp_path / "eval.json")
    assert "weighted by inverse propensity" in scored
    assert json.loads((tmp_path / "eval.json").read_text())["format"] == "tierwise-eval-traffic/1"
    with ServerProcess(args) as server, grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RouterStub(channel)
        assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).version == champion.router.version
        decision = cli_ok("retrain", NAME, attempts, "--quality-floor", "0.995")
        assert "PROMOTED" in decision, decision
        wait_for_version(stub, champion_version(mlflow_store))
        served = stub.Predict(pb.PredictRequest(prompt=first[0].prompt, allow_explore=False), timeout=10)
        assert served.model_version != champion.router.version


def test_without_exploration_a_top_tier_champion_never_learns_about_cheaper_tiers(tmp_path, mlflow_store):
    """The same biased champion, no exploration: every request goes to the top tier and succeeds there, so the
    traffic holds no outcome of a cheaper tier, and a retrain on it refuses to guess them."""
    name = "feedback-loop-blind"
    old_logs = write_sample_logs(tmp_path / "old", 300, seed=21)
    champion = train_files([only_the_top_tier_works(old_logs, tmp_path / "biased" / "a.jsonl")], tmp_path / "champion")
    registered = register_trained(champion, Registry(mlflow_store), name)
    Registry(mlflow_store).promote(name, str(registered.version))
    truth = label_requests(read_attempts([write_sample_logs(tmp_path / "truth", 600, seed=23)]), TierLadder.load())
    requests = [r for r in known_requests(truth) if len(r.success) == 3]
    decisions, outcomes = tmp_path / "decisions.jsonl", tmp_path / "outcomes.jsonl"
    args = ["--model", f"models:/{name}@champion", "--port", "0", "--no-metrics"]
    args += ["--decision-log", str(decisions), "--outcome-log", str(outcomes)]
    with ServerProcess(args) as server, grpc.insecure_channel(server.target) as channel:
        sent = send_traffic(pb_grpc.RouterStub(channel), requests)
    assert sent.explored == 0
    attempts = tmp_path / "attempts.parquet"
    cli_ok("collect", decisions, outcomes, "--out", attempts)
    top = TierLadder.load().top.model
    first = pl.read_parquet(attempts).filter(pl.col("attempt") == 0)
    assert set(first["model"]) == {top} and first["propensity"].to_list() == [1.0] * first.height
    result = CliRunner().invoke(cli, ["retrain", name, str(attempts)])
    assert result.exit_code == 2
    assert "too few observed outcomes to train tier(s) haiku, sonnet" in result.output
