"""The replay state file: every custom_id ever sent, the batch holding it, and what came back.

It is the run's memory across crashes. Rules it enforces:
- a custom_id is written here (as part of a submission intent) *before* the batch is created, so a crash
  between the API accepting a batch and us hearing about it leaves a trace that the next run reconciles;
- a custom_id in the file is never submitted again; a retry uses the next attempt number;
- every save is atomic (temporary file, fsync, rename), so the file is always the last complete state;
- one process at a time holds the file (an advisory lock next to it).
"""

from __future__ import annotations

import fcntl
import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from tierwise.classifier.errors import InputError
from tierwise.classifier.outputs import atomic_file

STATE_VERSION = 1
FAILED_OUTCOMES = ("errored", "expired", "canceled")


class StateError(InputError):
    """A state file that cannot be used (unreadable, another version, other settings, locked)."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class RequestInfo:
    """What a replayed request needs after submission: its text, and the answers to grade against."""

    prompt: str
    messages: str | None = None
    reference: str | None = None
    successful_answer: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Submission:
    """One custom_id: which (request, tier) it replays, where it went, and its outcome once known.

    outcome: None while in flight (or while its submission is unconfirmed); `succeeded`, `errored`,
    `expired`, `canceled` from the batch; `lost` when reconciling showed the API never received it;
    `rejected` when the API refused the batch that carried it.
    """

    custom_id: str
    key: str
    request_id: str
    tier: str
    model: str
    attempt: int
    est_cost_usd: float
    intent: str
    batch_id: str | None = None
    outcome: str | None = None
    error_type: str | None = None
    error: str | None = None
    answer: str | None = None
    stop_reason: str | None = None
    message_id: str | None = None
    usage: dict[str, int] | None = None
    cost_usd: float | None = None
    finished_at: str | None = None

    @property
    def in_flight(self) -> bool:
        return self.outcome is None


@dataclass
class BatchRecord:
    """A batch we created (`ours`), found while reconciling (`adopted`) or created twice by a retry (`duplicate`)."""

    id: str
    intent: str
    role: str
    created_at: str
    custom_ids: list[str]
    collected: bool = False


@dataclass
class Intent:
    """A submission attempt: written before the create call, resolved once we know which batch (if any) took it."""

    id: str
    started_at: str
    custom_ids: list[str]
    resolved: bool = False
    candidates: list[str] = field(default_factory=list)


@dataclass
class GradeRecord:
    """A stored grade, keyed in the state by custom_id and grader key, so nothing is judged (or paid) twice."""

    success: bool
    score: float | None
    reason: str
    grader: str
    grader_version: str
    cost_usd: float | None = None


@dataclass
class ReplayState:
    """The whole state file in memory; `save()` writes it atomically."""

    path: Path
    settings: dict[str, Any]
    requests: dict[str, RequestInfo] = field(default_factory=dict)
    submissions: dict[str, Submission] = field(default_factory=dict)
    batches: dict[str, BatchRecord] = field(default_factory=dict)
    intents: dict[str, Intent] = field(default_factory=dict)
    grades: dict[str, dict[str, GradeRecord]] = field(default_factory=dict)
    duplicate_cost_usd: float = 0.0
    _lock: IO[str] | None = field(default=None, repr=False, compare=False)
    _by_key: dict[str, list[Submission]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for submission in sorted(self.submissions.values(), key=lambda s: s.attempt):
            self._by_key.setdefault(submission.key, []).append(submission)

    @classmethod
    def open(cls, path: str | Path, settings: dict[str, Any]) -> ReplayState:
        """Load the state at `path` (or start an empty one), lock it, and check it was made with `settings`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = (path.parent / f".{path.name}.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            lock.close()
            raise StateError(f"{path}: another tierwise replay is using this state file") from exc
        try:
            state = cls._read(path, settings) if path.exists() else cls(path=path, settings=dict(settings))
        except BaseException:
            lock.close()
            raise
        state._lock = lock
        return state

    @classmethod
    def peek(cls, path: str | Path, settings: dict[str, Any]) -> ReplayState:
        """Read the state without locking or creating anything (for --dry-run); empty when there is none."""
        path = Path(path)
        return cls._read(path, settings) if path.exists() else cls(path=path, settings=dict(settings))

    @classmethod
    def _read(cls, path: Path, settings: dict[str, Any]) -> ReplayState:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StateError(f"{path}: cannot read the replay state file ({exc})") from exc
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise StateError(f"{path}: not a version-{STATE_VERSION} tierwise replay state file")
        differing = sorted(k for k in settings if k in data["settings"] and data["settings"][k] != settings[k])
        if differing:
            was = ", ".join(f"{k}={data['settings'][k]!r}" for k in differing)
            raise StateError(
                f"{path}: this state was made with {was}; rerun with the same settings or use another --state"
            )
        try:
            return cls(
                path=path,
                settings={**data["settings"], **settings},
                requests={k: RequestInfo(**v) for k, v in data["requests"].items()},
                submissions={k: Submission(**v) for k, v in data["submissions"].items()},
                batches={k: BatchRecord(**v) for k, v in data["batches"].items()},
                intents={k: Intent(**v) for k, v in data["intents"].items()},
                grades={k: {g: GradeRecord(**r) for g, r in v.items()} for k, v in data["grades"].items()},
                duplicate_cost_usd=float(data.get("duplicate_cost_usd", 0.0)),
            )
        except (KeyError, TypeError) as exc:
            raise StateError(f"{path}: damaged replay state file ({exc!r})") from exc

    def close(self) -> None:
        """Release the lock (the OS also releases it if the process dies)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def save(self) -> None:
        """Write the state atomically: a reader (or the next run) sees the old file or the new one, never half."""
        data = {
            "version": STATE_VERSION,
            "settings": self.settings,
            "requests": {k: asdict(v) for k, v in self.requests.items()},
            "submissions": {k: asdict(v) for k, v in self.submissions.items()},
            "batches": {k: asdict(v) for k, v in self.batches.items()},
            "intents": {k: asdict(v) for k, v in self.intents.items()},
            "grades": {k: {g: asdict(r) for g, r in v.items()} for k, v in self.grades.items()},
            "duplicate_cost_usd": self.duplicate_cost_usd,
        }
        with atomic_file(self.path) as tmp, tmp.open("w") as handle:
            json.dump(data, handle, ensure_ascii=False)

    # --- submissions ------------------------------------------------------------------------------------

    def attempts(self, key: str) -> list[Submission]:
        """Every custom_id used for one (request, tier), oldest first."""
        return self._by_key.get(key, [])

    def begin_intent(self, submissions: list[Submission]) -> Intent:
        """Record custom_ids as about to be submitted; saved before the API call that sends them."""
        intent = Intent(uuid.uuid4().hex, now_iso(), [s.custom_id for s in submissions])
        for submission in submissions:
            if submission.custom_id in self.submissions:
                raise StateError(f"custom_id {submission.custom_id} was already submitted; refusing to send it again")
            submission.intent = intent.id
            self.submissions[submission.custom_id] = submission
            self._by_key.setdefault(submission.key, []).append(submission)
        self.intents[intent.id] = intent
        self.save()
        return intent

    def confirm_intent(self, intent: Intent, batch_id: str, created_at: str) -> None:
        """The API accepted the intent's batch: remember which batch holds these custom_ids."""
        intent.resolved = True
        intent.candidates = [batch_id]
        self.batches[batch_id] = BatchRecord(batch_id, intent.id, "ours", created_at, list(intent.custom_ids))
        for custom_id in intent.custom_ids:
            self.submissions[custom_id].batch_id = batch_id
        self.save()

    def end_intent(self, intent: Intent, outcome: str, reason: str) -> None:
        """The intent's custom_ids never reached (or were refused by) the API; they may be retried under new ids."""
        intent.resolved = True
        for custom_id in intent.custom_ids:
            submission = self.submissions[custom_id]
            if submission.outcome is None:
                submission.outcome, submission.error = outcome, reason
                submission.finished_at = now_iso()
        self.save()

    def adopt(self, intent: Intent, batches: list[tuple[str, str]], role: str) -> None:
        """Track batches that may hold an intent's custom_ids (found by listing); their results settle it."""
        for batch_id, created_at in batches:
            if batch_id not in self.batches:
                self.batches[batch_id] = BatchRecord(batch_id, intent.id, role, created_at, list(intent.custom_ids))
            if batch_id not in intent.candidates:
                intent.candidates.append(batch_id)
        intent.resolved = True
        self.save()

    def unresolved_intents(self) -> list[Intent]:
        """Submissions whose create call never told us a batch id (the process died, or the call failed oddly)."""
        return [i for i in self.intents.values() if not i.resolved]

    def open_batches(self) -> list[BatchRecord]:
        return [b for b in self.batches.values() if not b.collected]

    def settle_collected_intents(self) -> None:
        """Once every batch that might hold an intent is collected, its unmatched custom_ids were never sent."""
        for intent in self.intents.values():
            if not intent.resolved or not all(self.batches[b].collected for b in intent.candidates):
                continue
            for custom_id in intent.custom_ids:
                submission = self.submissions[custom_id]
                if submission.outcome is None:
                    submission.outcome = "lost"
                    submission.error = "not found in any batch created by its submission"
                    submission.finished_at = now_iso()

    # --- money ------------------------------------------------------------------------------------------

    def committed_usd(self) -> float:
        """Money spent or on its way: actual costs of results, estimates of what is in flight, grading, duplicates."""
        total = self.duplicate_cost_usd
        for submission in self.submissions.values():
            if submission.in_flight:
                total += submission.est_cost_usd
            elif submission.cost_usd is not None:
                total += submission.cost_usd
        for grades in self.grades.values():
            total += sum(g.cost_usd or 0.0 for g in grades.values())
        return total
