"""Asking the tierwise router where an Anthropic Messages request should go, for the client and the proxy alike.

The request becomes a `RouteRequest` (which checks itself and its `RouteOptions`, raising `FieldError`): a single
user turn is sent as the `prompt`, anything longer (or with a system prompt) as `messages`, each message's text
parts as `tierwise.classifier.text` reads them. The answer becomes a `RouteDecision` priced
by the served bundle's own ladder (`GetModelInfo`, fetched once per bundle version). `Link` is what the proxy
asks of a router, wherever it runs; `GrpcLink` is the one that asks a shared router over gRPC.

When no router answers (unreachable, deadline passed, overloaded) the `RouterDown` policy decides: fail with
`RouterUnavailable`, or serve the fallback model (by default the top tier), flagging the result and logging
a warning when the router goes down and again when it is back. A router that refuses the request (a bad
option, a wrong token) raises `RoutingError`: that is a mistake to fix, not an outage to ride out.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import grpc
from tierwise.classifier.errors import InputError
from tierwise.classifier.limits import FieldError
from tierwise.classifier.request import Conversation, Message, RouteOptions, RouteRequest
from tierwise.classifier.text import content_text
from tierwise.serving.escalation import RouteDecision, Step, run_blocking
from tierwise.serving.outcome_reporter import OutcomeReporter
from tierwise.serving.price_book import PriceBook
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc
from tierwise.serving.validation import wire_request

log = logging.getLogger(__name__)

NO_TEXT = "no text to route on"
# A grade waits at most this long for the attempt reports queued before it to reach the router.
REPORTS_FIRST_S = 5.0
# Statuses meaning "no router could answer now", as opposed to "the router refused this request".
_UNREACHABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)


class RoutingError(InputError):
    """The router refused the request (INVALID_ARGUMENT, UNAUTHENTICATED, ...): its status and message."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"tierwise router refused the request: {code.name}: {details}")
        self.code = code


class RouterUnavailable(RuntimeError):
    """No router answered and the policy is to fail (`RouterDown(action="fail")`)."""


@dataclass(frozen=True)
class RouterDown:
    """What to do when no router answers: `fallback` to `fallback_model` (None: the top tier), or `fail`."""

    action: Literal["fallback", "fail"] = "fallback"
    fallback_model: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ("fallback", "fail"):
            raise FieldError("router_down", f"{self.action!r} is not one of fallback, fail")

    def decision(self, reason: str, prices: PriceBook) -> RouteDecision:
        """The fallback's decision, or RouterUnavailable when the policy is to fail."""
        if self.action == "fail":
            raise RouterUnavailable(f"tierwise router unavailable: {reason}")
        return self.fallback(reason, prices)

    def fallback(self, reason: str, prices: PriceBook) -> RouteDecision:
        """A one-step chain to the fallback model, flagged with why the router did not route."""
        model = self.fallback_model or prices.ladder.top.model
        tier = prices.tier_of_model(model)
        return RouteDecision(
            request_id=uuid.uuid4().hex,
            steps=(Step(tier.name if tier else "", model),),
            prices=prices,
            router_error=reason,
        )


def _chat(params: Mapping[str, Any]) -> list[Message]:
    """The Messages request's system prompt and turns as the router's chat messages (their text parts)."""
    chat = []
    if params.get("system"):
        chat.append(Message("system", content_text(_plain(params["system"]))))
    for message in params.get("messages") or ():
        message = _plain(message)
        chat.append(Message(str(message.get("role", "user")), content_text(message.get("content", ""))))
    return chat


def route_request_for(
    params: Mapping[str, Any], options: RouteOptions, conversation: Conversation | None = None
) -> RouteRequest | None:
    """The routing request for a Messages request (a turn of `conversation`, if given), or None when it has no text
    to route on (images only, say).

    Raises FieldError when the request cannot be routed as it is (over a limit, say).
    """
    chat = _chat(params)
    if not any(m.content.strip() for m in chat):
        return None
    if len(chat) == 1 and chat[0].role == "user":
        return RouteRequest(prompt=chat[0].content, options=options, conversation=conversation)
    return RouteRequest(messages=tuple(chat), options=options, conversation=conversation)


def predict_request(
    params: Mapping[str, Any], options: RouteOptions, conversation: Conversation | None = None
) -> pb.PredictRequest | None:
    """`route_request_for` as the PredictRequest that asks a server for it."""
    request = route_request_for(params, options, conversation)
    return None if request is None else wire_request(request)


def route_decision(
    request_id: str,
    tier: str,
    model: str,
    chain: Sequence[str],
    prices: PriceBook,
    use_batch_api: bool = False,
    explored: bool = False,
    kept_warm: bool = False,
) -> RouteDecision:
    """A router's answer (its tier and model first, then the rest of `chain` by tier name) as a chain of steps; a
    chain tier the price book does not know is left out."""
    steps = [Step(tier, model)]
    for name in chain[1:]:
        known = prices.tier_named(name)
        if known is not None:
            steps.append(Step(known.name, known.model))
    return RouteDecision(
        request_id, tuple(steps), prices, use_batch_api=use_batch_api, explored=explored, kept_warm=kept_warm
    )


def decision_from(response: pb.PredictResponse, prices: PriceBook) -> RouteDecision:
    """A Predict answer as a chain of steps."""
    return route_decision(
        response.request_id,
        response.tier,
        response.model,
        response.fallback_chain,
        prices,
        response.use_batch_api,
        response.explored,
        response.kept_warm,
    )


class _RouterState:
    """The part of talking to the router that does no I/O: price book cache, outage tracking, error triage."""

    def __init__(self, down: RouterDown):
        self.down = down
        self.prices: PriceBook | None = None
        self.outage: str | None = None  # why the router last failed to route; None while it answers

    def needs_prices(self, version: str) -> bool:
        return self.prices is None or self.prices.version != version

    def known_prices(self) -> PriceBook:
        return self.prices or PriceBook.shipped()

    def answered(self, response: pb.PredictResponse) -> RouteDecision:
        if self.outage is not None:
            log.warning("tierwise router reachable again after: %s", self.outage)
            self.outage = None
        return decision_from(response, self.known_prices())

    def failed(self, error: grpc.RpcError) -> RouteDecision:
        code = error.code()
        if code not in _UNREACHABLE:
            raise RoutingError(code, error.details() or "")
        reason = f"{code.name}: {error.details()}"
        if self.outage is None:
            log.warning("tierwise router cannot route (%s); policy: %s", reason, self.down.action)
            self.outage = reason
        return self.down.decision(reason, self.known_prices())

    def textless(self) -> RouteDecision:
        return textless(self.down, self.known_prices())


def textless(down: RouterDown, prices: PriceBook) -> RouteDecision:
    """A request with no text for the classifier (images only, say) goes to the fallback model, flagged."""
    log.info("request has %s; sent to the fallback model", NO_TEXT)
    return down.fallback(NO_TEXT, prices)


def _credentials(ca_cert: str | Path | None) -> grpc.ChannelCredentials | None:
    return None if ca_cert is None else grpc.ssl_channel_credentials(root_certificates=Path(ca_cert).read_bytes())


def _call_metadata(token: str | None) -> Sequence[tuple[str, str]]:
    """The bearer token as per-call metadata (empty without one)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


class _LinkCalls:
    """What both links do with the router, written once as coroutines over `_rpc`: the blocking link runs them with
    `run_blocking` (its calls never suspend), the asyncio link awaits them."""

    state: _RouterState
    _timeout_s: float
    _metadata: Sequence[tuple[str, str]]

    async def _rpc(self, method: str, request: Any) -> Any:
        """Call one unary Router method; each link makes the call its own way."""
        raise NotImplementedError

    async def _decision(
        self, params: Mapping[str, Any], options: RouteOptions, conversation: Conversation | None = None
    ) -> RouteDecision:
        """Where this Messages request should go (or the fallback's decision when no router answers)."""
        request = predict_request(params, options, conversation)
        if request is None:
            return self.state.textless()
        try:
            response = await self._rpc("Predict", request)
            if self.state.needs_prices(response.model_version):
                self.state.prices = await self._fetched_prices()
        except grpc.RpcError as exc:
            return self.state.failed(exc)
        return self.state.answered(response)

    async def _fetched_prices(self) -> PriceBook:
        info = await self._rpc("GetModelInfo", pb.GetModelInfoRequest())
        return PriceBook.from_manifest_json(info.manifest_json, info.version)


class RouterLink(_LinkCalls):
    """Routing decisions from a router over a blocking gRPC channel."""

    def __init__(
        self,
        target: str,
        down: RouterDown,
        *,
        timeout_s: float = 1.0,
        ca_cert: str | Path | None = None,
        token: str | None = None,
    ):
        credentials = _credentials(ca_cert)
        channel = grpc.insecure_channel(target) if credentials is None else grpc.secure_channel(target, credentials)
        self._channel = channel
        self._stub = pb_grpc.RouterStub(channel)
        self._timeout_s = timeout_s
        self._metadata = _call_metadata(token)
        self.state = _RouterState(down)

    async def _rpc(self, method: str, request: Any) -> Any:
        call = getattr(self._stub, method)
        return call(request, timeout=self._timeout_s, metadata=self._metadata)

    def decide(
        self, params: Mapping[str, Any], options: RouteOptions, conversation: Conversation | None = None
    ) -> RouteDecision:
        """Where this Messages request should go (or the fallback's decision when no router answers)."""
        return run_blocking(self._decision(params, options, conversation))

    def decide_many(self, requests: Sequence[tuple[Mapping[str, Any], RouteOptions]]) -> list[RouteDecision]:
        """Decisions for many requests in one PredictBatch call (for Message Batches)."""
        wire = [predict_request(params, options) for params, options in requests]
        routable = [request for request in wire if request is not None]
        if not routable:
            return [self.state.textless() for _ in wire]
        try:
            batch = self._stub.PredictBatch(
                pb.PredictBatchRequest(requests=routable), timeout=self._timeout_s * 4, metadata=self._metadata
            )
            if self.state.needs_prices(batch.model_version):
                self.state.prices = run_blocking(self._fetched_prices())
        except grpc.RpcError as exc:
            return [self.state.failed(exc) for _ in wire]
        answers = iter(batch.responses)
        return [self.state.textless() if r is None else self.state.answered(next(answers)) for r in wire]

    def report(self, outcome: pb.Outcome) -> pb.OutcomeAck:
        """One outcome, reported now (raises grpc.RpcError when the router does not take it)."""
        return run_blocking(self._rpc("ReportOutcome", outcome))

    def report_all(self, outcomes: Sequence[pb.Outcome]) -> object:
        """Outcomes reported now: one as ReportOutcome, more on one ReportOutcomes stream (raises grpc.RpcError)."""
        if len(outcomes) == 1:
            return self.report(outcomes[0])
        return self._stub.ReportOutcomes(iter(outcomes), timeout=self._timeout_s * 4, metadata=self._metadata)

    def close(self) -> None:
        self._channel.close()


class AsyncRouterLink(_LinkCalls):
    """`RouterLink` over an asyncio gRPC channel, for the async client and the proxy.

    The channel is opened on first use, inside the event loop that will use it.
    """

    def __init__(
        self,
        target: str,
        down: RouterDown,
        *,
        timeout_s: float = 1.0,
        ca_cert: str | Path | None = None,
        token: str | None = None,
    ):
        self._target = target
        self._credentials = _credentials(ca_cert)
        self._channel: grpc.aio.Channel | None = None
        self._stub_cache: pb_grpc.RouterStub | None = None
        self._timeout_s = timeout_s
        self._metadata = _call_metadata(token)
        self.state = _RouterState(down)

    @property
    def _stub(self) -> pb_grpc.RouterStub:
        if self._stub_cache is None:
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self._target)
            else:
                self._channel = grpc.aio.secure_channel(self._target, self._credentials)
            self._stub_cache = pb_grpc.RouterStub(self._channel)
        return self._stub_cache

    async def _rpc(self, method: str, request: Any) -> Any:
        call = getattr(self._stub, method)
        return await call(request, timeout=self._timeout_s, metadata=self._metadata)

    async def decide(
        self, params: Mapping[str, Any], options: RouteOptions, conversation: Conversation | None = None
    ) -> RouteDecision:
        """Where this Messages request should go (or the fallback's decision when no router answers)."""
        return await self._decision(params, options, conversation)

    async def prices(self) -> PriceBook:
        """The served ladder (fetched now if not yet known), or the shipped one when the router is out of reach."""
        if self.state.prices is None:
            try:
                self.state.prices = await self._fetched_prices()
            except grpc.RpcError:
                return self.state.known_prices()
        return self.state.prices

    async def report(self, outcome: pb.Outcome) -> pb.OutcomeAck:
        """One outcome, reported now (raises grpc.RpcError when the router does not take it)."""
        return await self._rpc("ReportOutcome", outcome)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


class Link(Protocol):
    """What the proxy asks of the router, wherever it runs: a shared `tierwise serve` over gRPC (`GrpcLink`,
    `tierwise proxy --router`) or the router in the proxy's own process (`tierwise.serving.local_link.LocalLink`,
    `tierwise proxy --model`). It is the `OutcomeSink` of the proxy's escalations."""

    @property
    def outage(self) -> str | None:
        """Why the router last failed to route; None while it answers."""
        ...

    async def decide(
        self, params: Mapping[str, Any], options: RouteOptions, conversation: Conversation | None = None
    ) -> RouteDecision:
        """Where a Messages request (a turn of `conversation`, if given) goes. FieldError or RoutingError when the
        router refuses it, RouterUnavailable when none answers and the policy is to fail."""
        ...

    async def prices(self) -> PriceBook:
        """The served bundle's ladder (the shipped one while no router can be asked)."""
        ...

    def report(self, outcome: pb.Outcome) -> None:
        """An attempt's outcome, off the caller's path: never blocks on the router, never raises."""
        ...

    async def grade(self, outcome: pb.Outcome) -> bool:
        """A later grade, taken after every outcome reported before it (so it is the later report of its attempt):
        whether the router routed its request. FieldError or RoutingError when it is not taken."""
        ...

    async def close(self) -> None:
        """Deliver what is still queued, then let go of the router."""
        ...


class GrpcLink:
    """The `Link` to a shared router: decisions, prices and grades on an asyncio channel; attempts' outcomes from
    an `OutcomeReporter`'s thread, batched, on a blocking channel of their own."""

    def __init__(
        self,
        target: str,
        down: RouterDown,
        *,
        timeout_s: float = 1.0,
        ca_cert: str | Path | None = None,
        token: str | None = None,
    ):
        self._link = AsyncRouterLink(target, down, timeout_s=timeout_s, ca_cert=ca_cert, token=token)
        self._reports = RouterLink(target, down, timeout_s=timeout_s, ca_cert=ca_cert, token=token)
        self.reporter = OutcomeReporter(self._reports.report_all)

    @property
    def outage(self) -> str | None:
        return self._link.state.outage

    async def decide(
        self, params: Mapping[str, Any], options: RouteOptions, conversation: Conversation | None = None
    ) -> RouteDecision:
        return await self._link.decide(params, options, conversation)

    async def prices(self) -> PriceBook:
        return await self._link.prices()

    def report(self, outcome: pb.Outcome) -> None:
        self.reporter.report(outcome)

    async def grade(self, outcome: pb.Outcome) -> bool:
        await self._reports_sent()
        try:
            return (await self._link.report(outcome)).known_request
        except grpc.RpcError as exc:
            raise RoutingError(exc.code(), exc.details() or "") from exc

    async def close(self) -> None:
        self.reporter.close()
        await self._link.close()
        self._reports.close()

    async def _reports_sent(self) -> None:
        """Wait (up to REPORTS_FIRST_S) until the outcomes queued so far have gone to the router."""
        loop = asyncio.get_running_loop()
        sent = loop.create_future()

        def done() -> None:
            if not sent.done():
                sent.set_result(None)

        self.reporter.after_sent(lambda: loop.call_soon_threadsafe(done))
        try:
            await asyncio.wait_for(sent, REPORTS_FIRST_S)
        except TimeoutError:
            log.warning("attempt reports still queued after %.0f s; sending a grade anyway", REPORTS_FIRST_S)


def _plain(value: Any) -> Any:
    """SDK objects (pydantic models, as in `message.content`) as the plain dicts and lists the API sends."""
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
