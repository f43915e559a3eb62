"""What happens to a request before the proxy's endpoints see it: the path rule, the concurrency limit, and the
cancellation of a request whose client went away.

- Only `GET /health` and normalised `/v1/...` paths get through (`proxy_input.checked_path`); anything else is a
  400 in the API's error format, so no path can lead the upstream call out of `--upstream`'s base path.
- At most `limit` requests are in flight (a streamed one counts until its stream ends); one more is answered 529
  `overloaded_error`, which the Anthropic SDKs retry. A slot is free before the last byte of its answer goes out,
  so a client that has its answer can send the next request at once. Health is always answered.
- Once a request's body is read, a client that disconnects cancels its handling, and with it the upstream call:
  its slot is free at once, not when the upstream answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tierwise.serving.proxy_input import ApiError, checked_path

HEALTH_PATH = "/health"


class Gate:
    """The ASGI layer in front of the proxy's app."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == HEALTH_PATH:
            return await self.app(scope, receive, send)
        try:
            checked_path(scope.get("raw_path") or scope["path"].encode())
        except ApiError as exc:
            return await exc.response()(scope, receive, send)
        if self.in_flight >= self.limit:
            busy = f"tierwise proxy: {self.limit} requests in flight (--max-concurrency)"
            return await ApiError(529, "overloaded_error", busy).response()(scope, receive, send)
        self.in_flight += 1
        held = True

        def free() -> None:
            nonlocal held
            if held:
                held = False
                self.in_flight -= 1

        try:
            await _until_disconnect(self.app, scope, receive, send, free)
        finally:
            free()


async def _until_disconnect(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, finishing: Callable[[], None]
) -> None:
    """Run the app on one request, cancelled if its client disconnects after sending its body and before the
    answer is complete (the server's next message after the body is `http.disconnect`: the client left, or the
    answer is done). One watcher task per request, started once the body is read. `finishing` is called just
    before the answer's last part is sent: a client that has its whole answer finds the slot free."""
    handling = asyncio.current_task()
    assert handling is not None
    watcher: asyncio.Task[None] | None = None
    answered = gone = False

    async def watch() -> None:
        nonlocal gone
        await receive()
        if not answered:
            gone = True
            handling.cancel()

    async def receiving() -> Message:
        nonlocal watcher
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False) and watcher is None:
            watcher = asyncio.get_running_loop().create_task(watch())
        return message

    async def sending(message: Message) -> None:
        nonlocal answered
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            answered = True
            finishing()
        await send(message)

    try:
        await app(scope, receiving, sending)
    except asyncio.CancelledError:
        if not gone:
            raise
        handling.uncancel()
    finally:
        if watcher is not None:
            watcher.cancel()
