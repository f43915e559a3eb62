"""The proxy's side of the upstream Messages API: which headers cross, and what an answer says about the attempt.

The caller's headers (its API key among them) are forwarded as they came, less hop-by-hop headers and the
proxy's own `x-tierwise-*` options; they are never logged. A streamed answer is read as it passes, event by event,
for its usage, stop reason and time to first token, without holding it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from tierwise.serving.escalation import (
    CONNECTION_ERROR,
    TIMEOUT_ERROR,
    CallResult,
    StreamWatch,
    api_error_type,
    elapsed_ms,
    retryable_status,
)
from tierwise.serving.price_book import Usage

OPTION_PREFIX = "x-tierwise-"
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
        if name not in _HOP_BY_HOP and not (decoded and name == "content-encoding")
    }


class Upstream:
    """The upstream API through httpx's connection pool, without the client layer (redirects, cookies, auth).

    The proxy needs none of that layer, and skipping it saves about 0.3 ms a call (benchmarks/proxy_overhead.py).
    """

    def __init__(self, base_url: str, timeout_s: float, max_connections: int):
        self._base = base_url.rstrip("/")
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._transport = httpx.AsyncHTTPTransport(limits=limits)
        self._timeout = httpx.Timeout(timeout_s, connect=10.0).as_dict()

    async def open(self, method: str, path: str, content: bytes, headers: list[tuple[str, str]]) -> httpx.Response:
        """Send a request; the answer's body is still to be read (and the answer closed) by the caller."""
        request = httpx.Request(
            method, self._base + path, content=content, headers=headers, extensions={"timeout": self._timeout}
        )
        return await self._transport.handle_async_request(request)

    async def call(self, method: str, path: str, content: bytes, headers: list[tuple[str, str]]) -> httpx.Response:
        """Send a request and read the whole answer."""
        response = await self.open(method, path, content, headers)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


def transport_failure(exc: httpx.TransportError, started: float) -> CallResult:
    """The upstream could not be reached or timed out: worth the next tier."""
    error = TIMEOUT_ERROR if isinstance(exc, httpx.TimeoutException) else CONNECTION_ERROR
    return CallResult(latency_ms=elapsed_ms(started), error=error, retryable=True)


def answer_call(status: int, payload: Any, started: float) -> CallResult:
    """A complete upstream answer (status and parsed JSON body) as a call result."""
    if status != 200 or not isinstance(payload, dict):
        return CallResult(
            latency_ms=elapsed_ms(started), error=api_error_type(status, payload), retryable=retryable_status(status)
        )
    return CallResult(
        latency_ms=elapsed_ms(started),
        usage=Usage.from_mapping(payload.get("usage")),
        stop_reason=payload.get("stop_reason"),
    )


def parse_json(body: bytes) -> Any:
    """A JSON body, or None when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return None


class SseScanner:
    """Reads a Messages SSE stream as it passes and tells a `StreamWatch` what each event carries."""

    def __init__(self, watch: StreamWatch):
        self.watch = watch
        self.error = ""  # the type of an `error` event, if the stream sent one
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        while True:
            end = self._pending.find(b"\n\n")
            if end < 0:
                return
            event, self._pending = self._pending[:end], self._pending[end + 2 :]
            self._event(event)

    def _event(self, raw: bytes) -> None:
        kind, data = "", b""
        for line in raw.split(b"\n"):
            if line.startswith(b"event:"):
                kind = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data = line[5:].strip()
        if kind not in ("message_start", "message_delta", "error"):
            self.watch.seen(kind)
            return
        payload = parse_json(data)
        payload = payload if isinstance(payload, Mapping) else {}
        if kind == "message_start":
            self.watch.seen(kind, (payload.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            self.watch.seen(kind, payload.get("usage"), (payload.get("delta") or {}).get("stop_reason"))
        else:
            self.error = api_error_type(200, payload)
