"""Reporting outcomes to the router off the call path: a user's call never waits for it, nor fails because of it.

Outcomes go into a bounded queue; one background thread sends them, gathering for `linger_s` after the first so
that under load many share one `ReportOutcomes` stream (one alone goes as `ReportOutcome`): one RPC per batch
instead of one per attempt keeps reporting off a busy proxy's latency. A failed send is counted and logged (a
warning when reporting starts failing, a line when it works again), never raised; an outcome that finds the
queue full is dropped and counted the same way. At interpreter exit, outcomes still queued get up to
`EXIT_FLUSH_S` to go out, so a script that never closes its client still reports its last calls.

Outcomes go out in the order they were queued; `after_sent` lets a caller wait for those queued so far (the proxy
sends a grade only once the attempt reports before it are sent, so the later report is the one that wins).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from tierwise.serving.tierwise.v1 import router_pb2 as pb

log = logging.getLogger(__name__)

Send = Callable[[list[pb.Outcome]], object]
MAX_BATCH = 256  # outcomes sent together at most, when that many are waiting
EXIT_FLUSH_S = 2.0
_running: set[OutcomeReporter] = set()  # reporters whose sender thread runs


@atexit.register
def _flush_at_exit() -> None:
    for reporter in list(_running):
        reporter.close(EXIT_FLUSH_S)


@dataclass(frozen=True)
class ReportCounts:
    """Outcomes sent and acknowledged, refused or unreachable (`failed`), and lost to a full queue (`dropped`)."""

    sent: int
    failed: int
    dropped: int


class OutcomeReporter:
    """A background sender of outcomes; `report` never blocks and never raises."""

    def __init__(self, send: Send, max_pending: int = 10_000, linger_s: float = 0.05):
        self._send = send
        self._linger_s = linger_s
        self._queue: queue.Queue[pb.Outcome | Callable[[], None] | None] = queue.Queue(max_pending)
        self._lock = threading.Lock()
        self._sent = self._failed = self._dropped = 0
        self._failing = False
        self._thread: threading.Thread | None = None

    def report(self, outcome: pb.Outcome) -> None:
        """Queue one outcome for sending."""
        self._start()
        try:
            self._queue.put_nowait(outcome)
        except queue.Full:
            with self._lock:
                self._dropped += 1
                first = self._dropped == 1
            if first:
                log.warning("outcome queue full (%d pending): dropping outcomes, counted", self._queue.maxsize)

    def after_sent(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the sender thread; it must not block) once every outcome queued before it has been
        sent or has failed; at once if the queue is full."""
        self._start()
        try:
            self._queue.put_nowait(callback)
        except queue.Full:
            callback()

    @property
    def counts(self) -> ReportCounts:
        with self._lock:
            return ReportCounts(self._sent, self._failed, self._dropped)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued outcome has been sent or has failed; False if time ran out first."""
        deadline = time.monotonic() + timeout_s
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0 or not self._queue.all_tasks_done.wait(left):
                    return False
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (up to `timeout_s`), then stop the sender thread."""
        if self._thread is None:
            return
        self.flush(timeout_s)
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._thread = None
        _running.discard(self)

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="tierwise-outcomes", daemon=True)
                    self._thread.start()
                    _running.add(self)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self._linger_s
            while len(batch) < MAX_BATCH and isinstance(batch[-1], pb.Outcome):  # a waiter or the end sends at once
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            outcomes = [item for item in batch if isinstance(item, pb.Outcome)]
            try:
                if outcomes:
                    self._deliver(outcomes)
            finally:
                for item in batch:
                    if callable(item):
                        self._call(item)
                    self._queue.task_done()
            if batch[-1] is None:
                return

    def _deliver(self, outcomes: list[pb.Outcome]) -> None:
        try:
            self._send(outcomes)
        except grpc.RpcError as exc:
            self._count_failure(len(outcomes), f"{exc.code().name}: {exc.details()}")
        except Exception as exc:  # the sender thread must outlive any one bad send, or reporting stops unseen
            log.exception("reporting outcomes failed unexpectedly")
            self._count_failure(len(outcomes), type(exc).__name__)
        else:
            with self._lock:
                self._sent += len(outcomes)
                recovered, self._failing = self._failing, False
            if recovered:
                log.warning("outcome reporting works again (%d failed so far)", self.counts.failed)

    def _call(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # the sender thread must outlive a waiter that is gone
            log.exception("an after_sent callback failed")

    def _count_failure(self, count: int, reason: str) -> None:
        with self._lock:
            self._failed += count
            first, self._failing = not self._failing, True
        if first:
            log.warning("cannot report outcomes to the tierwise router (%s); failures are counted, not raised", reason)
