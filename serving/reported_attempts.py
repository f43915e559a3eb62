"""The attempts a server was told about, by (request_id, model, attempt): every report of each merged into one, and
what the attempt contributes to live calibration. So outcomes are idempotent per attempt: a report that repeats
what is known changes nothing, and a later one (a grade) wins field by field and replaces the attempt's earlier
contribution instead of adding another.

Bounded in entries and in bytes (`tierwise.classifier.limits`): past either bound the oldest attempt is forgotten,
and a report of it afterwards counts as new.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from tierwise.classifier.limits import REPORTED_ATTEMPTS, REPORTED_ATTEMPTS_BYTES
from tierwise.serving.calibration import Contribution
from tierwise.serving.tierwise.v1 import router_pb2 as pb

AttemptKey = tuple[str, str, int]
# What an entry costs beyond its strings and its serialized reports: the key tuple, the ordered dict's slot and
# link, the objects' headers (measured: about 580 bytes in all for an attempt with a uuid request_id).
ENTRY_OVERHEAD_BYTES = 460


@dataclass(slots=True)
class ReportedAttempt:
    """One attempt as reported so far: its reports merged (later fields winning), serialized (deterministically,
    so equal reports are equal bytes, and small), and its calibration share."""

    reports: bytes
    contribution: Contribution | None

    def size(self, key: AttemptKey) -> int:
        return ENTRY_OVERHEAD_BYTES + len(key[0]) + len(key[1]) + len(self.reports)


def attempt_key(outcome: pb.Outcome) -> AttemptKey:
    """The attempt an outcome reports on."""
    return outcome.request_id, outcome.model, outcome.attempt


def serialized(outcome: pb.Outcome) -> bytes:
    return outcome.SerializeToString(deterministic=True)


def merged(earlier: bytes, later: pb.Outcome) -> pb.Outcome:
    """Two reports of one attempt as one: every field the later report sets wins."""
    outcome = pb.Outcome.FromString(earlier)
    outcome.MergeFrom(later)
    return outcome


class ReportedAttempts:
    """The last reported attempts, oldest forgotten first; not thread-safe (its owner holds a lock)."""

    def __init__(self, max_entries: int = REPORTED_ATTEMPTS, max_bytes: int = REPORTED_ATTEMPTS_BYTES):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._attempts: OrderedDict[AttemptKey, ReportedAttempt] = OrderedDict()

    def get(self, key: AttemptKey) -> ReportedAttempt | None:
        return self._attempts.get(key)

    def put(self, key: AttemptKey, attempt: ReportedAttempt) -> None:
        """Keep (or replace) an attempt, forgetting the oldest past either bound."""
        earlier = self._attempts.pop(key, None)
        if earlier is not None:
            self.bytes -= earlier.size(key)
        self._attempts[key] = attempt
        self.bytes += attempt.size(key)
        while len(self._attempts) > self.max_entries or self.bytes > self.max_bytes:
            oldest_key, oldest = self._attempts.popitem(last=False)
            self.bytes -= oldest.size(oldest_key)

    def __len__(self) -> int:
        return len(self._attempts)
