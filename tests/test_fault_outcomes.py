"""Outcomes are idempotent per (request_id, model, attempt) (the Trust issue, item 6), and the memories that make
them so, or that let the proxy know who may grade, are bounded (item 5); a grade the proxy forwards goes after the
attempt reports queued before it (item 16). On a real `tierwise serve` (its outcome log and metrics), and on the
real memory and reporter objects."""

from __future__ import annotations

import threading
import urllib.request

import grpc
import pytest
from tierwise.classifier.tiers import TierLadder
from tierwise.serving.calibration import OutcomeStats
from tierwise.serving.outcome_reporter import OutcomeReporter
from tierwise.serving.process import ServerProcess
from tierwise.serving.proxy_feedback import Served, ServedRequests
from tierwise.serving.reported_attempts import ReportedAttempt, ReportedAttempts
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

from tests.helpers import logged_rows

pytestmark = pytest.mark.fault

HAIKU_TIER = TierLadder.load().tiers[0]
PROMPTS = ["Say hi.", "Name a colour.", "Count to three.", "Spell cat."]


def scrape(server: ServerProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


def test_a_thousand_reports_of_one_attempt_count_once_and_the_later_one_wins(trained_bundle, tmp_path):
    log = tmp_path / "outcomes.jsonl"
    args = ["--model", str(trained_bundle), "--port", "0", "--metrics-port", "0", "--outcome-log", str(log)]
    with ServerProcess(args) as server, grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RouterStub(channel)
        routed = [stub.Predict(pb.PredictRequest(prompt=prompt), timeout=10) for prompt in PROMPTS]
        for response in routed:
            stub.ReportOutcome(pb.Outcome(request_id=response.request_id, model=HAIKU_TIER.model, success=True))
        graded = routed[0].request_id
        before = scrape(server)
        failure = pb.Outcome(request_id=graded, model=HAIKU_TIER.model, attempt=0, success=False)
        summary = stub.ReportOutcomes(iter([failure] * 1000), timeout=30)
        after_failures = scrape(server)
        success = pb.Outcome(request_id=graded, model=HAIKU_TIER.model, attempt=0, success=True, cost_usd=0.001)
        stub.ReportOutcomes(iter([success] * 1000), timeout=30)
        after_successes = scrape(server)
        (live,) = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).live_calibration
        stub.ReportOutcome(pb.Outcome(request_id="sentinel", model=HAIKU_TIER.model, success=True), timeout=10)
        rows = logged_rows(log, [graded, "sentinel"])  # written in order: every row for `graded` is in by now
    realized = f'tierwise_realized_success{{tier="{HAIKU_TIER.name}"}}'
    predicted = f'tierwise_predicted_success{{tier="{HAIKU_TIER.name}"}}'
    assert summary.received == 1000 and summary.unknown_requests == 0, "every report is acknowledged"
    assert before[realized] == 1.0
    assert after_failures[realized] == pytest.approx(3 / 4), "one attempt of four turned to a failure, once"
    assert after_failures[predicted] == pytest.approx(before[predicted]), "the same four requests"
    assert after_successes[realized] == 1.0 and (live.tier, live.outcomes) == (HAIKU_TIER.name, 4)
    assert after_successes["tierwise_outcome_duplicates_total"] == 2 * 999
    assert after_successes[f'tierwise_outcomes_total{{result="failure",tier="{HAIKU_TIER.name}"}}'] == 1
    logged = [(row["success"], row["cost_usd"]) for row in rows if row["request_id"] == graded]
    assert logged == [(True, None), (False, None), (True, 0.001)], "a report that changes nothing is not logged"


def test_a_later_report_replaces_the_attempts_contribution_to_the_window():
    stats = OutcomeStats(window=3)
    first = stats.record("haiku", "success", 0.9)
    second = stats.record("haiku", "success", 0.8)
    assert stats.record("haiku", "failure", 0.9, earlier=first) is first
    (row,) = stats.calibration()
    assert (row.outcomes, row.realized_success, row.predicted_success) == (2, 0.5, pytest.approx(0.85))
    stats.record("haiku", "error", 0.8, earlier=second)
    (row,) = stats.calibration()
    assert (row.outcomes, row.realized_success) == (1, 0.0), "an attempt that turned out an error leaves the window"
    for _ in range(3):
        stats.record("haiku", "success", 0.5)
    stats.record("haiku", "failure", 0.9, earlier=first)
    (row,) = stats.calibration()
    assert (row.outcomes, row.realized_success) == (3, 1.0), "an attempt that left the window changes nothing"


def test_the_memory_of_reported_attempts_is_bounded_in_entries_and_bytes():
    def attempt(request_id: str, error: str = "") -> ReportedAttempt:
        return ReportedAttempt(pb.Outcome(request_id=request_id, model="m", error=error).SerializeToString(), None)

    by_count = ReportedAttempts(max_entries=3, max_bytes=1 << 20)
    for number in range(5):
        by_count.put((f"r{number}", "m", 0), attempt(f"r{number}"))
    assert len(by_count) == 3 and by_count.get(("r0", "m", 0)) is None and by_count.get(("r4", "m", 0))
    by_bytes = ReportedAttempts(max_entries=1000, max_bytes=8_000)
    for number in range(100):
        by_bytes.put((f"r{number}", "m", 0), attempt(f"r{number}", error="e" * 1000))
    assert by_bytes.bytes <= 8_000 and 1 <= len(by_bytes) < 10


def test_the_proxys_memory_of_routed_requests_is_bounded_in_entries_and_bytes():
    served = Served(("claude-haiku-4-5", "claude-sonnet-4-6"), 1, b"h" * 32)
    by_count = ServedRequests(max_entries=2, max_bytes=1 << 20)
    for number in range(4):
        by_count.remember(f"r{number}", served)
    assert len(by_count) == 2 and by_count.get("r1") is None and by_count.get("r3") == served
    by_bytes = ServedRequests(max_entries=1000, max_bytes=10_000)
    for number in range(100):
        by_bytes.remember(f"{number}-" + "x" * 120, served)
    assert by_bytes.bytes <= 10_000 and 1 <= len(by_bytes) < 30


def test_a_waiter_is_called_only_after_the_outcomes_queued_before_it_are_sent():
    release, order, called = threading.Event(), [], threading.Event()

    def send(outcomes: list[pb.Outcome]) -> None:
        release.wait(30)
        order.extend(outcome.request_id for outcome in outcomes)

    reporter = OutcomeReporter(send)
    try:
        reporter.report(pb.Outcome(request_id="attempt-0", model="m"))
        reporter.report(pb.Outcome(request_id="attempt-1", model="m"))
        reporter.after_sent(lambda: (order.append("grade"), called.set()))
        assert not called.wait(0.3), "the waiter ran while the attempts were still being sent"
        release.set()
        assert called.wait(30)
    finally:
        release.set()
        reporter.close()
    assert order == ["attempt-0", "attempt-1", "grade"]
