"""gRPC's standard server metrics on real servers of both kinds: one started and one handled count per RPC with
its final code (a stream from open to close, whatever ended it), health checks, refused calls."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

KINDS = ["aio", "sync"]
ROUTER = 'grpc_method="{}",grpc_service="tierwise.v1.Router",grpc_type="{}"'
HEALTH = 'grpc_method="Check",grpc_service="grpc.health.v1.Health",grpc_type="unary"'


def scrape(server: ServerProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


def handled(values: dict[str, float], labels: str, code: str) -> float:
    return values.get(f'grpc_server_handled_total{{grpc_code="{code}",{labels}}}', 0.0)


def handled_total(values: dict[str, float]) -> float:
    """Every handled call, whatever its method and code."""
    return sum(value for name, value in values.items() if name.startswith("grpc_server_handled_total{"))


def wait_for(server: ServerProcess, condition, timeout_s: float = 10.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while not condition(values := scrape(server)):
        assert time.monotonic() < deadline, "the metrics never showed it"
        time.sleep(0.05)
    return values


def silent_call(target: str, path: str, timeout_ms: int) -> str:
    """Open a call with a deadline and send nothing more, ever: the grpc-status the server ends it with.

    A gRPC client cancels its own call when its deadline passes, and that cancel can reach the server before the
    server's clock gets there (the server's deadline starts when the call arrives), so a real client cannot
    show which status the server gives its own deadline. This caller speaks bare HTTP/2 and never cancels.
    """
    host, port = target.rsplit(":", 1)
    headers = {
        ":method": "POST",
        ":scheme": "http",
        ":path": path,
        ":authority": target,
        "content-type": "application/grpc",
        "te": "trailers",
        "grpc-timeout": f"{timeout_ms}m",
    }
    # HPACK literal fields without indexing, no Huffman coding: 0x00, name length, name, value length, value.
    block = b"".join(bytes([0, len(k)]) + k.encode() + bytes([len(v)]) + v.encode() for k, v in headers.items())
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(SETTINGS, 0, 0) + _frame(HEADERS, END_HEADERS, 1, block)
        )
        reader = sock.makefile("rb")
        while True:
            head = reader.read(9)
            assert len(head) == 9, "the server closed the connection"
            length, kind, flags, stream = (
                int.from_bytes(head[:3]),
                head[3],
                head[4],
                int.from_bytes(head[5:]) & 0x7FFFFFFF,
            )
            payload = reader.read(length)
            if kind == SETTINGS and not flags & ACK:
                sock.sendall(_frame(SETTINGS, ACK, 0))
            if stream == 1 and kind == HEADERS and flags & END_STREAM:
                status = payload.find(b"grpc-status")
                assert status >= 0, "the server's trailers name no grpc-status (it coded them with a table)"
                return payload[status + len(b"grpc-status") + 1 :][:1].decode()


HEADERS, SETTINGS = 0x1, 0x4
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3) + bytes([kind, flags]) + stream.to_bytes(4) + payload


def serve(model: Path, kind: str, *extra: str) -> ServerProcess:
    return ServerProcess(["--model", str(model), "--port", "0", "--metrics-port", "0", "--server-mode", kind, *extra])


@pytest.mark.parametrize("kind", KINDS)
def test_each_rpc_is_started_and_handled_once_with_its_final_code(trained_bundle, kind):
    predict, stream = ROUTER.format("Predict", "unary"), ROUTER.format("PredictStream", "bidi_stream")
    with serve(trained_bundle, kind) as server, grpc.insecure_channel(server.target) as channel:
        router = pb_grpc.RouterStub(channel)
        router.Predict(pb.PredictRequest(prompt="Say hello."), timeout=10)
        with pytest.raises(grpc.RpcError):
            router.Predict(pb.PredictRequest(), timeout=10)
        prompts = [pb.PredictRequest(prompt=f"Name {n} colours.") for n in range(3)]
        assert len(list(router.PredictStream(iter(prompts), timeout=10))) == 3
        health = health_pb2_grpc.HealthStub(channel)
        health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        with pytest.raises(grpc.RpcError):
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        # A call is counted as handled once its answer has gone out, so the scrape waits for all five to be counted.
        values = wait_for(server, lambda v: handled_total(v) >= 5)
        assert handled_total(values) == 5
        assert values[f"grpc_server_started_total{{{predict}}}"] == 2
        assert handled(values, predict, "OK") == handled(values, predict, "INVALID_ARGUMENT") == 1
        assert values[f"grpc_server_handling_seconds_count{{{predict}}}"] == 2
        assert values[f"grpc_server_started_total{{{stream}}}"] == 1
        assert handled(values, stream, "OK") == 1  # one stream, three messages
        assert values['tierwise_requests_total{code="OK",method="PredictStream"}'] == 3
        assert handled(values, HEALTH, "OK") == handled(values, HEALTH, "NOT_FOUND") == 1

        calls = router.PredictStream(iter([*prompts, pb.PredictRequest()]), timeout=10)
        with pytest.raises(grpc.RpcError) as invalid:
            list(calls)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert silent_call(server.target, "/tierwise.v1.Router/PredictStream", timeout_ms=300) == "4"
        values = wait_for(server, lambda v: handled(v, stream, "DEADLINE_EXCEEDED") == 1)
        assert handled(values, stream, "INVALID_ARGUMENT") == 1 and handled(values, stream, "OK") == 1
        assert values[f"grpc_server_started_total{{{stream}}}"] == 3


@pytest.mark.parametrize("kind", KINDS)
def test_a_call_refused_for_its_token_is_handled_unauthenticated_under_its_method(trained_bundle, kind, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret")
    with serve(trained_bundle, kind, "--auth-token-file", str(token)) as server:
        with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError):
            pb_grpc.RouterStub(channel).Predict(pb.PredictRequest(prompt="Say hello."), timeout=10)
        values = scrape(server)
    predict = ROUTER.format("Predict", "unary")
    assert values[f"grpc_server_started_total{{{predict}}}"] == 1
    assert handled(values, predict, "UNAUTHENTICATED") == 1
