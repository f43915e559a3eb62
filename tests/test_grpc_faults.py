"""The serving fault suite: what a careless or hostile caller, an operator or a full disk does to a real server.

Idle streams, unauthenticated floods, cut-off drains, log rotation under load and a full disk, each on a real
`tierwise serve` on loopback, bounded in calls and time.
"""

from __future__ import annotations

import json
import queue
import random
import re
import signal
import string
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tierwise.classifier.decider import BATCH_CHUNK
from tierwise.classifier.router import Router
from tierwise.serving.config import ServeConfig
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

pytestmark = pytest.mark.fault

TOKEN = "fault-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
REQUEST = pb.PredictRequest(prompt="Say hello to the team.")
IDLE_STREAMS = 20
FAST_S = 0.1
KINDS = ["sync", "aio"]


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "token"
    path.write_text(TOKEN)
    return path


def serve_args(model: Path, kind: str, *extra: str) -> list[str]:
    return ["--model", str(model), "--host", "127.0.0.1", "--port", "0", "--server-mode", kind, *extra]


def scrape(server: ServerProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as response:
        return response.read().decode()


def series(text: str) -> dict[str, float]:
    """Every sample of a /metrics page by name and labels."""
    samples = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in samples}


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# --- idle streams --------------------------------------------------------------------------------------


class IdleStreams:
    """`count` PredictStreams on one channel that send nothing until `answer_one` is called."""

    def __init__(self, channel: grpc.Channel, count: int, metadata):
        stub = pb_grpc.RouterStub(channel)
        self._outboxes: list[queue.SimpleQueue[pb.PredictRequest | None]] = [queue.SimpleQueue() for _ in range(count)]
        self.calls = [stub.PredictStream(self._requests(box), timeout=60, metadata=metadata) for box in self._outboxes]

    @staticmethod
    def _requests(outbox: queue.SimpleQueue):
        while (request := outbox.get()) is not None:
            yield request

    def ended(self) -> list[grpc.StatusCode]:
        return [call.code() for call in self.calls if call.done()]

    def open(self) -> list[int]:
        return [i for i, call in enumerate(self.calls) if not call.done()]

    def answer_one(self, index: int) -> pb.PredictResponse:
        """Send one request on a stream and read its response."""
        self._outboxes[index].put(REQUEST)
        return next(self.calls[index])

    def close(self) -> None:
        for outbox in self._outboxes:
            outbox.put(None)
        for call in self.calls:
            call.cancel()


def answer_times(channel: grpc.Channel, metadata) -> dict[str, list[float]]:
    """Seconds each of three Predict and three health Check calls took."""
    stub = pb_grpc.RouterStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    calls = {
        "Predict": lambda: stub.Predict(REQUEST, timeout=5, metadata=metadata),
        "health": lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    for name, call in calls.items():
        for _ in range(3):
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("authenticated", [True, False], ids=["authenticated", "unauthenticated"])
def test_idle_streams_leave_predict_and_health_answering(trained_bundle, token_file, kind, authenticated):
    args = serve_args(trained_bundle, kind, "--no-metrics", "--auth-token-file", str(token_file))
    with (
        ServerProcess(args) as server,
        grpc.insecure_channel(server.target) as probe,
        grpc.insecure_channel(server.target) as crowd,
    ):
        answer_times(probe, AUTH)  # connected and warm before the streams arrive
        streams = IdleStreams(crowd, IDLE_STREAMS, AUTH if authenticated else None)
        try:
            if not authenticated:  # refused before the server waits for a message that never comes
                wait_until(lambda: len(streams.ended()) == IDLE_STREAMS, 5, "the unauthenticated streams' refusal")
                assert set(streams.ended()) == {grpc.StatusCode.UNAUTHENTICATED}
            elif kind == "sync":  # the sync server's stream threads take the first ones and refuse the rest
                admitted = ServeConfig(model="").max_streams
                wait_until(lambda: len(streams.ended()) == IDLE_STREAMS - admitted, 5, "the excess streams' refusal")
                assert set(streams.ended()) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
                assert all("--max-streams" in call.details() for call in streams.calls if call.done())
                assert len(streams.open()) == admitted
            else:
                time.sleep(0.3)  # the asyncio server takes every stream; nothing to wait for
                assert len(streams.open()) == IDLE_STREAMS
            times = answer_times(probe, AUTH)
            assert all(seconds < FAST_S for name in times for seconds in times[name]), times
            for index in streams.open():  # the streams still open were live all along
                assert streams.answer_one(index).tier
        finally:
            streams.close()


def test_a_sync_stream_slot_is_free_again_once_its_stream_ends(trained_bundle):
    args = serve_args(trained_bundle, "sync", "--no-metrics", "--max-streams", "2")
    with ServerProcess(args) as server, grpc.insecure_channel(server.target) as channel:
        held = IdleStreams(channel, 2, None)
        assert [held.answer_one(i).tier != "" for i in range(2)] == [True, True]
        extra = IdleStreams(channel, 1, None)
        wait_until(lambda: extra.ended() == [grpc.StatusCode.RESOURCE_EXHAUSTED], 5, "the third stream's refusal")
        held.close()

        def admitted() -> bool:
            stream = IdleStreams(channel, 1, None)
            try:
                return stream.answer_one(0).tier != ""
            except grpc.RpcError:  # refused: no slot yet
                return False
            finally:
                stream.close()

        wait_until(admitted, 5, "a stream to be admitted again")


# --- metric series under a flood of unknown methods ----------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_methods_are_counted_under_one_label(trained_bundle, token_file, kind):
    args = serve_args(trained_bundle, kind, "--metrics-port", "0", "--auth-token-file", str(token_file))
    with ServerProcess(args) as server, grpc.insecure_channel(server.target) as channel:

        def call_unknown() -> grpc.StatusCode:
            with pytest.raises(grpc.RpcError) as caught:
                channel.unary_unary(f"/x/{uuid.uuid4()}")(b"", timeout=10)
            return caught.value.code()

        assert call_unknown() == grpc.StatusCode.UNAUTHENTICATED  # the `unknown` series exist from here on
        before = series(scrape(server))
        codes = {call_unknown() for _ in range(5000)}
        after = series(scrape(server))
    assert codes == {grpc.StatusCode.UNAUTHENTICATED}
    assert after.keys() == before.keys()
    assert after['tierwise_requests_total{code="UNAUTHENTICATED",method="unknown"}'] == 5001
    unknown = 'grpc_code="UNAUTHENTICATED",grpc_method="unknown",grpc_service="unknown",grpc_type="unknown"'
    assert after[f"grpc_server_handled_total{{{unknown}}}"] == 5001


# --- a drain cut off by --grace -------------------------------------------------------------------------


def distinct_prompts(count: int, rng: random.Random) -> list[str]:
    """Prompts of fresh made-up words, so no cache spares the tokenizer any work."""
    letters = string.ascii_lowercase
    return [" ".join("".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(250)) for _ in range(count)]


def batch_lasting(router: Router, seconds: float, rng: random.Random) -> tuple[pb.PredictBatchRequest, float]:
    """A batch that takes at least about `seconds` to classify here, and the time one chunk of it takes.

    The chunk time is the fastest of three, so a busy moment during the measurement cannot shorten the batch.
    """
    timings = []
    for _ in range(3):
        prompts = distinct_prompts(BATCH_CHUNK, rng)
        start = time.perf_counter()
        router.predict_batch(prompts)
        timings.append(time.perf_counter() - start)
    chunk_s = min(timings)
    chunks = max(2, round(seconds / chunk_s))
    prompts = distinct_prompts(chunks * BATCH_CHUNK, rng)
    return pb.PredictBatchRequest(requests=[pb.PredictRequest(prompt=p) for p in prompts]), chunk_s


@pytest.mark.parametrize("kind", KINDS)
def test_grace_cuts_a_running_batch_short(trained_bundle, kind):
    grace = 0.3
    batch, chunk_s = batch_lasting(Router.load(trained_bundle), 4.0, random.Random(5))
    extra = ("--no-metrics", "--grace", str(grace), "--max-batch", str(len(batch.requests)))
    with (
        ServerProcess(serve_args(trained_bundle, kind, *extra)) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        running = pb_grpc.RouterStub(channel).PredictBatch.future(batch, timeout=60)
        time.sleep(0.3 + 2 * chunk_s)  # the batch is being classified
        start = time.perf_counter()
        server.send(signal.SIGTERM)
        code = server.wait(30)
        stopped_s = time.perf_counter() - start
        assert running.exception() is not None and running.code() == grpc.StatusCode.UNAVAILABLE
    assert code == 0
    assert "draining in-flight calls (up to 0.3s)" in server.log
    bound = grace + 2 * chunk_s + 0.5  # the chunk running at the end of the grace, and the process's exit
    assert bound < 2.0  # well short of the batch's 4 s, so a drain that waits for the batch cannot pass
    assert stopped_s < bound, (stopped_s, chunk_s, server.log)


# --- the decision log: rotation under load, a full disk ------------------------------------------------


class Callers:
    """Client threads calling Predict with unique request ids until stopped; `answered` holds the ids answered."""

    def __init__(self, target: str, threads: int = 4):
        self.answered: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(target, k)) for k in range(threads)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, target: str, k: int) -> None:
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            predict = pb_grpc.RouterStub(channel).Predict
            i = 0
            while not self._stop.is_set():
                request_id = f"c{k}-{i}"
                i += 1
                try:
                    predict(pb.PredictRequest(prompt=f"Question {request_id}", request_id=request_id), timeout=10)
                except grpc.RpcError as exc:
                    self.failures.append(f"{exc.code().name}: {exc.details()}")
                else:
                    self.answered.append(request_id)


def logged_ids(path: Path) -> list[str]:
    return [json.loads(line)["request_id"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("kind", KINDS)
def test_rotation_and_sighup_lose_no_decision_row_under_load(trained_bundle, tmp_path, kind):
    decisions, rotated = tmp_path / "decisions.jsonl", tmp_path / "decisions.jsonl.1"
    extra = ("--no-metrics", "--reload-interval", "0", "--decision-log", str(decisions))
    with ServerProcess(serve_args(trained_bundle, kind, *extra)) as server:
        callers = Callers(server.target)
        try:
            wait_until(lambda: len(callers.answered) >= 300, 30, "calls before the rotation")
            decisions.rename(rotated)  # what logrotate does, then its postrotate: kill -HUP
            server.send(signal.SIGHUP)
            server.wait_for_log("decisions.jsonl: reopened", timeout_s=10)
            after_reopen = len(callers.answered)
            wait_until(lambda: len(callers.answered) >= after_reopen + 300, 30, "calls after the rotation")
        finally:
            callers.stop()
        assert server.stop() == 0, server.log
    assert callers.failures == []
    old, new = logged_ids(rotated), logged_ids(decisions)
    assert len(old) >= 300 and len(new) >= 300
    assert sorted(old + new) == sorted(callers.answered)


def test_rows_a_full_disk_refuses_are_counted(trained_bundle):
    args = serve_args(trained_bundle, "aio", "--metrics-port", "0", "--decision-log", "/dev/full")
    dropped = 'tierwise_log_rows_dropped_total{log="decisions"}'
    with ServerProcess(args) as server:
        assert series(scrape(server))[dropped] == 0
        with grpc.insecure_channel(server.target) as channel:
            for i in range(5):
                pb_grpc.RouterStub(channel).Predict(pb.PredictRequest(prompt=f"question {i}"), timeout=10)
        wait_until(lambda: series(scrape(server))[dropped] == 5, 10, "the dropped rows to be counted")
        assert re.search(r"/dev/full: \d+ rows? dropped, not written \(No space left on device\)", server.log)
