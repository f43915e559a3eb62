"""Reporting never delays or breaks a call: outcomes go out from a background thread, together when several wait,
and a router that refuses them (or a full queue) is counted, never raised."""

from __future__ import annotations

import subprocess
import sys
import threading

from tierwise.serving.outcome_reporter import OutcomeReporter
from tierwise.serving.router_link import RouterDown, RouterLink
from tierwise.serving.tierwise.v1 import router_pb2 as pb

from tests.helpers import closed_port


def outcome(n: int) -> pb.Outcome:
    return pb.Outcome(request_id=f"r{n}", model="claude-haiku-4-5", attempt=0)


class GatedSender:
    """Takes batches of outcomes only once `gate` opens, recording each batch."""

    def __init__(self):
        self.gate = threading.Event()
        self.batches: list[list[str]] = []

    def __call__(self, outcomes):
        self.gate.wait(10)
        self.batches.append([o.request_id for o in outcomes])


def test_outcomes_waiting_together_go_out_together_in_order():
    sender = GatedSender()
    reporter = OutcomeReporter(sender)
    reporter.report(outcome(0))
    for n in range(1, 6):
        reporter.report(outcome(n))
    sender.gate.set()
    assert reporter.flush(10)
    reporter.close()
    assert [r for batch in sender.batches for r in batch] == [f"r{n}" for n in range(6)]
    assert len(sender.batches) <= 3, "outcomes queued while a send was in flight share the next send"
    assert reporter.counts.sent == 6 and reporter.counts.failed == 0


def test_a_full_queue_drops_and_counts_without_blocking():
    sender = GatedSender()
    reporter = OutcomeReporter(sender, max_pending=2)
    reporter.report(outcome(0))
    for n in range(1, 10):
        reporter.report(outcome(n))
    counts = reporter.counts
    sender.gate.set()
    reporter.close()
    assert counts.dropped >= 6 and reporter.counts.sent + reporter.counts.dropped == 10


def test_a_router_out_of_reach_is_counted_not_raised(caplog):
    link = RouterLink(f"127.0.0.1:{closed_port()}", RouterDown(), timeout_s=2)
    reporter = OutcomeReporter(link.report_all)
    for n in range(3):
        reporter.report(outcome(n))
    assert reporter.flush(20)
    reporter.close()
    link.close()
    assert reporter.counts.failed == 3 and reporter.counts.sent == 0
    warnings = [r.getMessage() for r in caplog.records if "cannot report outcomes" in r.getMessage()]
    assert len(warnings) == 1 and "UNAVAILABLE" in warnings[0], "one warning when reporting starts failing"


def test_outcomes_still_queued_at_exit_are_sent_before_the_process_ends(tmp_path):
    sent = tmp_path / "sent.txt"
    script = f"""
from tierwise.serving.outcome_reporter import OutcomeReporter
from tierwise.serving.tierwise.v1 import router_pb2 as pb

def send(outcomes):
    with open({str(sent)!r}, "a") as out:
        out.writelines(o.request_id + "\\n" for o in outcomes)

reporter = OutcomeReporter(send, linger_s=0.5)
reporter.report(pb.Outcome(request_id="last-call", model="m"))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sent.read_text() == "last-call\n", "a script that never closes its client still reports its last call"
