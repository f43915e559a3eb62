"""Process lifecycle for both server kinds: SIGTERM stops accepting, drains in-flight calls, exits 0."""

from __future__ import annotations

import os
import queue
import re
import signal
import threading
import time

import grpc
import pytest
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

from tests.helpers import run_serve, taken_port

MODES = [["--server-mode", "sync", "--threads", "2"], ["--server-mode", "aio"]]


def serve_args(model, mode_args):
    return ["--model", str(model), "--host", "127.0.0.1", "--port", "0", "--no-metrics", *mode_args]


@pytest.mark.parametrize("mode_args", MODES, ids=["sync", "aio"])
def test_sigterm_drains_an_open_stream_then_exits_zero(trained_bundle, mode_args):
    with ServerProcess(serve_args(trained_bundle, mode_args)) as server:
        outbox: queue.SimpleQueue[pb.PredictRequest | None] = queue.SimpleQueue()

        def requests():
            while (request := outbox.get()) is not None:
                yield request

        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RouterStub(channel)
            responses = stub.PredictStream(requests(), timeout=30)
            answered = []
            reader = threading.Thread(target=lambda: answered.extend(r.request_id for r in responses))
            reader.start()
            outbox.put(pb.PredictRequest(prompt="before", request_id="0"))
            time.sleep(0.3)
            server.send(signal.SIGTERM)
            server.wait_for_log("shutting down")
            with grpc.insecure_channel(server.target) as fresh:
                with pytest.raises(grpc.RpcError) as refused:
                    pb_grpc.RouterStub(fresh).Predict(pb.PredictRequest(prompt="late"), timeout=2)
                assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            for i in range(1, 11):  # the call in flight keeps being served during the drain
                outbox.put(pb.PredictRequest(prompt=f"during shutdown {i}", request_id=str(i)))
                time.sleep(0.05)
            outbox.put(None)
            reader.join(30)
        assert answered == [str(i) for i in range(11)]
        assert server.stop() == 0
        assert "stopped" in server.log


@pytest.mark.parametrize("mode_args", MODES, ids=["sync", "aio"])
def test_each_server_kind_serves_every_rpc(trained_bundle, mode_args):
    with (
        ServerProcess(serve_args(trained_bundle, mode_args)) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = pb_grpc.RouterStub(channel)
        single = stub.Predict(pb.PredictRequest(prompt="Say hi."), timeout=10)
        batch = stub.PredictBatch(
            pb.PredictBatchRequest(requests=[pb.PredictRequest(prompt="Say hi.")] * 3), timeout=10
        )
        streamed = list(stub.PredictStream(iter([pb.PredictRequest(prompt="Say hi.")] * 3), timeout=10))
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        outcome = pb.Outcome(request_id=single.request_id, model=single.model, success=True)
        ack = stub.ReportOutcome(outcome, timeout=10)
        summary = stub.ReportOutcomes(iter([outcome, pb.Outcome(request_id="elsewhere", model="m")]), timeout=10)
        assert {r.tier for r in [*batch.responses, *streamed]} == {single.tier}
        assert info.version == single.model_version
        assert ack.known_request
        assert (summary.received, summary.unknown_requests) == (2, 1)
        raw = channel.unary_unary("/tierwise.v1.Router/Predict")
        with pytest.raises(grpc.RpcError) as caught:
            raw(b"\n\x01\xff", timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith("prompt: ")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_taken_metrics_port_is_a_clear_error_and_nothing_keeps_running(trained_bundle, workers):
    with taken_port() as port:
        args = ["--model", str(trained_bundle), "--host", "127.0.0.1", "--port", "0", "--metrics-port", str(port)]
        result = run_serve([*args, "--workers", workers])
    assert result.returncode != 0
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    started = re.findall(r"worker \d+ started \(pid (\d+)\)", result.stderr)
    assert len(started) == (2 if workers == "2" else 0)
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
