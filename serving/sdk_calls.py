"""What an `anthropic` SDK call returned, in the terms an `Escalation` judges: usage, stop reason, or the error.

Errors are named as the API names them (`overloaded_error`, `rate_limit_error`), so the client's reports and the
proxy's read the same; connection failures and timeouts are worth trying on the next tier, as the SDK would retry.
A 200 whose body is not a Message (an HTML page from a gateway, say) is `invalid_response`, worth the next tier
too, like a 5xx.
"""

from __future__ import annotations

from typing import Any

import anthropic
from tierwise.classifier.usage import Usage
from tierwise.serving.escalation import (
    CONNECTION_ERROR,
    INVALID_RESPONSE,
    MESSAGE_FIELDS,
    TIMEOUT_ERROR,
    CallResult,
    api_error_type,
    elapsed_ms,
    is_message,
    retryable_status,
)


def failure(exc: anthropic.APIError, started: float) -> CallResult:
    """A failed call: the API's error type, and whether another tier is worth trying."""
    if isinstance(exc, anthropic.APIStatusError):
        error, retryable = api_error_type(exc.status_code, exc.body), retryable_status(exc.status_code)
    elif isinstance(exc, anthropic.APIResponseValidationError):
        error, retryable = INVALID_RESPONSE, True
    elif isinstance(exc, anthropic.APITimeoutError):
        error, retryable = TIMEOUT_ERROR, True
    elif isinstance(exc, anthropic.APIConnectionError):
        error, retryable = CONNECTION_ERROR, True
    else:
        error, retryable = type(exc).__name__, False
    return CallResult(latency_ms=elapsed_ms(started), error=error, retryable=retryable)


def checked_answer(raw: Any, answer: Any, stream: bool) -> Any:
    """The answer of a raw SDK call (`with_raw_response`): a stream as it is, else a Message, or
    `APIResponseValidationError` (a failed attempt, `invalid_response`)."""
    if stream or (isinstance(answer, anthropic.BaseModel) and is_message(answer.model_dump(include=MESSAGE_FIELDS))):
        return answer
    response = raw.http_response
    kind = response.headers.get("content-type", "no content-type")
    raise anthropic.APIResponseValidationError(response, None, message=f"the answer is not a Message ({kind})")


def answered(message: Any, started: float) -> CallResult:
    """A call that returned a Message."""
    return CallResult(
        latency_ms=elapsed_ms(started), usage=Usage.from_mapping(message.usage), stop_reason=message.stop_reason
    )


def event_facts(event: Any) -> tuple[str, object, str | None]:
    """A stream event's type, the usage it carries and its stop reason (for `StreamWatch.seen`)."""
    kind = getattr(event, "type", "")
    if kind == "message_start":
        return kind, event.message.usage, None
    if kind == "message_delta":
        return kind, event.usage, event.delta.stop_reason
    return kind, None, None


def with_routing(message: Any, routing: object) -> Any:
    """The message with its routing details as `message.tierwise` (an attribute, never serialized)."""
    object.__setattr__(message, "tierwise", routing)
    return message
