"""What a caller or a failing disk can do to a running server: grow its memory of recent decisions, send outsized
outcome fields, fill its disk, tear a log row; and start-up inputs that must stop it in one line (an unwritable
log path, a certificate given as the TLS key)."""

from __future__ import annotations

import logging
import re
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tierwise.classifier.limits import ERROR, LIMITS, MODEL, RECENT_DECISIONS_BYTES, REQUEST_ID
from tierwise.serving.jsonl_log import JsonlAppender
from tierwise.serving.process import ServerProcess
from tierwise.serving.recent import RecentDecisions, entry_bytes
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

from tests.helpers import logged_rows, run_serve
from tests.test_grpc_security import self_signed

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[1]
TIERS = ("haiku", "sonnet", "opus")
DROPPED = re.compile(r"ERROR tierwise\.serving: /dev/full: (\d+) rows? dropped")


def probabilities(i: int) -> dict[str, float]:
    return {tier: (i % 97 + k) / 100 for k, tier in enumerate(TIERS)}


def measured_bytes(memory: RecentDecisions, entries: Iterator[tuple[str, dict[str, float]]]) -> int:
    """What remembering `entries` (made as they are taken) adds to the heap, as tracemalloc counts it."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for request_id, probs in entries:
            memory.remember(request_id, probs)
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_the_memory_of_recent_decisions_is_bounded_in_bytes_whatever_the_request_ids():
    memory = RecentDecisions(100_000, max_bytes=1 << 20)
    huge = ((f"{i:02}-" + "x" * 100_000, probabilities(i)) for i in range(40))  # 4 MB of ids
    grown = measured_bytes(memory, huge)
    assert memory.bytes <= memory.max_bytes and grown <= memory.max_bytes
    newest = f"39-{'x' * 100_000}"
    assert len(memory) == (1 << 20) // entry_bytes(newest, probabilities(39)) == 10  # the newest ten
    assert memory.get(newest) == probabilities(39) and memory.get(f"29-{'x' * 100_000}") is None
    assert RecentDecisions(1).max_bytes == RECENT_DECISIONS_BYTES


def test_a_remembered_decision_takes_about_0_4_kb_and_is_never_undercounted():
    """The README's figure: 36-character request_ids, three tiers."""
    count = 20_000
    memory = RecentDecisions(count)
    per_entry = measured_bytes(memory, ((str(uuid.uuid4()), probabilities(i)) for i in range(count))) / count
    assert 350 <= per_entry <= 500, per_entry
    assert memory.bytes / count >= per_entry
    readme = (ROOT / "README.md").read_text()
    assert f"never more than {RECENT_DECISIONS_BYTES >> 20} MiB whatever the ids" in readme
    assert f"at most `--recent-decisions` entries and {RECENT_DECISIONS_BYTES >> 20} MiB" in readme


def test_the_readme_input_limits_table_is_classifier_limits():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Input limits", 1)[1].split("\n\n")[2]
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    assert [(name.strip(), most.strip()) for name, most in rows] == [
        (f"`{limit.name}`", f"{limit.maximum:,} {limit.unit}".strip()) for limit in LIMITS
    ]


@pytest.fixture(scope="module")
def server(trained_bundle, tmp_path_factory):
    """A real server writing an outcome log, with its stub and the log's path."""
    outcomes = tmp_path_factory.mktemp("limits") / "outcomes.jsonl"
    args = ["--model", str(trained_bundle), "--port", "0", "--no-metrics", "--outcome-log", str(outcomes)]
    with ServerProcess(args) as running, grpc.insecure_channel(running.target) as channel:
        yield pb_grpc.RouterStub(channel), outcomes


OVERSIZED = [
    (REQUEST_ID, pb.Outcome(request_id="r" * (REQUEST_ID.maximum + 1), model="claude-haiku-4-5")),
    (MODEL, pb.Outcome(request_id="too-long-model", model="m" * 5_000_000)),
    (ERROR, pb.Outcome(request_id="too-long-error", model="claude-haiku-4-5", error="e" * 5_000_000)),
]


@pytest.mark.parametrize(("limit", "outcome"), OVERSIZED, ids=[limit.name for limit, _ in OVERSIZED])
def test_an_outcome_field_over_its_limit_is_invalid_argument_naming_field_and_limit(server, limit, outcome):
    stub, outcomes = server
    with pytest.raises(grpc.RpcError) as caught:
        stub.ReportOutcome(outcome, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    size = len(getattr(outcome, limit.name))
    assert caught.value.details() == (
        f"{limit.name}: {size:,} characters is over the limit of {limit.maximum:,} characters"
    )
    with pytest.raises(grpc.RpcError) as streamed:
        stub.ReportOutcomes(iter([pb.Outcome(request_id="fine", model="claude-haiku-4-5"), outcome]), timeout=30)
    assert streamed.value.details().startswith(f"outcomes[1].{limit.name}: {size:,} characters is over the limit")
    stub.ReportOutcome(pb.Outcome(request_id="marker-" + limit.name, model="claude-haiku-4-5"), timeout=10)
    logged_rows(outcomes, ["fine", "marker-" + limit.name])
    assert max(len(line) for line in outcomes.read_text().splitlines()) < 2 * ERROR.maximum


def test_rows_refused_by_a_full_disk_are_logged_once_per_interval_with_their_count(caplog):
    caplog.set_level(logging.ERROR, "tierwise.serving")
    counted: list[int] = []
    appender = JsonlAppender("/dev/full", lambda i: {"i": i}, counted.append, report_interval_s=3600)
    for i in range(200):
        appender.add(i)
        if i % 20 == 0:
            time.sleep(0.01)  # several batches, as a served flood writes them
    appender.close()
    lines = [record.getMessage() for record in caplog.records]
    assert sum(counted) == 200
    assert len(lines) == 2, lines  # the first failure at once, the rest when the log closes
    assert sum(int(line.split(": ")[1].split()[0]) for line in lines) == 200
    assert all("(No space left on device)" in line for line in lines)


def test_a_flood_of_dropped_decisions_is_a_few_log_lines(trained_bundle):
    args = ["--model", str(trained_bundle), "--port", "0", "--no-metrics", "--decision-log", "/dev/full"]
    started = time.monotonic()
    with ServerProcess(args) as running, grpc.insecure_channel(running.target) as channel:
        stub = pb_grpc.RouterStub(channel)
        for i in range(200):
            stub.Predict(pb.PredictRequest(prompt=f"Say hello, number {i}.", request_id=f"flood-{i}"), timeout=10)
    elapsed = time.monotonic() - started
    counts = [int(n) for n in DROPPED.findall(running.log)]
    assert sum(counts) == 200, running.log
    assert len(counts) <= 2 + elapsed // 60, running.log  # one line a minute at most, and one at close


def test_a_log_ending_inside_a_row_gets_its_next_row_on_a_fresh_line(tmp_path):
    """A row torn before a restart (a crash, a full disk) stays one bad line; later rows parse."""
    path = tmp_path / "decisions.jsonl"
    path.write_text('{"i": 0}\n{"i": 1, "pad": "xx')
    appender = JsonlAppender(path, lambda i: {"i": i})
    appender.add(2)
    appender.reopen()  # the same file again: still torn-aware
    appender.add(3)
    appender.close()
    assert path.read_text().splitlines() == ['{"i": 0}', '{"i": 1, "pad": "xx', '{"i": 2}', '{"i": 3}']


def test_an_unwritable_decision_log_stops_serve_in_one_line(trained_bundle, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for log_path, reason in [(blocker / "decisions.jsonl", "File exists"), (Path("/proc/decisions.jsonl"), "")]:
        result = run_serve(
            ["--model", str(trained_bundle), "--port", "0", "--no-metrics", "--decision-log", str(log_path)]
        )
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"Error: {log_path}: cannot append a log there (") and reason in line


def test_a_certificate_given_as_the_tls_key_is_called_not_a_private_key(trained_bundle, tmp_path):
    cert, key = self_signed(tmp_path)
    base = ["--model", str(trained_bundle), "--port", "0", "--no-metrics"]
    result = run_serve([*base, "--tls-cert", str(cert), "--tls-key", str(cert)])
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"Error: --tls-key {cert}: not a private key (it holds a certificate); give the certificate's key"
    ]
    (tmp_path / "other").mkdir()
    other_cert, _ = self_signed(tmp_path / "other")
    mismatched = run_serve([*base, "--tls-cert", str(other_cert), "--tls-key", str(key)])
    assert mismatched.returncode == 2
    assert "cannot be used together (KEY_VALUES_MISMATCH)" in mismatched.stderr
    assert "Failed to bind" not in result.stderr + mismatched.stderr
