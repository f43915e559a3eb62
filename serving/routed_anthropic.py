"""Claude through the tierwise router, as a drop-in for the `anthropic` client.

`RoutedAnthropic(...).messages.create(...)` takes the SDK's own arguments with `model` left out (or set to
`"tierwise"`): it asks the router for a tier and fallback chain, calls the tier's model, judges the answer,
escalates along the chain on a rejected answer or a retryable API error, and reports every attempt to the
router (`ReportOutcome`, off the call path); a 200 that is not a Message is a failed attempt
(`invalid_response`), escalated like a 5xx. It returns the final `Message`, with the routing details as
`message.tierwise` (a `tierwise.serving.escalation.Routing`). A request naming any other model goes to the SDK
untouched.

`.messages.stream(...)` routes the same way and passes the SDK's stream through: a tier that fails before the
stream starts is escalated, a started stream never is. `AsyncRoutedAnthropic` is the asyncio twin.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Literal

import anthropic
from tierwise.classifier.request import DEFAULT_OPTIONS, RouteOptions
from tierwise.serving.call_defaults import CallDefaults
from tierwise.serving.escalation import Accept, Judge, StreamWatch
from tierwise.serving.outcome_reporter import OutcomeReporter
from tierwise.serving.routed_batches import RoutedBatches
from tierwise.serving.routed_streams import AsyncRoutedStream, RoutedStream
from tierwise.serving.router_link import AsyncRouterLink, RouterDown, RouterLink
from tierwise.serving.sdk_calls import answered, checked_answer, failure, with_routing

ROUTED_MODEL = "tierwise"


def _is_routed(model: str | None) -> bool:
    return model is None or model == ROUTED_MODEL


class RoutedAnthropic:
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
    """

    def __init__(
        self,
        router: str = "localhost:50051",
        client: anthropic.Anthropic | None = None,
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
    ):
        self.client = client if client is not None else anthropic.Anthropic()
        self.router = RouterLink(
            router, RouterDown(router_down, fallback_model), timeout_s=router_timeout_s, ca_cert=ca_cert, token=token
        )
        self.reporter = OutcomeReporter(self.router.report_all)
        self._routed = CallDefaults(routing.updated(workload=workload), Judge(accept, accept_threshold), self.reporter)
        self.messages = RoutedMessages(self.client, self.router, self._routed)
        self.batches = RoutedBatches(self.client, self.router, self._routed)

    def grade(self, routing: Any, success: bool | None = None, score: float | None = None) -> None:
        """Attach a later grade to a served answer (`message.tierwise`): another outcome for its final attempt."""
        self._routed.grade(routing, success, score)

    def close(self, timeout_s: float = 5.0) -> None:
        """Send the outcomes still queued (up to `timeout_s`) and close the router channel."""
        self.reporter.close(timeout_s)
        self.router.close()

    def __enter__(self) -> RoutedAnthropic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RoutedMessages:
    """`RoutedAnthropic.messages`: `create` and `stream`, routed."""

    def __init__(self, client: anthropic.Anthropic, router: RouterLink, routed: CallDefaults):
        self._client = client
        self._router = router
        self._routed = routed

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
        decision = self._router.decide(params, self._routed.route_options(routing))
        escalation = self._routed.escalation(decision, accept)
        answer = None
        while (step := escalation.next_step()) is not None:
            started = time.perf_counter()
            try:
                raw = self._client.messages.with_raw_response.create(model=step.model, **params)
                result = checked_answer(raw, raw.parse(), bool(params.get("stream")))
            except anthropic.APIError as exc:
                escalation.settle(failure(exc, started))
                if answer is None and escalation.next_step() is None:
                    raise
                continue
            if params.get("stream"):
                return RoutedStream(result, StreamWatch(escalation, started))
            answer = result
            escalation.settle(answered(answer, started), answer)
        return with_routing(answer, escalation.routing())

    def stream(
        self,
        *,
        model: str | None = None,
        routing: RouteOptions | None = None,
        accept: Accept | None = None,
        **params: Any,
    ) -> RoutedStreamManager | Any:
        """Messages.stream through the router: `with ... as stream` gives the SDK's stream, watched."""
        if not _is_routed(model):
            return self._client.messages.stream(model=model, **params)
        return RoutedStreamManager(self, params, routing, accept)

    def _open_stream(self, params: dict[str, Any], routing: RouteOptions | None, accept: Accept | None) -> Any:
        decision = self._router.decide(params, self._routed.route_options(routing))
        escalation = self._routed.escalation(decision, accept)
        while (step := escalation.next_step()) is not None:
            started = time.perf_counter()
            manager = self._client.messages.stream(model=step.model, **params)
            try:
                inner = manager.__enter__()
            except anthropic.APIError as exc:
                escalation.settle(failure(exc, started))
                if escalation.next_step() is None:
                    raise
                continue
            return RoutedStream(inner, StreamWatch(escalation, started))
        raise AssertionError("a decision always has at least one step")


class RoutedStreamManager:
    """What `RoutedMessages.stream` returns: routes and opens the stream on entry, reports it on exit."""

    def __init__(
        self, messages: RoutedMessages, params: dict[str, Any], routing: RouteOptions | None, accept: Accept | None
    ):
        self._open = lambda: messages._open_stream(params, routing, accept)
        self._stream: RoutedStream | None = None

    def __enter__(self) -> RoutedStream:
        self._stream = self._open()
        return self._stream

    def __exit__(self, *exc: object) -> None:
        if self._stream is not None:
            self._stream.close()


class AsyncRoutedAnthropic:
    """The asyncio twin of `RoutedAnthropic`, wrapping `anthropic.AsyncAnthropic`; same arguments, same results."""

    def __init__(
        self,
        router: str = "localhost:50051",
        client: anthropic.AsyncAnthropic | None = None,
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
    ):
        self.client = client if client is not None else anthropic.AsyncAnthropic()
        down = RouterDown(router_down, fallback_model)
        self.router = AsyncRouterLink(router, down, timeout_s=router_timeout_s, ca_cert=ca_cert, token=token)
        # Outcomes travel on a blocking channel of their own, from the reporter's thread.
        self._report_link = RouterLink(router, down, timeout_s=router_timeout_s, ca_cert=ca_cert, token=token)
        self.reporter = OutcomeReporter(self._report_link.report_all)
        self._routed = CallDefaults(routing.updated(workload=workload), Judge(accept, accept_threshold), self.reporter)
        self.messages = AsyncRoutedMessages(self.client, self.router, self._routed)

    def grade(self, routing: Any, success: bool | None = None, score: float | None = None) -> None:
        """Attach a later grade to a served answer (`message.tierwise`): another outcome for its final attempt."""
        self._routed.grade(routing, success, score)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Send the outcomes still queued (up to `timeout_s`) and close the router channels."""
        await asyncio.to_thread(self.reporter.close, timeout_s)
        self._report_link.close()
        await self.router.close()

    async def __aenter__(self) -> AsyncRoutedAnthropic:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncRoutedMessages:
    """`AsyncRoutedAnthropic.messages`: `create` and `stream`, routed."""

    def __init__(self, client: anthropic.AsyncAnthropic, router: AsyncRouterLink, routed: CallDefaults):
        self._client = client
        self._router = router
        self._routed = routed

    async def create(
        self,
        *,
        model: str | None = None,
        routing: RouteOptions | None = None,
        accept: Accept | None = None,
        **params: Any,
    ) -> Any:
        """Messages.create through the router: the final Message (or routed stream), with `.tierwise`."""
        if not _is_routed(model):
            return await self._client.messages.create(model=model, **params)
        decision = await self._router.decide(params, self._routed.route_options(routing))
        escalation = self._routed.escalation(decision, accept)
        answer = None
        while (step := escalation.next_step()) is not None:
            started = time.perf_counter()
            try:
                raw = await self._client.messages.with_raw_response.create(model=step.model, **params)
                result = checked_answer(raw, await raw.parse(), bool(params.get("stream")))
            except anthropic.APIError as exc:
                escalation.settle(failure(exc, started))
                if answer is None and escalation.next_step() is None:
                    raise
                continue
            if params.get("stream"):
                return AsyncRoutedStream(result, StreamWatch(escalation, started))
            answer = result
            escalation.settle(answered(answer, started), answer)
        return with_routing(answer, escalation.routing())

    def stream(
        self,
        *,
        model: str | None = None,
        routing: RouteOptions | None = None,
        accept: Accept | None = None,
        **params: Any,
    ) -> AsyncRoutedStreamManager | Any:
        """Messages.stream through the router: `async with ... as stream` gives the SDK's stream, watched."""
        if not _is_routed(model):
            return self._client.messages.stream(model=model, **params)
        return AsyncRoutedStreamManager(self, params, routing, accept)

    async def _open_stream(
        self, params: dict[str, Any], routing: RouteOptions | None, accept: Accept | None
    ) -> AsyncRoutedStream:
        decision = await self._router.decide(params, self._routed.route_options(routing))
        escalation = self._routed.escalation(decision, accept)
        while (step := escalation.next_step()) is not None:
            started = time.perf_counter()
            manager = self._client.messages.stream(model=step.model, **params)
            try:
                inner = await manager.__aenter__()
            except anthropic.APIError as exc:
                escalation.settle(failure(exc, started))
                if escalation.next_step() is None:
                    raise
                continue
            return AsyncRoutedStream(inner, StreamWatch(escalation, started))
        raise AssertionError("a decision always has at least one step")


class AsyncRoutedStreamManager:
    """What `AsyncRoutedMessages.stream` returns: routes and opens the stream on entry, reports it on exit."""

    def __init__(
        self,
        messages: AsyncRoutedMessages,
        params: dict[str, Any],
        routing: RouteOptions | None,
        accept: Accept | None,
    ):
        self._open = lambda: messages._open_stream(params, routing, accept)
        self._stream: AsyncRoutedStream | None = None

    async def __aenter__(self) -> AsyncRoutedStream:
        self._stream = await self._open()
        return self._stream

    async def __aexit__(self, *exc: object) -> None:
        if self._stream is not None:
            await self._stream.close()
