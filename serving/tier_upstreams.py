"""Where the proxy calls each tier: `--upstream` with the caller's key, unless the tier ladder names the tier's own
`base_url`, key (`api_key_env`) or `provider`. The ladder is `--tiers` when given, else the served bundle's (the one
a request was priced with), so a bundle trained on a ladder naming its tiers' providers is called as it says and a
new bundle's ladder applies from its first request. A tier that speaks OpenAI's Chat Completions is asked in its API
(`chat_translation`) and its answer handed back as the Messages API's, so judging, escalation, pricing and the
caller's own API see one shape whichever provider answered. A streamed request to such a tier is streamed there
too, its chunks handed on as Messages events as they arrive (`MessageStream`); an error answered before the stream
starts is a Messages error, worth the next tier as any other.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
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
from tierwise.serving.proxy_feedback import credential
from tierwise.serving.proxy_input import encoded
from tierwise.serving.proxy_upstream import Upstream, is_event_stream, parse_json

log = logging.getLogger("tierwise.proxy")
_KEY_HEADERS = ("x-api-key", "authorization")
LADDERS_KEPT = 8  # the served ladders whose tiers' upstreams are remembered (a reload brings a new one)


@dataclass(frozen=True)
class TierRoute:
    """Where one tier is called: its upstream and key (None: the caller's), or why it cannot be (`missing`)."""

    tier: Tier
    upstream: Upstream
    key: str | None = None
    missing: str | None = None


class TierUpstreams:
    """The upstream of each tier; `open` asks a step's tier a Messages request and answers in the Messages API."""

    def __init__(self, default: Upstream, fixed: TierLadder | None, timeout_s: float, max_connections: int):
        self.default = default
        self._fixed = fixed
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._by_url: dict[str, Upstream] = {}
        self._routes: dict[int, tuple[TierLadder, dict[str, TierRoute]]] = {}
        if fixed is not None:
            missing = [route.missing for route in self.routes(fixed).values() if route.missing]
            if missing:
                raise ProxyError(f"--tiers: {missing[0]}")

    def routes(self, ladder: TierLadder) -> dict[str, TierRoute]:
        """The tiers of `ladder` (`--tiers` instead, when given) that have their own upstream or key, by name;
        worked out once per ladder."""
        ladder = self._fixed or ladder
        known = self._routes.get(id(ladder))
        if known is not None and known[0] is ladder:
            return known[1]
        routes = {tier.name: self._route(tier) for tier in ladder.tiers if tier.base_url or tier.api_key_env}
        if len(self._routes) >= LADDERS_KEPT:
            self._routes.clear()
        self._routes[id(ladder)] = (ladder, routes)
        for route in routes.values():
            if route.missing and ladder is not self._fixed:
                log.error("the model's ladder: %s: its calls fail and go to the next tier", route.missing)
        return routes

    def _route(self, tier: Tier) -> TierRoute:
        upstream = self.default
        if tier.base_url is not None:
            upstream = self._by_url.get(tier.base_url)
            if upstream is None:
                upstream = Upstream(tier.base_url, self._timeout_s, self._max_connections)
                self._by_url[tier.base_url] = upstream
        if tier.api_key_env is None:
            return TierRoute(tier, upstream)
        key = os.environ.get(tier.api_key_env)
        if not key:
            return TierRoute(
                tier, upstream, missing=f"tier {tier.name!r}: environment variable {tier.api_key_env} is not set"
            )
        return TierRoute(tier, upstream, key)

    async def open(
        self,
        step: Step,
        params: Mapping[str, Any],
        headers: list[tuple[str, str]],
        streamed: bool,
        ladder: TierLadder,
    ) -> httpx.Response:
        """Ask `step`'s tier (as `ladder`, the one the request was priced with, says) the Messages request `params`
        (its model set); the answer, in the Messages API, still to be read and closed by the caller."""
        route = self.routes(ladder).get(step.tier)
        if route is None:
            return await self.default.open("POST", "/v1/messages", encoded(params), headers)
        if route.missing is not None:
            return _json(502, {"type": "error", "error": {"type": "api_error", "message": route.missing}})
        upstream, key = route.upstream, route.key
        if route.tier.provider != OPENAI:
            if key is not None:
                headers = [(n, v) for n, v in headers if n.lower() not in _KEY_HEADERS] + [("x-api-key", key)]
            return await upstream.open("POST", "/v1/messages", encoded(params), headers)
        try:
            chat = chat_request(params)
        except ChatError as exc:
            return _json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": str(exc)}})
        key = key or credential(httpx.Headers(headers)) or ""  # the tier's own key, else the caller's
        sent = [("content-type", "application/json"), ("authorization", f"Bearer {key}")]
        answer = await upstream.open("POST", "/chat/completions", encoded(chat), sent)
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
        for upstream in self._by_url.values():
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
