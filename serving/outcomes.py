"""What happened after a routing decision: outcome reports checked, flagged, counted and logged.

An outcome names the request (its Predict request_id), the model that made the attempt and the attempt's
place in the escalation, with whatever the application measured (a grade, cost, tokens, latency, an API
error). One for a request_id this server never routed (another server, a restart, or a forgotten one) is
kept and flagged `known_request: false`, never dropped: `tierwise collect` joins outcomes to decisions by
request_id over the logs, not over this server's memory. `--outcome-log` appends each one as a JSON line
off the request path (reopened on SIGHUP, like the decision log).

Outcomes are idempotent per (request_id, model, attempt) (`reported_attempts.py`): a later report of the same
attempt wins field by field; live calibration replaces that attempt's earlier contribution instead of adding; a
report that changes nothing is acknowledged, counted as a duplicate (`tierwise_outcome_duplicates_total`) and
not logged again.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tierwise.classifier.limits import ERROR as ERROR_TEXT
from tierwise.classifier.limits import IDENTIFIER, MODEL, REQUEST_ID, FieldError
from tierwise.classifier.records import OUTCOME_MEASURES
from tierwise.serving.calibration import ERROR, FAILURE, SUCCESS, UNGRADED, OutcomeStats
from tierwise.serving.jsonl_log import JsonlAppender
from tierwise.serving.recent import RecentDecisions
from tierwise.serving.reload import ModelHolder
from tierwise.serving.reported_attempts import ReportedAttempt, ReportedAttempts, attempt_key, merged, serialized
from tierwise.serving.tierwise.v1 import router_pb2 as pb

UNKNOWN_TIER = "unknown"
# success = score >= this when an outcome has a score but no success flag (the attempt logs' default).
SCORE_SUCCESS_THRESHOLD = 1.0


def check_outcome(outcome: pb.Outcome, prefix: str = "") -> None:
    """Refuse an outcome that cannot be joined or read, or that holds more than the input limits allow
    (`tierwise.classifier.limits`); FieldError names the field (and the limit)."""
    for limit, value in ((REQUEST_ID, outcome.request_id), (MODEL, outcome.model), (ERROR_TEXT, outcome.error)):
        limit.check(value, prefix + limit.name)
    IDENTIFIER.check(outcome.workload, prefix + "workload")
    if not outcome.request_id.strip():
        raise FieldError(prefix + "request_id", "must not be empty (the request_id of the Predict response)")
    if not outcome.model.strip():
        raise FieldError(prefix + "model", "must not be empty (the model that made the attempt)")
    if outcome.attempt < 0:
        raise FieldError(prefix + "attempt", f"must be 0 or more (the position in the chain), got {outcome.attempt}")
    if outcome.HasField("score") and not math.isfinite(outcome.score):
        raise FieldError(prefix + "score", f"must be a finite number, got {outcome.score}")
    for name in OUTCOME_MEASURES:
        if outcome.HasField(name):
            value = getattr(outcome, name)
            if not math.isfinite(value) or value < 0:
                raise FieldError(prefix + name, f"must be a non-negative number, got {value}")


def outcome_result(outcome: pb.Outcome) -> str:
    """`error` when the call failed, else `success`/`failure` from the grade, else `ungraded`."""
    if outcome.error:
        return ERROR
    if outcome.HasField("success"):
        return SUCCESS if outcome.success else FAILURE
    if outcome.HasField("score"):
        return SUCCESS if outcome.score >= SCORE_SUCCESS_THRESHOLD else FAILURE
    return UNGRADED


@dataclass(slots=True)
class ReceivedOutcome:
    """An accepted outcome as the log writes it: the message itself, whether this server routed it, when."""

    outcome: pb.Outcome
    known_request: bool
    unix_time: float


def outcome_row(received: ReceivedOutcome) -> dict[str, object]:
    """The JSONL row for one outcome: every Outcome field (null where not reported), the flag and the time."""
    outcome = received.outcome
    row: dict[str, object] = {"request_id": outcome.request_id, "model": outcome.model, "attempt": outcome.attempt}
    row["success"] = outcome.success if outcome.HasField("success") else None
    row["score"] = outcome.score if outcome.HasField("score") else None
    for name in OUTCOME_MEASURES:
        row[name] = getattr(outcome, name) if outcome.HasField(name) else None
    row["error"] = outcome.error or None
    row["workload"] = outcome.workload or None
    row["known_request"] = received.known_request
    row["time"] = datetime.fromtimestamp(received.unix_time, UTC).isoformat()
    return row


class OutcomeLog(JsonlAppender[ReceivedOutcome]):
    """The outcome log file: `add(ReceivedOutcome)`, `reopen()` after rotation, `close()` writes what is queued."""

    def __init__(self, path: str | Path, on_dropped: Callable[[int], None] = lambda rows: None):
        super().__init__(path, outcome_row, on_dropped)


class OutcomeDesk:
    """Takes outcome reports: checks each, flags unknown request_ids, merges it into its attempt, counts it, feeds
    calibration and logs it, unless it repeats what was already known of the attempt."""

    def __init__(
        self,
        holder: ModelHolder,
        recent: RecentDecisions,
        stats: OutcomeStats,
        log: OutcomeLog | None = None,
    ):
        self._holder = holder
        self._recent = recent
        self._stats = stats
        self._log = log
        self._tiers: tuple[object, dict[str, str]] = (None, {})
        self._attempts = ReportedAttempts()
        self._lock = threading.Lock()  # one report of an attempt at a time: merged, counted and logged in order

    def receive(self, outcome: pb.Outcome, prefix: str = "") -> bool:
        """Accept one outcome (FieldError if it is malformed) and say whether this server routed its request."""
        check_outcome(outcome, prefix)
        probabilities = self._recent.get(outcome.request_id)
        tier = self._model_tiers().get(outcome.model, UNKNOWN_TIER)
        predicted = None if probabilities is None else probabilities.get(tier)
        key = attempt_key(outcome)
        with self._lock:
            earlier = self._attempts.get(key)
            now = outcome if earlier is None else merged(earlier.reports, outcome)
            reports = serialized(now)
            if earlier is not None and reports == earlier.reports:
                self._stats.duplicate()
                return probabilities is not None
            contribution = self._stats.record(
                tier, outcome_result(now), predicted, None if earlier is None else earlier.contribution
            )
            self._attempts.put(key, ReportedAttempt(reports, contribution))
            if self._log is not None:
                self._log.add(ReceivedOutcome(outcome, probabilities is not None, time.time()))
        return probabilities is not None

    def _model_tiers(self) -> dict[str, str]:
        """Model name -> tier name for the model serving now (rebuilt only when it changes)."""
        loaded = self._holder.current
        cached_for, tiers = self._tiers
        if loaded is not cached_for:
            tiers = {} if loaded is None else {m: t.name for t in loaded.router.ladder.tiers for m in t.models}
            self._tiers = (loaded, tiers)
        return tiers
