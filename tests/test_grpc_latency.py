"""Latency bands over the wire: real `tierwise serve` processes on loopback, called through the proto fields."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from click.testing import CliRunner
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.router import Router
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

from tierwise.cli import main as cli

HARD = "Analyze the trade-offs of a merger under antitrust review, step by step, and justify each move."
EASY = "Say hello to the team in a friendly way."
LOOPBACK = ["--host", "127.0.0.1", "--port", "0", "--no-metrics"]


def serve(bundle, *extra: str) -> ServerProcess:
    return ServerProcess(["--model", str(bundle), *LOOPBACK, *extra])


@contextmanager
def served_stub(bundle, *extra: str) -> Iterator[pb_grpc.RouterStub]:
    """A Router stub on a fresh server of `bundle` started with `extra` options."""
    with serve(bundle, *extra) as server, grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.RouterStub(channel)


@pytest.fixture(scope="module")
def router(trained_bundle) -> Router:
    return Router.load(trained_bundle)


@pytest.fixture(scope="module")
def tight_budget_ms(router) -> float:
    """Just under the top tier's fastest attempts: the top tier cannot finish, the cheapest tier often can."""
    times = router.policy.times
    budget = times.tiers[-1].quantile(0.01) - 1
    assert times.within(1, budget) > 0.2, "the cheapest tier must often answer inside the budget"
    return budget


@pytest.fixture(scope="module")
def stub(trained_bundle):
    with served_stub(trained_bundle) as stub:
        yield stub


def predict(stub, prompt: str, **fields) -> pb.PredictResponse:
    return stub.Predict(pb.PredictRequest(prompt=prompt, **fields), timeout=10)


def test_a_tight_budget_moves_a_request_to_a_faster_tier(stub, router, tight_budget_ms):
    unbounded = predict(stub, HARD)
    assert unbounded.tier == "opus" and unbounded.latency_budget_met
    assert unbounded.HasField("expected_latency_ms")

    bounded = predict(stub, HARD, max_latency_ms=tight_budget_ms)

    assert bounded.tier != "opus" and "opus" not in bounded.fallback_chain
    times = router.policy.times
    assert times.mean_ms[router.ladder.index(bounded.tier)] < times.mean_ms[-1]
    assert bounded.expected_latency_ms < unbounded.expected_latency_ms
    local = router.predict(HARD, RouteOptions(max_latency_ms=tight_budget_ms))
    assert (bounded.tier, list(bounded.fallback_chain)) == (local.tier, local.fallback_chain)
    assert bounded.latency_budget_met is local.latency_budget_met


def test_async_halves_the_expected_cost_of_the_same_chain(stub):
    for prompt in (HARD, EASY):
        for mode in (pb.THRESHOLD, pb.COST):
            interactive = predict(stub, prompt, mode=mode, latency_band=pb.INTERACTIVE)
            batch = predict(stub, prompt, mode=mode, latency_band=pb.ASYNC)
            assert list(batch.fallback_chain) == list(interactive.fallback_chain)
            assert batch.expected_cost_usd == pytest.approx(interactive.expected_cost_usd / 2)
            assert batch.use_batch_api and not interactive.use_batch_api
            assert not batch.HasField("expected_latency_ms")


def test_tolerant_prices_waiting_against_cost(stub, router):
    free = predict(stub, HARD, latency_band=pb.TOLERANT, value_of_time_usd_per_s=0.0)
    dear = predict(stub, HARD, latency_band=pb.TOLERANT, value_of_time_usd_per_s=10.0)
    assert free.mode == dear.mode == pb.COST
    assert free.expected_cost_usd <= dear.expected_cost_usd
    assert dear.expected_latency_ms <= free.expected_latency_ms
    local = router.predict(HARD, RouteOptions(latency_band="tolerant", value_of_time_usd_per_s=10.0))
    assert list(dear.fallback_chain) == local.fallback_chain


def test_batches_apply_each_request_its_own_band(stub, tight_budget_ms):
    requests = [
        pb.PredictRequest(prompt=HARD),
        pb.PredictRequest(prompt=HARD, max_latency_ms=tight_budget_ms),
        pb.PredictRequest(prompt=HARD, latency_band=pb.ASYNC),
    ]
    plain, bounded, batch = stub.PredictBatch(pb.PredictBatchRequest(requests=requests), timeout=10).responses
    assert plain.tier == "opus" and bounded.tier != "opus"
    assert batch.expected_cost_usd == pytest.approx(plain.expected_cost_usd / 2)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_latency_ms": 0.0}, "max_latency_ms"),
        ({"max_latency_ms": -1.0}, "max_latency_ms"),
        ({"latency_band": pb.TOLERANT, "value_of_time_usd_per_s": -0.5}, "value_of_time_usd_per_s"),
    ],
)
def test_bad_band_values_are_invalid_arguments_naming_the_field(stub, fields, field):
    with pytest.raises(grpc.RpcError) as error:
        predict(stub, HARD, **fields)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(f"{field}: ")


def test_model_info_shows_each_tier_time_model(stub, router):
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    for tier, time in zip(info.tiers, router.policy.times.tiers, strict=True):
        assert tier.time.source.startswith("logs: ")
        assert tier.time.latency_ms_p50 == pytest.approx(time.quantile(0.5))
        assert tier.time.latency_ms_p50 < tier.time.latency_ms_p90 < tier.time.latency_ms_p99
        assert tier.time.first_token_ms > 0 and tier.time.output_tokens_per_s > 0
    assert info.tiers[0].time.latency_ms_p50 < info.tiers[-1].time.latency_ms_p50


def test_the_server_defaults_apply_when_a_request_sets_none(trained_bundle, router, tight_budget_ms):
    defaults = ["--max-latency-ms", str(tight_budget_ms), "--value-of-time-usd-per-s", "10"]
    with served_stub(trained_bundle, *defaults) as stub:
        assert predict(stub, HARD).tier != "opus"
        assert predict(stub, HARD, max_latency_ms=3_600_000).tier == "opus"
        tolerant = predict(stub, HARD, latency_band=pb.TOLERANT)
        assert tolerant.mode == pb.COST and tolerant.latency_budget_met  # a budget is INTERACTIVE's
        local = router.predict(HARD, RouteOptions(latency_band="tolerant", value_of_time_usd_per_s=10.0))
        assert list(tolerant.fallback_chain) == local.fallback_chain
        assert predict(stub, HARD, latency_band=pb.TOLERANT, value_of_time_usd_per_s=0.0).mode == pb.COST


def test_a_model_without_a_time_model_ignores_the_default_and_refuses_an_explicit_budget(untimed_bundle):
    with served_stub(untimed_bundle, "--max-latency-ms", "100") as stub:
        plain = predict(stub, HARD)
        assert plain.latency_budget_met and not plain.HasField("expected_latency_ms")
        with pytest.raises(grpc.RpcError) as error:
            predict(stub, HARD, max_latency_ms=5000)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "max_latency_ms: this model has no time model" in error.value.details()
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        assert not info.tiers[0].HasField("time")


def test_client_predict_sends_the_band_fields(trained_bundle, tight_budget_ms):
    with serve(trained_bundle) as server:
        base = ["client", "predict", HARD, "--target", server.target]
        bounded = CliRunner().invoke(cli, [*base, "--max-latency-ms", str(tight_budget_ms)])
        batch = CliRunner().invoke(cli, [*base, "--latency-band", "async"])
    assert bounded.exit_code == 0 and batch.exit_code == 0, bounded.output + batch.output
    assert json.loads(bounded.output)["tier"] != "opus"
    assert json.loads(batch.output)["use_batch_api"] is True


def test_tierwise_predict_takes_the_same_options(trained_bundle, tight_budget_ms):
    base = ["predict", HARD, "--model", str(trained_bundle)]
    plain = json.loads(CliRunner().invoke(cli, base).output)
    bounded = json.loads(CliRunner().invoke(cli, [*base, "--max-latency-ms", str(tight_budget_ms)]).output)
    batch = json.loads(CliRunner().invoke(cli, [*base, "--latency-band", "ASYNC"]).output)
    assert plain["tier"] == "opus" and bounded["tier"] != "opus"
    assert batch["expected_cost_usd"] == pytest.approx(plain["expected_cost_usd"] / 2)
    assert batch["expected_latency_ms"] is None and plain["expected_latency_ms"] > 0
