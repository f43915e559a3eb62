"""Where the proxy calls each tier: `--upstream` with the caller's key, unless the tier ladder (`--tiers`) names
the tier's own `base_url`, key (`api_key_env`) or `provider`. A tier that speaks OpenAI's Chat Completions is asked
in its API (`chat_translation`) and its answer handed back as the Messages API's, so judging, escalation, pricing
and the caller's own API see one shape whichever provider answered. A streamed request to such a tier is streamed
there too, its chunks handed on as Messages events as they arrive (`MessageStream`); an error answered before the
stream starts is a Messages error, worth the next tier as any other.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from tierwise.classifier.tiers import OPENAI, Tier, TierLadder
from tierwise.serving.chat_translation import (
    ChatError,
    MessageStream,
    chat_request,
    message_from_chat,
    messages_error,
)
from tierwise.serving.escalation import Step
from tierwise.serving.proxy_config import ProxyError
from tierwise.serving.proxy_input import encoded
from tierwise.serving.proxy_upstream import Upstream, is_event_stream, parse_json

_KEY_HEADERS = ("x-api-key", "authorization")


class TierUpstreams:
    """The upstream of each tier; `open` asks a step's tier a Messages request and answers in the Messages API."""

    def __init__(self, default: Upstream, ladder: TierLadder | None, timeout_s: float, max_connections: int):
        self.default = default
        self._own: dict[str, tuple[Tier, Upstream, str | None]] = {}
        for tier in ladder.tiers if ladder is not None else ():
            if tier.base_url is None and tier.api_key_env is None:
                continue
            key = None
            if tier.api_key_env is not None:
                key = os.environ.get(tier.api_key_env)
                if not key:
                    raise ProxyError(f"--tiers: tier {tier.name!r}: environment variable {tier.api_key_env} is not set")
            upstream = default if tier.base_url is None else Upstream(tier.base_url, timeout_s, max_connections)
            self._own[tier.name] = (tier, upstream, key)

    async def open(
        self, step: Step, params: Mapping[str, Any], headers: list[tuple[str, str]], streamed: bool
    ) -> httpx.Response:
        """Ask `step`'s tier the Messages request `params` (its model set); the answer, in the Messages API, still to
        be read and closed by the caller."""
        own = self._own.get(step.tier)
        if own is None:
            return await self.default.open("POST", "/v1/messages", encoded(params), headers)
        tier, upstream, key = own
        if tier.provider != OPENAI:
            if key is not None:
                headers = [(n, v) for n, v in headers if n.lower() not in _KEY_HEADERS] + [("x-api-key", key)]
            return await upstream.open("POST", "/v1/messages", encoded(params), headers)
        try:
            chat = chat_request(params)
        except ChatError as exc:
            return _json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": str(exc)}})
        sent = [("content-type", "application/json"), ("authorization", f"Bearer {key or _callers_key(headers)}")]
        answer = await upstream.open("POST", "/chat/completions", json.dumps(chat).encode(), sent)
        if streamed and answer.status_code == 200 and is_event_stream(answer.headers):
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_Translated(answer))
        try:
            await answer.aread()
        finally:
            await answer.aclose()
        payload = parse_json(answer.content)
        if answer.status_code != 200:
            return _json(answer.status_code, messages_error(payload, answer.status_code))
        message = message_from_chat(payload)
        return _json(200, payload if message is None else message)

    async def aclose(self) -> None:
        for _, upstream, _ in self._own.values():
            if upstream is not self.default:
                await upstream.aclose()
        await self.default.aclose()


class _Translated(httpx.AsyncByteStream):
    """A tier's Chat Completions stream as a Messages event stream, translated as its bytes arrive; closing it closes
    the tier's answer. A transport error cutting the tier's stream reaches the reader as it is."""

    def __init__(self, answer: httpx.Response):
        self._answer = answer
        self._translation = MessageStream()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._answer.aiter_bytes():
            if events := self._translation.feed(chunk):
                yield events

    async def aclose(self) -> None:
        await self._answer.aclose()


def _json(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "application/json"}, content=json.dumps(body).encode())


def _callers_key(headers: list[tuple[str, str]]) -> str:
    for name, value in headers:
        if name.lower() == "x-api-key":
            return value
        if name.lower() == "authorization":
            return value.removeprefix("Bearer ").strip()
    return ""
