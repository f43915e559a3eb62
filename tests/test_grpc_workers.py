"""`tierwise serve --workers N`: processes sharing one port, supervised: reload, metrics, restart, drain."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tierwise.classifier.router import Router
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

from tests.helpers import run_serve, taken_port

CONNECTIONS = 24  # the chance that the kernel puts every connection on one of 2 workers is 2**-23


def serve_args(model: Path, *extra: str) -> list[str]:
    return ["--model", str(model), "--host", "127.0.0.1", "--port", "0", "--workers", "2", *extra]


def predict_on_fresh_connections(target: str, count: int) -> list[pb.PredictResponse]:
    """One call on each of `count` separate TCP connections, so the kernel spreads them over the workers."""
    responses = []
    for i in range(count):
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            request = pb.PredictRequest(prompt=f"Summarise item {i} of the list.", request_id=f"r{i}")
            responses.append(pb_grpc.RouterStub(channel).Predict(request, timeout=10))
    return responses


def worker_pids(server: ServerProcess) -> dict[int, int]:
    """The latest pid of each worker, from the supervisor's log once it says both started (the ready line can come
    before the log's lines are read)."""
    for worker in (0, 1):
        server.wait_for_log(rf"worker {worker} started \(pid \d+\)")
    return {int(i): int(pid) for i, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", server.log)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def metric_samples(text: str, name: str) -> dict[str, float]:
    """Value of a metric's samples by their `worker` label (summed over the other labels)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            worker = re.search(r'worker="(\d+)"', line).group(1)
            values[worker] = values.get(worker, 0.0) + float(line.rsplit(" ", 1)[1])
    return values


def test_workers_share_the_port_health_metrics_and_decision_log(trained_bundle, tmp_path):
    decisions = tmp_path / "decisions.jsonl"
    args = serve_args(trained_bundle, "--metrics-port", "0", "--decision-log", str(decisions))
    with ServerProcess(args) as server:
        assert "2 workers" in server.ready_line
        assert set(worker_pids(server)) == {0, 1}
        with grpc.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        responses = predict_on_fresh_connections(server.target, CONNECTIONS)
        assert {r.model_version for r in responses} == {Router.load(trained_bundle).version}
        url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as scrape:
            text = scrape.read().decode()
        per_worker = metric_samples(text, "tierwise_requests_total")
        assert set(per_worker) == {"0", "1"} and all(count > 0 for count in per_worker.values())
        assert sum(per_worker.values()) == CONNECTIONS
        assert set(metric_samples(text, "tierwise_model_info")) == {"0", "1"}
        assert sum(metric_samples(text, "grpc_server_handled_total").values()) >= CONNECTIONS
        memory = metric_samples(text, "process_resident_memory_bytes")  # each worker's own process figures
        assert set(memory) == {"0", "1"} and all(rss > 0 for rss in memory.values())
        assert server.stop() == 0, server.log
    rows = [json.loads(line) for line in decisions.read_text().splitlines()]
    assert sorted(row["request_id"] for row in rows) == sorted(f"r{i}" for i in range(CONNECTIONS))


def test_sighup_reloads_every_worker(trained_bundle, other_bundle, tmp_path):
    served = tmp_path / "bundle"
    shutil.copytree(trained_bundle, served)
    with ServerProcess(serve_args(served, "--no-metrics", "--reload-interval", "0")) as server:
        new_version = Router.load(other_bundle).version
        staging = tmp_path / "staging"
        shutil.copytree(other_bundle, staging)
        shutil.rmtree(served)
        staging.rename(served)
        server.send(signal.SIGHUP)
        for worker in (0, 1):
            server.wait_for_log(rf"\[worker {worker}\]: serving model {new_version}")
        responses = predict_on_fresh_connections(server.target, CONNECTIONS)
        assert {r.model_version for r in responses} == {new_version}


def test_a_dead_worker_is_replaced_and_sigterm_drains_all(trained_bundle):
    with ServerProcess(serve_args(trained_bundle, "--no-metrics")) as server:
        first = worker_pids(server)
        os.kill(first[0], signal.SIGKILL)
        server.wait_for_log(r"worker 0 \(pid \d+\) exited with -9; restarting it")
        wait_until(lambda: worker_pids(server)[0] != first[0])
        server.wait_for_log(rf"worker 0 started \(pid {worker_pids(server)[0]}\)")
        assert len(predict_on_fresh_connections(server.target, CONNECTIONS)) == CONNECTIONS
        pids = worker_pids(server)
        assert server.stop() == 0, server.log
        assert not any(alive(pid) for pid in pids.values())


def test_workers_exit_when_the_supervisor_is_killed(trained_bundle):
    server = ServerProcess(serve_args(trained_bundle, "--no-metrics"))
    pids = worker_pids(server)
    assert len(pids) == 2 and all(alive(pid) for pid in pids.values())
    server.proc.kill()
    server.proc.wait()
    wait_until(lambda: not any(alive(pid) for pid in pids.values()))


def test_a_taken_port_is_refused_before_any_worker_starts(trained_bundle):
    with taken_port() as port:
        result = run_serve(
            ["--model", str(trained_bundle), "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "worker 0 started" not in result.stderr


def test_a_model_that_cannot_load_stops_the_pool_with_a_clear_error(tmp_path):
    args = ["--model", str(tmp_path / "missing"), "--host", "127.0.0.1", "--port", "0", "--workers", "2"]
    result = run_serve([*args, "--no-metrics"])
    assert result.returncode == 2
    assert "cannot serve" in result.stderr and str(tmp_path / "missing") in result.stderr
    assert "worker 0 did not start" in result.stderr
    assert "Traceback" not in result.stderr
