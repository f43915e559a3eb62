"""Learning from served traffic, on real servers: outcome reports, learnable decision rows, exploration with
known propensities, and live calibration in metrics and GetModelInfo."""

from __future__ import annotations

import hashlib
import json
import math
import signal
import urllib.request
from pathlib import Path

import grpc
import pytest
from tierwise.classifier.limits import IDENTIFIER
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.router import Router
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

from tests.helpers import logged_rows

EASY = "Say hello to the team in a friendly way."
HARD = "Design a lock-free concurrent hash map and analyse its memory ordering requirements in detail."


def serve(bundle: Path, *args: str) -> ServerProcess:
    return ServerProcess(["--model", str(bundle), "--port", "0", "--metrics-port", "0", *args])


def scrape(server: ServerProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


@pytest.fixture(scope="module")
def router(trained_bundle) -> Router:
    return Router.load(trained_bundle)


@pytest.fixture(scope="module", params=["aio", "sync"])
def logged(request, trained_bundle, tmp_path_factory):
    """A server of each kind writing decision and outcome logs, with its stub and log paths."""
    work = tmp_path_factory.mktemp(f"logged-{request.param}")
    logs = {"decisions": work / "decisions.jsonl", "outcomes": work / "outcomes.jsonl"}
    args = ["--server-mode", request.param, "--decision-log", str(logs["decisions"])]
    args += ["--outcome-log", str(logs["outcomes"])]
    with serve(trained_bundle, *args) as server, grpc.insecure_channel(server.target) as channel:
        yield server, pb_grpc.RouterStub(channel), logs


def test_an_outcome_is_acknowledged_and_one_for_an_unrouted_request_is_kept_flagged(logged):
    _, stub, logs = logged
    routed = stub.Predict(pb.PredictRequest(prompt=EASY, request_id="ack-1"), timeout=10)
    known = stub.ReportOutcome(
        pb.Outcome(
            request_id="ack-1", model=routed.model, success=True, cost_usd=0.002, latency_ms=812.5, ttft_ms=120.0
        ),
        timeout=10,
    )
    stranger = stub.ReportOutcome(
        pb.Outcome(
            request_id="never-routed", model=routed.model, attempt=1, score=0.5, error="RateLimitError", workload="w1"
        ),
        timeout=10,
    )
    assert (known.request_id, known.known_request) == ("ack-1", True)
    assert (stranger.request_id, stranger.known_request) == ("never-routed", False)
    rows = {r["request_id"]: r for r in logged_rows(logs["outcomes"], ["ack-1", "never-routed"])}
    assert rows["ack-1"] | {"time": None} == {
        "request_id": "ack-1",
        "model": routed.model,
        "attempt": 0,
        "success": True,
        "score": None,
        "cost_usd": 0.002,
        "input_tokens": None,
        "output_tokens": None,
        "cache_read_input_tokens": None,
        "cache_creation_input_tokens": None,
        "latency_ms": 812.5,
        "ttft_ms": 120.0,
        "error": None,
        "workload": None,
        "known_request": True,
        "time": None,
    }
    assert rows["never-routed"]["known_request"] is False
    assert (rows["never-routed"]["score"], rows["never-routed"]["error"]) == (0.5, "RateLimitError")
    assert rows["never-routed"]["workload"] == "w1"


BAD_OUTCOMES = [
    (pb.Outcome(model="claude-haiku-4-5"), "request_id"),
    (pb.Outcome(request_id="  ", model="claude-haiku-4-5"), "request_id"),
    (pb.Outcome(request_id="r"), "model"),
    (pb.Outcome(request_id="r", model="m", attempt=-1), "attempt"),
    (pb.Outcome(request_id="r", model="m", cost_usd=-0.5), "cost_usd"),
    (pb.Outcome(request_id="r", model="m", latency_ms=math.nan), "latency_ms"),
    (pb.Outcome(request_id="r", model="m", score=math.inf), "score"),
    (pb.Outcome(request_id="r", model="m", workload="w" * (IDENTIFIER.maximum + 1)), "workload"),
]


@pytest.mark.parametrize(("outcome", "field"), BAD_OUTCOMES, ids=[f for _, f in BAD_OUTCOMES])
def test_a_bad_outcome_is_invalid_argument_naming_the_field(logged, outcome, field):
    _, stub, _ = logged
    with pytest.raises(grpc.RpcError) as caught:
        stub.ReportOutcome(outcome, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}: ")


def test_an_outcome_stream_is_summarised_and_a_bad_item_is_named(logged):
    _, stub, logs = logged
    routed = [stub.Predict(pb.PredictRequest(prompt=EASY, request_id=f"stream-{i}"), timeout=10) for i in range(3)]
    outcomes = [pb.Outcome(request_id=r.request_id, model=r.model, success=True) for r in routed]
    outcomes += [pb.Outcome(request_id=f"elsewhere-{i}", model="claude-opus-4-1", success=False) for i in range(2)]
    summary = stub.ReportOutcomes(iter(outcomes), timeout=10)
    assert (summary.received, summary.unknown_requests) == (5, 2)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ReportOutcomes(iter([outcomes[0], outcomes[1], pb.Outcome(request_id="x")]), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("outcomes[2].model: ")
    # the refused stream's first two outcomes were taken before its bad third one, but repeat what the server knew:
    # not logged again (the log is written in order, so once a later outcome is there, a repeat would be too)
    stub.ReportOutcome(pb.Outcome(request_id="stream-after", model="claude-opus-4-1", success=True), timeout=10)
    logged_rows(logs["outcomes"], ["stream-after"])
    reported = [o.request_id for o in outcomes]
    logged_ids = [r["request_id"] for r in logged_rows(logs["outcomes"], reported)]
    assert sorted(logged_ids) == sorted(reported)


def test_a_decision_row_holds_what_a_retrain_needs(logged, router):
    _, stub, logs = logged
    chat = [pb.ChatMessage(role="system", content="Be terse."), pb.ChatMessage(content=HARD)]
    by_prompt = stub.Predict(pb.PredictRequest(prompt=EASY, request_id="row-prompt"), timeout=10)
    by_chat = stub.Predict(pb.PredictRequest(messages=chat, request_id="row-chat"), timeout=10)
    rows = {r["request_id"]: r for r in logged_rows(logs["decisions"], ["row-prompt", "row-chat"])}
    prompt_row, chat_row = rows["row-prompt"], rows["row-chat"]
    assert prompt_row["prompt"] == EASY and "messages" not in prompt_row
    assert prompt_row["prompt_sha256"] == hashlib.sha256(EASY.encode()).hexdigest()
    assert chat_row["messages"] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": HARD}]
    assert "prompt" not in chat_row
    for row, response in ((prompt_row, by_prompt), (chat_row, by_chat)):
        assert (row["tier"], row["fallback_chain"]) == (response.tier, list(response.fallback_chain))
        assert row["probabilities"] == pytest.approx(dict(response.probabilities))
        assert (row["model_version"], row["latency_band"]) == (router.version, "interactive")
        assert (row["explored"], row["propensity"], row["propensities"]) == (False, 1.0, {response.tier: 1.0})
        assert (response.explored, response.propensity) == (False, 1.0)


def test_sighup_reopens_the_outcome_log(logged):
    server, stub, logs = logged
    stub.ReportOutcome(pb.Outcome(request_id="before-rotation", model="m", success=True), timeout=10)
    logged_rows(logs["outcomes"], ["before-rotation"])
    rotated = logs["outcomes"].with_suffix(".1")
    logs["outcomes"].rename(rotated)
    server.send(signal.SIGHUP)
    server.wait_for_log(r"outcomes\.jsonl: reopened")
    stub.ReportOutcome(pb.Outcome(request_id="after-rotation", model="m", success=True), timeout=10)
    assert [r["request_id"] for r in logged_rows(logs["outcomes"], ["after-rotation"])] == ["after-rotation"]
    assert len(logs["outcomes"].read_text().splitlines()) == 1
    assert "before-rotation" in [json.loads(line)["request_id"] for line in rotated.read_text().splitlines()]


@pytest.fixture(scope="module")
def exploring(trained_bundle, tmp_path_factory):
    """A server exploring every request it can, with prompts redacted from its decision log."""
    decisions = tmp_path_factory.mktemp("exploring") / "decisions.jsonl"
    args = ["--explore-rate", "1", "--redact-prompts", "--decision-log", str(decisions)]
    with serve(trained_bundle, *args) as server, grpc.insecure_channel(server.target) as channel:
        yield server, pb_grpc.RouterStub(channel), decisions


def test_exploration_serves_a_cheaper_tier_with_the_chosen_chain_after_it(exploring, router):
    server, stub, decisions = exploring
    policy = router.predict(HARD, RouteOptions(quality_target=1.0))
    names = router.ladder.names
    cheaper = names[: names.index(policy.tier)]
    assert cheaper, "the test needs a prompt the policy sends above the cheapest tier"
    served = [
        stub.Predict(pb.PredictRequest(prompt=HARD, quality_target=1.0, request_id=f"explore-{i}"), timeout=10)
        for i in range(40)
    ]
    for response in served:
        assert response.explored and response.tier in cheaper
        assert list(response.fallback_chain) == [response.tier, *policy.fallback_chain]
        assert response.propensity == pytest.approx(1 / len(cheaper))
    assert {r.tier for r in served} == set(cheaper)
    rows = {r["request_id"]: r for r in logged_rows(decisions, [r.request_id for r in served])}
    row = rows["explore-0"]
    assert "prompt" not in row and row["prompt_sha256"] == hashlib.sha256(HARD.encode()).hexdigest()
    assert (row["explored"], row["propensity"]) == (True, pytest.approx(1 / len(cheaper)))
    assert row["propensities"] == pytest.approx({tier: 1 / len(cheaper) for tier in cheaper})
    assert scrape(server)['tierwise_explored_total{workload="other"}'] >= len(served)


def test_a_request_can_opt_out_of_exploration(exploring, router):
    _, stub, _ = exploring
    policy = router.predict(HARD, RouteOptions(quality_target=1.0))
    request = pb.PredictRequest(prompt=HARD, quality_target=1.0, allow_explore=False)
    response = stub.Predict(request, timeout=10)
    assert (response.explored, response.propensity, response.tier) == (False, 1.0, policy.tier)
    batch = stub.PredictBatch(pb.PredictBatchRequest(requests=[request, request]), timeout=10)
    assert all((r.explored, r.tier) == (False, policy.tier) for r in batch.responses)
    assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).explore_rate == 1.0


def test_live_calibration_rolls_over_the_last_outcomes_of_each_tier(trained_bundle, router):
    with serve(trained_bundle, "--calibration-window", "4") as server, grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RouterStub(channel)
        prompts = [EASY, HARD, "Translate to French: 'I will call the bank tomorrow.'", "Prove sqrt(2) is irrational."]
        routed = [stub.Predict(pb.PredictRequest(prompt=p), timeout=10) for p in prompts * 2]
        top = router.ladder.tiers[-1]
        results = [True, False, False, True, True, True, False, True]
        for response, success in zip(routed, results, strict=True):
            stub.ReportOutcome(pb.Outcome(request_id=response.request_id, model=top.model, success=success), timeout=10)
        stub.ReportOutcome(pb.Outcome(request_id="unrouted", model=top.model, success=False), timeout=10)
        stub.ReportOutcome(pb.Outcome(request_id=routed[0].request_id, model=top.model, error="APIError"), timeout=10)
        stub.ReportOutcome(pb.Outcome(request_id=routed[0].request_id, model="gpt-2"), timeout=10)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        values = scrape(server)
    (live,) = info.live_calibration
    window = list(zip(routed, results, strict=True))[-4:]
    assert (live.tier, live.outcomes) == (top.name, 4)
    assert live.realized_success == pytest.approx(sum(s for _, s in window) / 4)
    assert live.predicted_success == pytest.approx(sum(r.probabilities[top.name] for r, _ in window) / 4)
    assert info.explore_rate == 0.0
    assert values[f'tierwise_realized_success{{tier="{top.name}"}}'] == pytest.approx(live.realized_success)
    assert values[f'tierwise_predicted_success{{tier="{top.name}"}}'] == pytest.approx(live.predicted_success)
    outcomes = 'tierwise_outcomes_total{{result="{}",tier="{}"}}'
    assert values[outcomes.format("success", top.name)] == 5
    assert values[outcomes.format("failure", top.name)] == 4  # the unrouted one counts, outside the window
    assert values[outcomes.format("error", top.name)] == 1
    assert values[outcomes.format("ungraded", "unknown")] == 1
    assert values['tierwise_explored_total{workload="other"}'] == 0
