"""Fault suite (Trust item 5, gRPC): an oversized field of a Predict call is refused with INVALID_ARGUMENT naming the
field and the limit, before anything is remembered or logged, so no caller can grow the server's memory or logs."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from tierwise.classifier.limits import REQUEST_ID
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

from tests.helpers import logged_rows

pytestmark = pytest.mark.fault

CALLS = 600
HUGE_ID = "r" * (4 << 20)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(trained_bundle, tmp_path):
    log = tmp_path / "decisions.jsonl"
    args = ["--model", str(trained_bundle), "--host", "127.0.0.1", "--port", "0", "--no-metrics"]
    with ServerProcess([*args, "--decision-log", str(log)]) as running:
        running.decision_log = log
        yield running


def test_600_predicts_with_a_4_mb_request_id_are_refused_and_leave_nothing_behind(server):
    options = [("grpc.max_send_message_length", 8 << 20)]
    with grpc.insecure_channel(server.target, options=options) as channel:
        stub = pb_grpc.RouterStub(channel)
        assert stub.Predict(pb.PredictRequest(prompt="warm up", request_id="ok-1"), timeout=30).request_id == "ok-1"
        before = rss_mb(server.proc.pid)
        refusals = set()
        for _ in range(CALLS):
            with pytest.raises(grpc.RpcError) as error:
                stub.Predict(pb.PredictRequest(prompt="Say hi.", request_id=HUGE_ID), timeout=30)
            refusals.add((error.value.code(), error.value.details()))
        batch = pb.PredictBatchRequest(
            requests=[pb.PredictRequest(prompt="fine"), pb.PredictRequest(prompt="x", request_id=HUGE_ID)]
        )
        with pytest.raises(grpc.RpcError) as error:
            stub.PredictBatch(batch, timeout=30)
        after = rss_mb(server.proc.pid)
        assert stub.Predict(pb.PredictRequest(prompt="still serving", request_id="ok-2"), timeout=30).tier
    limit = f"request_id: {len(HUGE_ID):,} characters is over the limit of {REQUEST_ID.maximum} characters"
    assert refusals == {(grpc.StatusCode.INVALID_ARGUMENT, limit)}
    assert (error.value.code(), error.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, f"requests[1].{limit}")
    # Keeping the ids would take 2.4 GB; what the allocator keeps of the freed 4 MB buffers stays well under half.
    kept = CALLS * len(HUGE_ID) / 2**20
    assert after - before < kept / 2, f"RSS grew {after - before:.0f} MB over {CALLS} refused calls"
    rows = logged_rows(server.decision_log, ["ok-1", "ok-2"])
    assert [row["request_id"] for row in rows] == ["ok-1", "ok-2"]
    assert server.decision_log.stat().st_size < 10_000, "refused calls are not logged"
