"""Claude through the tierwise router, as a drop-in for the `anthropic` client.

`RoutedAnthropic(...).messages.create(...)` takes the SDK's own arguments with `model` left out (or set to
`"tierwise"`): it asks the router for a tier and fallback chain, calls the tier's model, judges the answer,
escalates along the chain on a rejected answer or a retryable API error, and reports every attempt to the
router (`ReportOutcome`, off the call path); a 200 that is not a Message is a failed attempt
(`invalid_response`), escalated like a 5xx. It returns the final `Message`, with the routing details as
`message.tierwise` (a `tierwise.serving.escalation.Routing`). A request naming any other model goes to the SDK
untouched.

`.messages.stream(...)` routes the same way and passes the SDK's stream through: a tier that fails before the
stream starts is escalated, a started stream never is. `AsyncRoutedAnthropic` is the asyncio twin: both clients
run the same routed call (`RoutedMessages`, one coroutine over `Escalation.walk`); they differ only in their
`Calls` (`BLOCKING` or `AWAITED`) and in how they close.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import anthropic
from tierwise.classifier.request import DEFAULT_OPTIONS, RouteOptions
from tierwise.classifier.tiers import CACHE_LIFETIME_S
from tierwise.serving.call_defaults import CallDefaults
from tierwise.serving.conversations import Conversations
from tierwise.serving.escalation import Accept, Judge, Reply, Step, StreamWatch, run_blocking
from tierwise.serving.outcome_reporter import OutcomeReporter
from tierwise.serving.routed_batches import RoutedBatches
from tierwise.serving.routed_streams import (
    AsyncRoutedStream,
    AsyncRoutedStreamManager,
    RoutedStream,
    RoutedStreamManager,
)
from tierwise.serving.router_link import AsyncRouterLink, RouterDown, RouterLink
from tierwise.serving.sdk_calls import answered, checked_answer, failure, with_routing

ROUTED_MODEL = "tierwise"


def _is_routed(model: str | None) -> bool:
    return model is None or model == ROUTED_MODEL


async def _blocking(function: Callable[..., Any], /, *args: Any) -> Any:
    return function(*args)


async def _awaited(function: Callable[..., Awaitable[Any]], /, *args: Any) -> Any:
    return await function(*args)


@dataclass(frozen=True)
class Calls:
    """How a client calls, the one thing the sync and async clients do differently.

    The routed call is one coroutine for both: it makes each call through `call` (awaited as it is, or made as it
    is, blocking, so that the coroutine never suspends) and becomes what `create` returns through `result`.
    """

    sdk: type
    link: type[RouterLink] | type[AsyncRouterLink]
    stream: type[RoutedStream] | type[AsyncRoutedStream]
    stream_manager: type[RoutedStreamManager] | type[AsyncRoutedStreamManager]
    call: Callable[..., Awaitable[Any]]
    enter: Callable[[Any], Awaitable[Any]]  # an SDK stream manager entered: the stream, once it has started
    result: Callable[[Coroutine[Any, Any, Any]], Any]  # run now (sync), or handed back to be awaited


BLOCKING = Calls(
    anthropic.Anthropic,
    RouterLink,
    RoutedStream,
    RoutedStreamManager,
    call=_blocking,
    enter=lambda manager: _blocking(manager.__enter__),
    result=run_blocking,
)
AWAITED = Calls(
    anthropic.AsyncAnthropic,
    AsyncRouterLink,
    AsyncRoutedStream,
    AsyncRoutedStreamManager,
    call=_awaited,
    enter=lambda manager: _awaited(manager.__aenter__),
    result=lambda routed_call: routed_call,
)


class _RoutedClient:
    """What both clients share: the router link, the outcome reporter, the call defaults and `messages`."""

    calls: Calls

    def __init__(
        self,
        router: str = "localhost:50051",
        client: Any = None,
        accept: Accept | None = None,
        routing: RouteOptions = DEFAULT_OPTIONS,
        *,
        accept_threshold: float = 0.5,
        router_down: Literal["fallback", "fail"] = "fallback",
        fallback_model: str | None = None,
        router_timeout_s: float = 1.0,
        ca_cert: str | Path | None = None,
        token: str | None = None,
        workload: str | None = None,
        session_ttl_s: float = CACHE_LIFETIME_S,
    ):
        self.client = client if client is not None else self.calls.sdk()
        down = RouterDown(router_down, fallback_model)
        link = {"timeout_s": router_timeout_s, "ca_cert": ca_cert, "token": token}
        self.router = self.calls.link(router, down, **link)
        # Outcomes travel on a blocking channel from the reporter's thread: the router link's own, when it blocks.
        self._report_link = self.router if isinstance(self.router, RouterLink) else RouterLink(router, down, **link)
        self.reporter = OutcomeReporter(self._report_link.report_all)
        judge = Judge(accept, accept_threshold)
        self._routed = CallDefaults(
            routing.updated(workload=workload), judge, self.reporter, Conversations(session_ttl_s)
        )
        self.messages = RoutedMessages(self.client, self.router, self._routed, self.calls)

    def grade(self, routing: Any, success: bool | None = None, score: float | None = None) -> None:
        """Attach a later grade to a served answer (`message.tierwise`): another outcome for its final attempt."""
        self._routed.grade(routing, success, score)


class RoutedAnthropic(_RoutedClient):
    """An `anthropic.Anthropic` client whose calls go to the tier the tierwise router picks.

    - `router`: the router's host:port; `client`: the SDK client that makes the calls (default
      `anthropic.Anthropic()`, reading `ANTHROPIC_API_KEY`).
    - `accept(message) -> bool | float`: your check of an answer (a JSON schema, tests); a number is a score,
      accepted at `accept_threshold` or above. Without it, an answer is accepted unless it stopped at `max_tokens`.
    - `routing`: the default `RouteOptions` of every call (quality target, latency band, allowed tiers, mode,
      ...); `messages.create(routing=RouteOptions(...))` replaces them for one call.
    - `workload`: the workload every call belongs to (`routing`'s `workload`): written in the router's decision log;
      its `serve --workloads` entry fills in the options a call leaves unset.
    - `router_down`: when no router answers, `"fallback"` calls `fallback_model` (default: the top tier),
      flagging `message.tierwise.router_error` and logging a warning; `"fail"` raises `RouterUnavailable`.
    - `session_ttl_s`: how long a conversation's warm tier is remembered after its turn, as `tierwise proxy
      --session-ttl` (0: each call routed on its own). A conversation is `extra_headers={"x-tierwise-session": ...}`,
      else `metadata.user_id` with the first messages; a turn kept on its warm tier says `message.tierwise.kept_warm`.
    """

    calls = BLOCKING

    @cached_property
    def batches(self) -> RoutedBatches:
        """Routed requests through the Message Batches API."""
        return RoutedBatches(self.client, self.router, self._routed)

    def close(self, timeout_s: float = 5.0) -> None:
        """Send the outcomes still queued (up to `timeout_s`) and close the router channel."""
        self.reporter.close(timeout_s)
        self.router.close()

    def __enter__(self) -> RoutedAnthropic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRoutedAnthropic(_RoutedClient):
    """The asyncio twin of `RoutedAnthropic`, wrapping `anthropic.AsyncAnthropic`; same arguments, same results."""

    calls = AWAITED

    async def close(self, timeout_s: float = 5.0) -> None:
        """Send the outcomes still queued (up to `timeout_s`) and close the router channels."""
        await asyncio.to_thread(self.reporter.close, timeout_s)
        self._report_link.close()
        await self.router.close()

    async def __aenter__(self) -> AsyncRoutedAnthropic:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class RoutedMessages:
    """`.messages` of both clients: `create` and `stream`, routed; on the async client, what they return is awaited
    (`create`) or entered with `async with` (`stream`)."""

    def __init__(self, client: Any, router: RouterLink | AsyncRouterLink, routed: CallDefaults, calls: Calls):
        self._client = client
        self._router = router
        self._routed = routed
        self._calls = calls

    def create(
        self,
        *,
        model: str | None = None,
        routing: RouteOptions | None = None,
        accept: Accept | None = None,
        **params: Any,
    ) -> Any:
        """Messages.create through the router: the final Message (or routed stream), with `.tierwise`.

        Raises the API error when the walk ends on an error not worth retrying, or when no attempt answered.
        """
        if not _is_routed(model):
            return self._client.messages.create(model=model, **params)
        streamed = bool(params.get("stream"))

        async def answer(step: Step) -> Any:
            create = self._client.messages.with_raw_response.create
            raw = await self._calls.call(lambda: create(model=step.model, **params))
            return checked_answer(raw, await self._calls.call(raw.parse), streamed)

        return self._calls.result(self._routed_call(params, routing, accept, answer, streamed))

    def stream(
        self,
        *,
        model: str | None = None,
        routing: RouteOptions | None = None,
        accept: Accept | None = None,
        **params: Any,
    ) -> Any:
        """Messages.stream through the router: `with ... as stream` gives the SDK's stream, watched."""
        if not _is_routed(model):
            return self._client.messages.stream(model=model, **params)

        async def opened(step: Step) -> Any:
            return await self._calls.enter(self._client.messages.stream(model=step.model, **params))

        return self._calls.stream_manager(lambda: self._routed_call(params, routing, accept, opened, streamed=True))

    async def _routed_call(
        self,
        params: dict[str, Any],
        routing: RouteOptions | None,
        accept: Accept | None,
        call: Callable[[Step], Awaitable[Any]],
        streamed: bool,
    ) -> Any:
        """Route the request, then walk its chain calling each step's model with `call`; a stream is handed back
        as soon as one starts."""
        conversations = self._routed.conversations
        headers = {str(name).lower(): value for name, value in (params.get("extra_headers") or {}).items()}
        key = conversations.key(headers, params)
        options = self._routed.route_options(routing)
        decision = await self._calls.call(self._router.decide, params, options, conversations.get(key))
        escalation = self._routed.escalation(decision, accept, conversation=key)

        async def attempt(step: Step) -> Reply:
            started = time.perf_counter()
            try:
                result = await call(step)
            except anthropic.APIError as exc:
                return Reply(failure(exc, started), handed=exc)
            if streamed:
                return Reply(None, handed=self._calls.stream(result, StreamWatch(escalation, started)))
            return Reply(answered(result, started), result, result)

        handed = await escalation.walk(attempt)
        if isinstance(handed, anthropic.APIError):
            raise handed
        return handed if streamed else with_routing(handed, escalation.routing())
