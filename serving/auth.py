"""Optional bearer-token authentication: `authorization: Bearer <token>` metadata on every call.

The health service stays open so load balancers and orchestrators can probe without the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path

import grpc

from classifier.errors import InputError

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
        self._expected = f"Bearer {token}".encode()

    def allows(self, details: grpc.HandlerCallDetails) -> bool:
        if details.method.startswith(HEALTH_PREFIX):
            return True
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(given, self._expected)
        return False


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without the right bearer token with UNAUTHENTICATED (sync server)."""

    def __init__(self, token: str, on_denied: Callable[[str], None]):
        self._check = _TokenCheck(token)
        self._on_denied = on_denied

    def intercept_service(self, continuation, handler_call_details):
        if self._check.allows(handler_call_details):
            return continuation(handler_call_details)
        method = handler_call_details.method

        def deny(request, context):
            self._on_denied(method)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENIED)

        return grpc.unary_unary_rpc_method_handler(deny)


class AsyncTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without the right bearer token with UNAUTHENTICATED (asyncio server)."""

    def __init__(self, token: str, on_denied: Callable[[str], None]):
        self._check = _TokenCheck(token)
        self._on_denied = on_denied

    async def intercept_service(self, continuation, handler_call_details):
        if self._check.allows(handler_call_details):
            return await continuation(handler_call_details)
        method = handler_call_details.method

        async def deny(request, context):
            self._on_denied(method)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENIED)

        return grpc.unary_unary_rpc_method_handler(deny)
