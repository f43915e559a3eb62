"""The proxy's side of the upstream Messages API: which headers cross, and what an answer says about the attempt.

The caller's headers (its API key among them) are forwarded as they came, less hop-by-hop headers and the
proxy's own `x-tierwise-*` options; they are never logged. The answer's headers come back less hop-by-hop ones and
`date` and `server`, which the proxy's own server sends. A 200 whose body is not a Message (an HTML error page,
say) is a failed attempt, `invalid_response`, worth the next tier. A streamed answer is passed on whole event by
whole event as it arrives, and read on the way for its usage, stop reason and time to first token; a stream that
ends without the API's end (`message_stop`, or an `error` event) ends for the client with an `error` event, as
the API sends one, never as a clean end.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx
from tierwise.classifier.usage import Usage
from tierwise.serving.asyncio_network import ConnectionPool, Timeouts
from tierwise.serving.escalation import (
    CONNECTION_ERROR,
    INVALID_RESPONSE,
    TIMEOUT_ERROR,
    CallResult,
    StreamWatch,
    api_error_type,
    elapsed_ms,
    is_message,
    retryable_status,
)
from tierwise.serving.sse import event_fields, event_payload, split_events

OPTION_PREFIX = "x-tierwise-"
KEEPALIVE_S = 5.0  # an idle upstream connection is closed after this long (httpx's default)
URLS_KEPT = 256  # upstream URLs kept parsed: the routed path and the pass-through paths seen most recently
# Connection-level headers (RFC 9110 section 7.6.1) and those the proxy recomputes.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_SERVERS_OWN = frozenset({"date", "server"})  # uvicorn sends its own: forwarded too, the caller would get two
CUT_SHORT = (
    b'event: error\ndata: {"type": "error", "error": {"type": "api_error", "message": '
    b'"tierwise proxy: the upstream stream ended before its end (message_stop)"}}\n\n'
)


def request_headers(headers: Iterable[tuple[str, str]], decode: bool) -> list[tuple[str, str]]:
    """The caller's headers for the upstream request; `decode` drops accept-encoding so the answer can be read."""
    return [
        (name, value)
        for name, value in headers
        if name not in _HOP_BY_HOP and not name.startswith(OPTION_PREFIX) and not (decode and name == "accept-encoding")
    ]


def reply_headers(headers: httpx.Headers, decoded: bool) -> dict[str, str]:
    """The upstream answer's headers for the caller; a decoded body loses its content-encoding."""
    return {
        name: value
        for name, value in headers.items()
        if name not in _HOP_BY_HOP and name not in _SERVERS_OWN and not (decoded and name == "content-encoding")
    }


class Upstream:
    """The upstream API, over the proxy's own HTTP/1.1 pool (`asyncio_network.py`): a request goes out in one send,
    its answer is an `httpx.Response`.
    """

    def __init__(self, base_url: str, timeout_s: float, max_connections: int):
        self._base = base_url.rstrip("/")
        self._pool = ConnectionPool(httpx.URL(self._base), max_connections, KEEPALIVE_S)
        self._timeouts = Timeouts(connect=10.0, read=timeout_s, pool=timeout_s)
        self._targets: dict[str, str] = {}

    async def open(self, method: str, path: str, content: bytes, headers: list[tuple[str, str]]) -> httpx.Response:
        """Send a request; the answer's body is still to be read (and the answer closed) by the caller."""
        return await self._pool.request(method, self._target(path), headers, content, self._timeouts)

    def _target(self, path: str) -> str:
        """The request target upstream of a path (below the base URL's path, encoded as httpx encodes a URL), worked
        out once (up to `URLS_KEPT` paths kept; the table starts afresh when full)."""
        target = self._targets.get(path)
        if target is None:
            if len(self._targets) >= URLS_KEPT:
                self._targets.clear()
            target = self._targets[path] = httpx.URL(self._base + path).raw_path.decode("ascii")
        return target

    async def call(self, method: str, path: str, content: bytes, headers: list[tuple[str, str]]) -> httpx.Response:
        """Send a request and read the whole answer."""
        response = await self.open(method, path, content, headers)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def aclose(self) -> None:
        await self._pool.aclose()


def transport_failure(exc: httpx.TransportError, started: float) -> CallResult:
    """The upstream could not be reached or timed out: worth the next tier."""
    error = TIMEOUT_ERROR if isinstance(exc, httpx.TimeoutException) else CONNECTION_ERROR
    return CallResult(latency_ms=elapsed_ms(started), error=error, retryable=True)


def answer_call(status: int, payload: Any, started: float) -> CallResult:
    """A complete upstream answer (status and parsed JSON body) as a call result."""
    if status != 200:
        return CallResult(
            latency_ms=elapsed_ms(started), error=api_error_type(status, payload), retryable=retryable_status(status)
        )
    if not is_message(payload):
        return CallResult(latency_ms=elapsed_ms(started), error=INVALID_RESPONSE, retryable=True)
    return CallResult(
        latency_ms=elapsed_ms(started),
        usage=Usage.from_mapping(payload.get("usage")),
        stop_reason=payload.get("stop_reason"),
    )


def is_event_stream(headers: httpx.Headers) -> bool:
    """Whether an answer is a stream of server-sent events."""
    return headers.get("content-type", "").startswith("text/event-stream")


def parse_json(body: bytes) -> Any:
    """A JSON body, or None when it is not JSON (or nests too deep to read)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


class SseScanner:
    """Reads a Messages SSE stream as it passes, whole events at a time, and tells a `StreamWatch` what each
    carries."""

    def __init__(self, watch: StreamWatch):
        self.watch = watch
        self.error = ""  # the type of an `error` event, if the stream sent one
        self.stopped = False  # whether the stream sent message_stop
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """The events `chunk` completes, to pass on now; an event still incomplete waits for the rest of it."""
        self._pending += chunk
        events, done = split_events(self._pending)
        for raw in events:
            self._event(raw)
        passed, self._pending = self._pending[:done], self._pending[done:]
        return passed

    def ending(self) -> bytes:
        """At the end of the upstream stream: nothing if it ended as the API ends one (message_stop, or an error
        event); else it was cut short: the attempt failed (a connection error) and the client gets an error event."""
        if self.stopped or self.error:
            return b""
        self.error = CONNECTION_ERROR
        return CUT_SHORT

    def _event(self, raw: bytes) -> None:
        kind, data = event_fields(raw)
        if kind not in ("message_start", "message_delta", "error"):
            self.stopped = self.stopped or kind == "message_stop"
            self.watch.seen(kind)
            return
        payload = event_payload(data)
        if kind == "message_start":
            self.watch.seen(kind, (payload.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            self.watch.seen(kind, payload.get("usage"), (payload.get("delta") or {}).get("stop_reason"))
        else:
            self.error = api_error_type(200, payload)
