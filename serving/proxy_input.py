"""What `tierwise proxy` takes from a caller, checked before anything is done with it: the path, the body (its size
counted while it is read), its JSON, and the fields of a routed request and of a grade, against the one table of
input limits (`tierwise.classifier.limits`).

Every refusal is an `ApiError` in the Anthropic API's error format, naming the field (and the limit): never a 500.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from tierwise.classifier.limits import ATTEMPT, MESSAGES, MODEL, PROMPT, REQUEST_ID, FieldError, Limit
from tierwise.classifier.text import content_text

# A path segment the proxy forwards: unreserved characters only (RFC 3986), so nothing in it is encoded and
# nothing decodes to a slash or a dot segment.
_SEGMENT = re.compile(rb"[A-Za-z0-9_~.-]+")
ROLES = ("user", "assistant")


class ApiError(Exception):
    """An answer in the Anthropic error format: `{"type": "error", "error": {"type": kind, "message": ...}}`."""

    def __init__(self, status: int, kind: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        body = {"type": "error", "error": {"type": self.kind, "message": str(self)}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def checked_path(raw_path: bytes) -> str:
    """The request's path, if it is one the proxy may forward: under `/v1/`, normalised (no `.` or `..` segment, no
    empty one) and not percent-encoded. Upstream, it goes below the `--upstream` URL's own path, never beside it."""
    segments = raw_path.split(b"/")
    if raw_path.startswith(b"/v1/") and all(_SEGMENT.fullmatch(s) and s.strip(b".") for s in segments[1:]):
        return raw_path.decode("ascii")
    shown = raw_path[:200].decode("ascii", "backslashreplace")
    raise invalid(
        f"path: {shown!r} is not a path the proxy forwards (a normalised /v1/... path: segments of letters, digits "
        "and -._~, no '.' or '..' segment, nothing percent-encoded)"
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 as soon as it passes `limit` bytes (a chunked one while it is read, so
    memory holds at most the limit); the connection is then closed rather than read to its end."""
    too_large = ApiError(
        413, "request_too_large", f"body: over {limit} bytes (--max-body-bytes)", headers={"connection": "close"}
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def request_json(body: bytes, expected: str) -> Any:
    """A body's JSON; one that is not JSON, or nests too deep to read, is a 400 saying what was `expected`."""
    try:
        return json.loads(body)
    except RecursionError:
        raise invalid(f"body: JSON nested too deeply (expected {expected})") from None
    except ValueError:
        raise invalid(f"body: must be a JSON object ({expected}); it is not valid JSON") from None


def encoded(params: Mapping[str, Any]) -> bytes:
    """A request's params as the JSON body sent upstream; params nested too deep to write are a 400."""
    try:
        return json.dumps(params).encode()
    except RecursionError:
        raise invalid("body: JSON nested too deeply") from None


def text_field(value: object, field: str, limit: Limit, what: str) -> str:
    """A non-empty string field within its limit, valid Unicode (JSON can carry a lone surrogate: `"\\ud800"`)."""
    if not isinstance(value, str) or not value:
        raise invalid(f"{field}: field required ({what})")
    _check(limit, value, field)
    _check_unicode(value, field)
    return value


def message_params(body: bytes) -> dict[str, Any]:
    """A Messages request body as params, or a 400 naming what is wrong with it."""
    params = request_json(body, "the Messages API's request")
    if not isinstance(params, dict):
        raise invalid("body: must be a JSON object (the Messages API's request)")
    text_field(params.get("model"), "model", MODEL, "a model name, or 'tierwise' to route")
    return params


def check_routable(params: Mapping[str, Any]) -> None:
    """A request to route: its messages within the limits, each with a role and content, its text valid Unicode
    and, with the system prompt, within the prompt limit."""
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: field required (a non-empty list)")
    _check(MESSAGES, messages, "messages")
    size = _text_size(params["system"], "system") if params.get("system") else 0
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "content" not in message:
            raise invalid(f"messages.{index}: must be an object with role and content")
        if message.get("role") not in ROLES:
            raise invalid(f"messages.{index}.role: must be one of {', '.join(ROLES)}")
        size += _text_size(message["content"], f"messages.{index}.content")
    _check(PROMPT, size, "messages (their text, with the system prompt)")


@dataclass(frozen=True)
class Grade:
    """A later grade for a routed answer (`POST /v1/tierwise/feedback`); model and attempt may be left to memory."""

    request_id: str
    model: str | None
    attempt: int | None
    success: bool | None
    score: float | None


def read_grade(body: bytes) -> Grade:
    """A feedback body as a Grade, or a 400 naming the field that is wrong."""
    grade = request_json(body, "a grade: {request_id, success | score}")
    if not isinstance(grade, dict):
        raise invalid("body: must be a JSON object {request_id, success | score}")
    answer_id = "the x-tierwise-request-id of the answer"
    request_id = text_field(grade.get("request_id"), "request_id", REQUEST_ID, answer_id)
    model = grade.get("model")
    if model is not None:
        text_field(model, "model", MODEL, "the model that made the attempt")
    attempt = grade.get("attempt")
    if attempt is not None:
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
            raise invalid("attempt: must be a non-negative integer")
        _check(ATTEMPT, attempt, "attempt")
    success, score = grade.get("success"), grade.get("score")
    if success is not None and not isinstance(success, bool):
        raise invalid("success: must be true or false")
    if score is not None:
        score = _finite(score, "score")
    if success is None and score is None:
        raise invalid("success or score: give at least one")
    return Grade(request_id, model, attempt, success, score)


def _text_size(content: object, field: str) -> int:
    text = content_text(content)
    _check_unicode(text, field)
    return len(text)


def _check(limit: Limit, value: Any, field: str) -> None:
    try:
        limit.check(value, field)
    except FieldError as exc:
        raise invalid(str(exc)) from None


def _check_unicode(text: str, field: str) -> None:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise invalid(f"{field}: not valid Unicode (a lone surrogate, {text[exc.start]!r})") from None


def _finite(value: object, field: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
    raise invalid(f"{field}: must be a finite number")
