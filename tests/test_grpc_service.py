"""The gRPC service end to end: a real `tierwise serve` on a loopback port, called over the wire."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request

import grpc
import pytest
from click.testing import CliRunner
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.router import Router
from tierwise.classifier.text import render_messages
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

from tierwise.cli import main as cli

PROMPTS = [
    "Say hello to the team in a friendly way.",
    "Prove that the square root of 2 is irrational, step by step.",
    "Translate to French: 'I will call the bank tomorrow.'",
    "Design a lock-free concurrent hash map and analyse its memory ordering requirements in detail.",
]


@pytest.fixture(scope="module")
def decision_log(tmp_path_factory):
    return tmp_path_factory.mktemp("decisions") / "decisions.jsonl"


@pytest.fixture(scope="module")
def server(trained_bundle, decision_log):
    args = ["--model", str(trained_bundle), "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"]
    with ServerProcess([*args, "--decision-log", str(decision_log)]) as process:
        yield process


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.target) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel):
    return pb_grpc.RouterStub(channel)


@pytest.fixture(scope="module")
def router(trained_bundle):
    return Router.load(trained_bundle)


def test_predict_answers_with_the_local_router_decision(stub, router):
    for prompt in PROMPTS:
        response = stub.Predict(pb.PredictRequest(prompt=prompt, request_id="req-1"), timeout=10)
        local = router.predict(prompt)
        assert response.request_id == "req-1"
        assert response.tier == local.tier
        assert response.model == local.model == router.ladder.tiers[router.ladder.index(local.tier)].model
        assert dict(response.probabilities) == pytest.approx(local.probabilities)
        assert list(response.fallback_chain) == list(local.fallback_chain)
        assert response.fallback_chain[0] == response.tier
        assert response.model_version == router.version
        assert response.quality_target == pytest.approx(local.quality_target)
        assert response.mode == pb.THRESHOLD
        assert 0 < response.inference_us < 1_000_000
        assert response.use_batch_api is False


def test_predict_makes_up_a_request_id_when_none_is_given(stub):
    first = stub.Predict(pb.PredictRequest(prompt=PROMPTS[0]), timeout=10)
    second = stub.Predict(pb.PredictRequest(prompt=PROMPTS[0]), timeout=10)
    assert first.request_id and first.request_id != second.request_id


def test_messages_route_like_their_rendered_text(stub):
    chat = [pb.ChatMessage(role="system", content="Be terse."), pb.ChatMessage(role="user", content=PROMPTS[1])]
    by_messages = stub.Predict(pb.PredictRequest(messages=chat), timeout=10)
    rendered = render_messages([{"role": m.role, "content": m.content} for m in chat])
    by_text = stub.Predict(pb.PredictRequest(prompt=rendered), timeout=10)
    assert dict(by_messages.probabilities) == pytest.approx(dict(by_text.probabilities))


def test_policy_options_reach_the_router(stub, router):
    top = router.ladder.names[-1]
    restricted = stub.Predict(pb.PredictRequest(prompt=PROMPTS[0], allowed_tiers=[top]), timeout=10)
    assert restricted.tier == top
    lenient = stub.Predict(pb.PredictRequest(prompt=PROMPTS[3], quality_target=0.0), timeout=10)
    assert lenient.tier == router.ladder.names[0]
    assert lenient.quality_target == 0.0
    local = router.predict(PROMPTS[3], RouteOptions(mode="cost"))
    cost = stub.Predict(pb.PredictRequest(prompt=PROMPTS[3], mode=pb.COST), timeout=10)
    assert (cost.mode, cost.tier, list(cost.fallback_chain)) == (pb.COST, local.tier, list(local.fallback_chain))
    assert cost.HasField("expected_cost_usd") == (local.expected_cost_usd is not None)


def test_async_latency_band_recommends_the_batch_api(stub):
    for band, expected in [(pb.ASYNC, True), (pb.TOLERANT, False), (pb.INTERACTIVE, False)]:
        response = stub.Predict(pb.PredictRequest(prompt=PROMPTS[0], latency_band=band), timeout=10)
        assert response.use_batch_api is expected


def test_predict_batch_matches_single_calls_in_order(stub, router):
    top = router.ladder.names[-1]
    requests = [pb.PredictRequest(prompt=p, request_id=f"b{i}") for i, p in enumerate(PROMPTS * 3)]
    requests[5].allowed_tiers.append(top)
    requests[6].quality_target = 0.0
    batch = stub.PredictBatch(pb.PredictBatchRequest(requests=requests), timeout=10)
    assert [r.request_id for r in batch.responses] == [r.request_id for r in requests]
    assert batch.model_version == router.version
    for request, answer in zip(requests, batch.responses, strict=True):
        single = stub.Predict(request, timeout=10)
        assert (answer.tier, list(answer.fallback_chain)) == (single.tier, list(single.fallback_chain))
        assert dict(answer.probabilities) == pytest.approx(dict(single.probabilities), abs=1e-6)
    assert batch.responses[5].tier == top
    assert batch.responses[6].tier == router.ladder.names[0]


def test_predict_stream_answers_each_request_in_order(stub):
    requests = [pb.PredictRequest(prompt=PROMPTS[i % len(PROMPTS)], request_id=f"s{i}") for i in range(50)]
    responses = list(stub.PredictStream(iter(requests), timeout=10))
    assert [r.request_id for r in responses] == [r.request_id for r in requests]
    assert all(r.tier for r in responses)


def test_model_info_describes_the_loaded_bundle(stub, router):
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert info.version == router.version
    assert [t.name for t in info.tiers] == router.ladder.names
    for sent, tier in zip(info.tiers, router.ladder.tiers, strict=True):
        assert (sent.model, list(sent.models)) == (tier.model, list(tier.models))
        assert (sent.input_usd_per_mtok, sent.output_usd_per_mtok) == (
            tier.input_usd_per_mtok,
            tier.output_usd_per_mtok,
        )
    assert info.threshold == pytest.approx(router.manifest.policy.threshold)
    assert info.threshold_rule.startswith(router.manifest.policy.rule)
    assert info.data_fingerprint == router.manifest.data["fingerprint"]
    assert info.encoder == "static"
    assert info.metrics
    assert json.loads(info.manifest_json)


BAD_REQUESTS = [
    (pb.PredictRequest(), "prompt"),
    (pb.PredictRequest(prompt="hi", messages=[pb.ChatMessage(role="user", content="hi")]), "prompt"),
    (pb.PredictRequest(prompt="hi", allowed_tiers=["no-such-tier"]), "allowed_tiers"),
    (pb.PredictRequest(prompt="hi", quality_target=1.5), "quality_target"),
    (pb.PredictRequest(prompt="hi", quality_target=-0.5), "quality_target"),
    (pb.PredictRequest(prompt="hi", quality_target=float("nan")), "quality_target"),
    (pb.PredictRequest(prompt="x" * ((1 << 20) + 1)), "prompt"),
]


@pytest.mark.parametrize(("request_", "field"), BAD_REQUESTS, ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_is_invalid_argument_naming_the_field(stub, request_, field):
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(request_, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("size", "limit"),
    [
        (2 << 20, "is over the size limit (2,097,1"),  # over --max-prompt-bytes (1 MiB)
        (10 << 20, "characters is over the limit of 4,000,000 characters"),  # over the table's prompt limit too
    ],
)
def test_an_oversized_prompt_is_invalid_argument_naming_the_field_and_the_limit(stub, size, limit):
    """Within the transport's limit: the handler, not the transport, says no."""
    huge = "x" * size
    for request, field in [
        (pb.PredictRequest(prompt=huge), "prompt"),
        (pb.PredictRequest(messages=[pb.ChatMessage(role="user", content=huge)]), "messages"),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith(f"{field}: ") and limit in caught.value.details()


def test_invalid_utf8_is_invalid_argument_naming_the_field(channel):
    raw_predict = channel.unary_unary(
        "/tierwise.v1.Router/Predict", response_deserializer=pb.PredictResponse.FromString
    )
    with pytest.raises(grpc.RpcError) as caught:
        raw_predict(b"\n\x03a\xff\xfe", timeout=10)  # field 1 (prompt), 3 bytes, not UTF-8
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("prompt: ")


def test_bad_batch_item_and_bad_stream_message_are_named(stub):
    batch = pb.PredictBatchRequest(requests=[pb.PredictRequest(prompt="ok"), pb.PredictRequest(prompt="")])
    with pytest.raises(grpc.RpcError) as caught:
        stub.PredictBatch(batch, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("requests[1].prompt: ")
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.PredictStream(iter([pb.PredictRequest(prompt="ok"), pb.PredictRequest()]), timeout=10))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "prompt" in caught.value.details()


def test_a_deadline_shorter_than_the_work_is_deadline_exceeded(stub):
    long_prompt = " ".join(PROMPTS) * 20
    batch = pb.PredictBatchRequest(requests=[pb.PredictRequest(prompt=f"{i} {long_prompt}") for i in range(1024)])
    with pytest.raises(grpc.RpcError) as caught:
        stub.PredictBatch(batch, timeout=0.02)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert stub.Predict(pb.PredictRequest(prompt=PROMPTS[0]), timeout=10).tier


def test_health_reports_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tierwise.v1.Router"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_describes_the_router_service(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    assert {"tierwise.v1.Router", "grpc.health.v1.Health"} <= set(database.get_services())
    service = DescriptorPool(database).FindServiceByName("tierwise.v1.Router")
    assert {m.name for m in service.methods} == {
        "Predict",
        "PredictBatch",
        "PredictStream",
        "GetModelInfo",
        "ReportOutcome",
        "ReportOutcomes",
    }
    assert service.methods_by_name["Predict"].input_type.fields_by_name["prompt"].type == 9  # string


def scrape(server) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as response:
        return response.read().decode()


def metric_value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_prometheus_metrics_count_calls_statuses_tiers_and_model(server, stub, router):
    before = scrape(server)
    ok_before = metric_value(before, "tierwise_requests_total", method="Predict", code="OK")
    bad_before = metric_value(before, "tierwise_requests_total", method="Predict", code="INVALID_ARGUMENT")
    tiers = [stub.Predict(pb.PredictRequest(prompt=p), timeout=10).tier for p in PROMPTS]
    with pytest.raises(grpc.RpcError):
        stub.Predict(pb.PredictRequest(), timeout=10)
    after = scrape(server)
    assert metric_value(after, "tierwise_requests_total", method="Predict", code="OK") == ok_before + len(PROMPTS)
    assert metric_value(after, "tierwise_requests_total", method="Predict", code="INVALID_ARGUMENT") == bad_before + 1
    assert metric_value(after, "tierwise_predicted_tier_total", tier=tiers[0]) >= tiers.count(tiers[0])
    assert metric_value(after, "tierwise_request_latency_seconds_count", method="Predict") > 0
    assert metric_value(after, "tierwise_model_info", version=router.version) == 1.0


def test_decision_log_records_each_decision(stub, decision_log, router):
    prompt = "Summarise the history of the Roman empire in three sentences."
    response = stub.Predict(pb.PredictRequest(prompt=prompt, request_id="logged-1"), timeout=10)
    deadline = time.monotonic() + 10
    row = None
    while row is None and time.monotonic() < deadline:
        rows = [json.loads(line) for line in decision_log.read_text().splitlines()] if decision_log.exists() else []
        row = next((r for r in rows if r["request_id"] == "logged-1"), None)
        time.sleep(0.05)
    assert row is not None, "decision never reached the log"
    assert row["prompt_sha256"] == hashlib.sha256(prompt.encode()).hexdigest()
    assert row["tier"] == response.tier
    assert row["probabilities"] == pytest.approx(dict(response.probabilities))
    assert row["model_version"] == router.version
    assert row["time"].endswith("+00:00")


def test_client_cli_prints_the_prediction(server):
    result = CliRunner().invoke(cli, ["client", "predict", "--target", server.target, "--request-id", "cli-1", "hi"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["request_id"] == "cli-1"
    assert answer["tier"] in answer["probabilities"]


def test_client_cli_reports_bad_input_with_the_status(server):
    result = CliRunner().invoke(cli, ["client", "predict", "--target", server.target, "--allowed-tier", "nope", "hi"])
    assert result.exit_code == 2
    assert "INVALID_ARGUMENT" in result.output and "allowed_tiers" in result.output
