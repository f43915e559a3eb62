"""Optional bearer-token authentication: `authorization: Bearer <token>` metadata on every call.

The scheme is matched without regard to case (`bearer`, `BEARER`), as HTTP does. A call carrying several
`authorization` entries passes only if every one of them holds the token: a proxy that adds its own header
cannot smuggle a caller through. The health service stays open so load balancers and orchestrators can
probe without the token.

A refused call is answered before the server reads any request message: the refusal is a streaming
handler that aborts at once, so an unauthenticated stream that never sends cannot hold a server thread.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path

import grpc
from tierwise.classifier.errors import InputError

HEALTH_PREFIX = "/grpc.health.v1.Health/"
_DENIED = "missing or wrong bearer token (send metadata `authorization: Bearer <token>`)"


def read_token(path: str | Path) -> str:
    """The token in a file (surrounding whitespace ignored); an empty file is an error, not an open door."""
    token = Path(path).read_text().strip()
    if not token:
        raise InputError(f"auth token file {path} is empty")
    return token


class _TokenCheck:
    def __init__(self, token: str):
        self._expected = token.encode()

    def allows(self, details: grpc.HandlerCallDetails) -> bool:
        if details.method.startswith(HEALTH_PREFIX):
            return True
        found = False
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                if not self._holds_token(value):
                    return False
                found = True
        return found

    def _holds_token(self, value: str | bytes) -> bool:
        given = value.encode() if isinstance(value, str) else value
        scheme, _, token = given.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.lstrip(b" "), self._expected)


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without the right bearer token with UNAUTHENTICATED (sync server)."""

    def __init__(self, token: str, on_denied: Callable[[str], None]):
        self._check = _TokenCheck(token)
        self._on_denied = on_denied

    def intercept_service(self, continuation, handler_call_details):
        if self._check.allows(handler_call_details):
            return continuation(handler_call_details)
        method = handler_call_details.method

        def deny(requests, context):
            self._on_denied(method)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENIED)

        return grpc.stream_stream_rpc_method_handler(deny)


class AsyncTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without the right bearer token with UNAUTHENTICATED (asyncio server)."""

    def __init__(self, token: str, on_denied: Callable[[str], None]):
        self._check = _TokenCheck(token)
        self._on_denied = on_denied

    async def intercept_service(self, continuation, handler_call_details):
        if self._check.allows(handler_call_details):
            return await continuation(handler_call_details)
        method = handler_call_details.method

        async def deny(requests, context):
            self._on_denied(method)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENIED)

        return grpc.stream_stream_rpc_method_handler(deny)
