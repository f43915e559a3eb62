"""Who may grade a request the proxy routed (`POST /v1/tierwise/feedback`), and what the proxy remembers to know.

For each routed request the proxy remembers its attempts' models, the attempt whose answer was returned, and a
keyed hash of the caller's credential (`x-api-key`, else `authorization: Bearer`; HMAC-SHA256 under a key drawn
at start, so the memory holds nothing that opens the API). A grade is taken from the caller whose credential hashes the
same (compared in constant time), or from anyone holding the feedback token (`--feedback-token-file`), which also
grades requests the proxy does not remember (given model and attempt), sent in the same headers. Anyone else
gets 401.

The memory is bounded in entries and in bytes (`tierwise.classifier.limits`); the oldest request is forgotten
first.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from tierwise.classifier.limits import REMEMBERED_REQUESTS, REMEMBERED_REQUESTS_BYTES
from tierwise.serving.proxy_input import ApiError, Grade, invalid

# What an entry costs beyond its strings: the dict slot, the objects' headers, the 32-byte hash.
ENTRY_OVERHEAD_BYTES = 320


@dataclass(frozen=True, slots=True)
class Served:
    """One routed request as the proxy remembers it."""

    models: tuple[str, ...]  # each attempt's model, in order
    answered: int  # the attempt whose answer was returned
    caller: bytes  # keyed hash of the caller's credential; empty when it sent none

    def size(self, request_id: str) -> int:
        return ENTRY_OVERHEAD_BYTES + len(request_id) + sum(len(model) for model in self.models)


class ServedRequests:
    """The last routed requests, by request_id, bounded in entries and in bytes."""

    def __init__(self, max_entries: int = REMEMBERED_REQUESTS, max_bytes: int = REMEMBERED_REQUESTS_BYTES):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._served: OrderedDict[str, Served] = OrderedDict()

    def remember(self, request_id: str, served: Served) -> None:
        earlier = self._served.pop(request_id, None)
        if earlier is not None:
            self.bytes -= earlier.size(request_id)
        self._served[request_id] = served
        self.bytes += served.size(request_id)
        while len(self._served) > self.max_entries or self.bytes > self.max_bytes:
            oldest_id, oldest = self._served.popitem(last=False)
            self.bytes -= oldest.size(oldest_id)

    def get(self, request_id: str) -> Served | None:
        return self._served.get(request_id)

    def __len__(self) -> int:
        return len(self._served)


def credential(headers: Mapping[str, str]) -> str | None:
    """The caller's credential as the Anthropic API reads it: `x-api-key`, else `authorization: Bearer <key>`."""
    if key := headers.get("x-api-key"):
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class FeedbackAuth:
    """Fingerprints callers' credentials, and decides whether a grade's sender may grade the request."""

    def __init__(self, token: str | None):
        self._key = secrets.token_bytes(32)
        self._token = None if token is None else token.encode()

    def fingerprint(self, sent: str | None) -> bytes:
        """The keyed hash kept with a routed request (empty for a caller that sent no credential)."""
        return b"" if sent is None else hmac.new(self._key, sent.encode("latin-1"), hashlib.sha256).digest()

    def graded_attempt(self, sent: str | None, grade: Grade, served: Served | None) -> tuple[str, int]:
        """The (model, attempt) the grade is for, once its sender may give it; 401, 404 or 400 otherwise."""
        if not self._holds_token(sent):
            if sent is None:
                raise _denied("send the API key that made the request (x-api-key), or the feedback token")
            if served is None:
                raise _forgotten(grade.request_id)
            if not served.caller or not hmac.compare_digest(self.fingerprint(sent), served.caller):
                raise _denied(f"request_id {grade.request_id!r} was not made with this API key")
        if served is None:
            if grade.model is None or grade.attempt is None:
                raise _forgotten(grade.request_id)
            return grade.model, grade.attempt
        attempt = served.answered if grade.attempt is None else grade.attempt
        if attempt >= len(served.models) or grade.model not in (None, served.models[attempt]):
            made = ", ".join(f"{number}: {model}" for number, model in enumerate(served.models))
            raise invalid(f"attempt: request {grade.request_id!r} made no such attempt (its attempts: {made})")
        return served.models[attempt], attempt

    def _holds_token(self, sent: str | None) -> bool:
        return self._token is not None and sent is not None and hmac.compare_digest(sent.encode("latin-1"), self._token)


def _denied(why: str) -> ApiError:
    return ApiError(401, "authentication_error", f"tierwise feedback: {why}")


def _forgotten(request_id: str) -> ApiError:
    return ApiError(
        404,
        "not_found_error",
        f"request_id {request_id!r}: not a request this proxy remembers; grade it with the feedback token, "
        "giving model and attempt",
    )
