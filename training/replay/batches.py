"""Talking to the Message Batches API with the official SDK: submit, reconcile, poll, collect.

Retries of single HTTP calls (429 rate limits, 529 overload, 5xx, dropped connections) are the SDK's own,
configured with `max_retries`; this module adds what the SDK cannot know about:
- a submission is recorded in the state before the create call and confirmed after it;
- a create whose outcome is unknown (the process died, or the call failed after possibly reaching the API)
  is reconciled on the next run by listing recent batches, never by sending the same custom_ids again;
- a create that the SDK had to retry may have created a batch twice: the extra batch is cancelled;
- every response field we rely on is checked, so a malformed reply stops the run with a clear error and
  the state file as it was.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import anthropic
import pydantic
from tierwise.classifier.errors import InputError
from tierwise.training.replay.state import BatchRecord, Intent, ReplayState, Submission, now_iso

API_KEY_ENV = "ANTHROPIC_API_KEY"
REJECTED_STATUSES = frozenset({400, 401, 403, 404, 413, 422, 429, 529})
NOT_RETRYABLE_ERRORS = frozenset({"invalid_request_error", "authentication_error", "permission_error"})
PROCESSING_STATUSES = frozenset({"in_progress", "canceling", "ended"})
RESULT_TYPES = frozenset({"succeeded", "errored", "expired", "canceled"})
CLOCK_SKEW = timedelta(minutes=10)
DUPLICATE_MARGIN = timedelta(seconds=5)


class ReplayAPIError(RuntimeError):
    """The API failed or answered something we cannot use; the state file is left consistent."""


class MalformedResponse(ReplayAPIError):
    """A response that does not have the shape the Message Batches API documents."""


def make_client(max_retries: int, timeout: float, base_url: str | None = None) -> anthropic.Anthropic:
    """An SDK client keyed from ANTHROPIC_API_KEY (base URL from the argument or ANTHROPIC_BASE_URL)."""
    api_key = os.environ.get(API_KEY_ENV)
    if not api_key:
        raise InputError(f"{API_KEY_ENV} is not set; export your Anthropic API key (or use --dry-run)")
    return anthropic.Anthropic(api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout)


def _describe(exc: anthropic.APIError) -> str:
    status = getattr(exc, "status_code", None)
    return f"HTTP {status}: {exc.message}" if status else f"{type(exc).__name__}: {exc.message}"


def _checked_batch(batch: Any, what: str) -> Any:
    """Return a MessageBatch whose id, status, counts and created_at are usable, or raise MalformedResponse."""
    ok = (
        isinstance(batch, anthropic.types.messages.MessageBatch)
        and isinstance(batch.id, str)
        and batch.id
        and batch.processing_status in PROCESSING_STATUSES
        and isinstance(batch.created_at, datetime)
        and batch.request_counts is not None
        and all(isinstance(getattr(batch.request_counts, n, None), int) for n in ("processing", "succeeded"))
    )
    if not ok:
        raise MalformedResponse(f"malformed response to {what}: not a message batch ({str(batch)[:200]!r})")
    return batch


def _request_total(batch: Any) -> int:
    counts = batch.request_counts
    return sum(getattr(counts, n, 0) or 0 for n in ("processing", "succeeded", "errored", "canceled", "expired"))


Pricer = Callable[[Submission, dict[str, int]], float]


class BatchRunner:
    """Submits replays and gathers their results into a ReplayState; `price` turns reported usage into USD."""

    def __init__(self, client: anthropic.Anthropic, state: ReplayState, price: Pricer) -> None:
        self.client = client
        self.state = state
        self.price = price

    def submit(self, submissions: list[Submission], params: Callable[[Submission], dict[str, Any]]) -> str:
        """Create one batch for these new custom_ids and return its id; the state knows about them first."""
        intent = self.state.begin_intent(submissions)
        requests = [{"custom_id": s.custom_id, "params": params(s)} for s in submissions]
        try:
            sent = time.monotonic()
            raw = self.client.messages.batches.with_raw_response.create(requests=requests)
            batch = raw.parse()
            elapsed = timedelta(seconds=time.monotonic() - sent)
        except anthropic.APIStatusError as exc:
            if exc.status_code in REJECTED_STATUSES:
                self.state.end_intent(intent, "rejected", _describe(exc))
                raise ReplayAPIError(f"the API refused the batch ({_describe(exc)})") from exc
            raise ReplayAPIError(
                f"creating a batch failed after retries ({_describe(exc)}); it may or may not exist, so its "
                "requests are not resent: rerun the same command to reconcile"
            ) from exc
        except anthropic.APIError as exc:
            raise ReplayAPIError(
                f"creating a batch failed ({_describe(exc)}); rerun the same command to reconcile"
            ) from exc
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise MalformedResponse(f"malformed response to batch creation ({exc}); rerun to reconcile") from exc
        batch = _checked_batch(batch, "batch creation")
        self.state.confirm_intent(intent, batch.id, batch.created_at.isoformat())
        if raw.retries_taken:
            self._cancel_duplicates(intent, batch, elapsed)
        return batch.id

    def _recent_batches(self, since: datetime) -> list[Any]:
        """Batches created at or after `since` that the state does not know, newest first."""
        found = []
        try:
            for batch in self.client.messages.batches.list(limit=100):
                batch = _checked_batch(batch, "listing batches")
                if batch.created_at < since:
                    break
                if batch.id not in self.state.batches:
                    found.append(batch)
        except anthropic.APIError as exc:
            raise ReplayAPIError(f"listing batches failed ({_describe(exc)})") from exc
        return found

    def _cancel_duplicates(self, intent: Intent, kept: Any, elapsed: timedelta) -> None:
        """After a retried create: cancel the batch an earlier, unanswered try created, so nothing is billed twice.

        Only a batch of the same size created on the server's clock within the create call's own duration
        before the kept one qualifies, so another job's batch in the same workspace is not touched.
        """
        earliest = kept.created_at - elapsed - DUPLICATE_MARGIN
        twins = [
            b
            for b in self._recent_batches(earliest)
            if b.created_at <= kept.created_at and _request_total(b) == len(intent.custom_ids)
        ]
        if twins:
            self.state.adopt(intent, [(b.id, b.created_at.isoformat()) for b in twins], role="duplicate")
        for twin in twins:
            try:
                self.client.messages.batches.cancel(twin.id)
            except anthropic.APIError as exc:
                raise ReplayAPIError(f"cancelling duplicate batch {twin.id} failed ({_describe(exc)})") from exc

    def reconcile(self) -> int:
        """Settle submissions a previous run never heard back about; returns how many intents were settled.

        Batches created around the intent, unknown to the state and of the same size, may hold its
        custom_ids: they are tracked and their results settle it. With none, the API never got the
        request, and its custom_ids are marked lost (the items are then retried under new ids).
        """
        pending = self.state.unresolved_intents()
        if not pending:
            return 0
        recent = self._recent_batches(min(datetime.fromisoformat(i.started_at) for i in pending) - CLOCK_SKEW)
        for intent in pending:
            started = datetime.fromisoformat(intent.started_at) - CLOCK_SKEW
            matches = [b for b in recent if b.created_at >= started and _request_total(b) == len(intent.custom_ids)]
            if matches:
                self.state.adopt(intent, [(b.id, b.created_at.isoformat()) for b in matches], role="adopted")
            else:
                self.state.end_intent(intent, "lost", "no batch was created by this submission")
        return len(pending)

    def poll(self, on_settled: Callable[[int], None] | None = None) -> int:
        """Check every open batch once; collect the ended ones. Returns how many batches are still open.

        on_settled is told how many items each collected batch settled (for a progress bar).
        """
        for record in self.state.open_batches():
            try:
                batch = self.client.messages.batches.retrieve(record.id)
            except anthropic.APIError as exc:
                raise ReplayAPIError(f"checking batch {record.id} failed ({_describe(exc)})") from exc
            except (json.JSONDecodeError, pydantic.ValidationError) as exc:
                raise MalformedResponse(f"malformed response for batch {record.id} ({exc})") from exc
            batch = _checked_batch(batch, f"retrieving batch {record.id}")
            if batch.processing_status == "ended":
                settled = self._collect(record)
                if on_settled:
                    on_settled(settled)
        return len(self.state.open_batches())

    def _collect(self, record: BatchRecord) -> int:
        """Read an ended batch's results and save them in one step; a bad line leaves the state unchanged."""
        lines: list[tuple[str, dict[str, Any]]] = []
        try:
            for line in self.client.messages.batches.results(record.id):
                lines.append(_checked_result(line, record.id))
        except anthropic.APIError as exc:
            raise ReplayAPIError(f"reading results of batch {record.id} failed ({_describe(exc)})") from exc
        except (json.JSONDecodeError, pydantic.ValidationError, UnicodeDecodeError) as exc:
            raise MalformedResponse(f"malformed results for batch {record.id} ({exc})") from exc
        finished = now_iso()
        settled = 0
        for custom_id, result in lines:
            submission = self.state.submissions.get(custom_id)
            if submission is None:
                continue
            if submission.outcome is not None or submission.batch_id not in (None, record.id):
                if result["type"] == "succeeded":
                    self.state.duplicate_cost_usd += self.price(submission, result["usage"])
                continue
            _apply_result(submission, result, record.id, finished)
            if submission.usage is not None:
                submission.cost_usd = self.price(submission, submission.usage)
            settled += 1
        record.collected = True
        self.state.settle_collected_intents()
        self.state.save()
        return settled


def _checked_result(line: Any, batch_id: str) -> tuple[str, dict[str, Any]]:
    """Pull what we use out of one results line, or raise MalformedResponse naming the batch."""
    custom_id = getattr(line, "custom_id", None)
    result = getattr(line, "result", None)
    kind = getattr(result, "type", None)
    if not isinstance(custom_id, str) or kind not in RESULT_TYPES:
        raise MalformedResponse(f"malformed result line in batch {batch_id}: {str(line)[:200]!r}")
    if kind == "succeeded":
        message = getattr(result, "message", None)
        usage = getattr(message, "usage", None)
        content = getattr(message, "content", None)
        if not isinstance(content, list) or not isinstance(getattr(usage, "input_tokens", None), int):
            raise MalformedResponse(f"malformed message for {custom_id} in batch {batch_id}")
        text = "".join(getattr(block, "text", "") or "" for block in content if getattr(block, "type", "") == "text")
        return custom_id, {
            "type": kind,
            "text": text,
            "stop_reason": getattr(message, "stop_reason", None),
            "message_id": getattr(message, "id", None),
            "usage": {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens or 0,
                "cache_creation_input_tokens": usage.cache_creation_input_tokens or 0,
                "cache_read_input_tokens": usage.cache_read_input_tokens or 0,
            },
        }
    if kind == "errored":
        error = getattr(getattr(result, "error", None), "error", None)
        return custom_id, {
            "type": kind,
            "error_type": getattr(error, "type", "api_error"),
            "error": getattr(error, "message", "unknown error"),
        }
    return custom_id, {"type": kind, "error_type": kind, "error": f"the batch item was {kind}"}


def _apply_result(submission: Submission, result: dict[str, Any], batch_id: str, finished: str) -> None:
    submission.batch_id = batch_id
    submission.outcome = result["type"]
    submission.finished_at = finished
    if result["type"] == "succeeded":
        submission.answer = result["text"]
        submission.stop_reason = result["stop_reason"]
        submission.message_id = result["message_id"]
        submission.usage = result["usage"]
    else:
        submission.error_type = result["error_type"]
        submission.error = result["error"]


def retryable(submission: Submission) -> bool:
    """Whether a failed item may be sent again: not when the API called the request itself invalid."""
    return submission.error_type not in NOT_RETRYABLE_ERRORS
