"""`tierwise proxy`: the Anthropic Messages API, routed by tierwise; point any Anthropic client's `base_url` here.

- `POST /v1/messages` with `"model": "tierwise"` is routed: the router picks the tier, the proxy calls its model
  upstream, escalates along the fallback chain on an upstream error worth retrying (a 200 that is not a Message
  included) or an answer cut off at `max_tokens`, reports every attempt to the router, and answers with the final
  upstream answer plus `x-tierwise-request-id`, `-tier`, `-model`, `-attempts` (and `-cost-usd`, `-accepted`,
  `-router-error`) headers. Options travel in `x-tierwise-quality-target`, `x-tierwise-latency-band`,
  `x-tierwise-allowed-tiers` and `x-tierwise-workload`, over the workload's `--workloads` entry and the proxy's own
  defaults (`tierwise proxy --quality-target ...`), in that order (`Workloads.resolve`). A streamed
  request (SSE) is escalated only before its stream starts; a stream cut short upstream ends with an `error` event.
- `POST /v1/chat/completions` (OpenAI's API) with `"model": "tierwise"` is translated to a Messages request
  (`chat_translation.py`) and routed the same way, answered in OpenAI's format; `GET /v1/models` lists `tierwise`
  in the asking API's format. A tier the `--tiers` ladder gives its own provider, URL or key is called there
  (`tier_upstreams.py`).
- A turn of a conversation (`x-tierwise-session`, else the user with the first messages: `conversations.py`) is
  decided knowing which tier its prompt cache is warm on, and kept there where that pays (`x-tierwise-kept-warm`).
- Any other model, `POST /v1/messages/count_tokens` and every other normalised `/v1/...` path pass through
  untouched, below `--upstream`'s base path (`proxy_gate.py`).
- `POST /v1/tierwise/feedback {request_id, success | score}` attaches a later grade to a routed answer, from the
  caller that made the request or a holder of the feedback token (`proxy_feedback.py`); it reaches the router
  after the attempt reports the proxy queued before it.
- `GET /health` answers while the proxy runs, with what it last saw of the router.

The router is a shared `tierwise serve` asked over gRPC (`--router`), or runs inside this process (`--model`:
`local_link.py`, the `RouterCore` `tierwise serve` runs, with its decision and outcome logs, metrics and reload).

The caller's API key (`x-api-key` or `authorization`) is forwarded upstream and never logged. At most
`--max-concurrency` requests are in flight; one more is answered 529 `overloaded_error`, which the Anthropic
SDKs retry; a client that disconnects frees its slot at once. Bad bodies get a 4xx in the API's own error
format, naming the field and the limit (`proxy_input.py`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import grpc
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp
from tierwise.classifier.limits import IDENTIFIER, FieldError
from tierwise.classifier.request import Conversation, RouteOptions
from tierwise.classifier.tiers import TierLadder
from tierwise.classifier.uris import masked, masked_record
from tierwise.classifier.workloads import Workloads
from tierwise.serving.auth import read_token
from tierwise.serving.chat_translation import (
    ChatError,
    ChatStream,
    cache_marked,
    chat_completion,
    chat_error,
    error_body,
    include_usage,
    messages_headers,
    messages_request,
    models_entry,
)
from tierwise.serving.conversations import Conversations
from tierwise.serving.escalation import (
    INVALID_RESPONSE,
    Escalation,
    Judge,
    Reply,
    Routing,
    Step,
    StreamWatch,
    grade_outcome,
)
from tierwise.serving.local_link import LocalLink
from tierwise.serving.proxy_config import ProxyConfig, ProxyError
from tierwise.serving.proxy_feedback import FeedbackAuth, Served, ServedRequests, credential
from tierwise.serving.proxy_gate import HEALTH_PATH, Gate
from tierwise.serving.proxy_input import (
    ApiError,
    check_routable,
    encoded,
    invalid,
    message_params,
    read_body,
    read_grade,
    request_json,
)
from tierwise.serving.proxy_upstream import (
    SseScanner,
    Upstream,
    answer_call,
    is_event_stream,
    parse_json,
    reply_headers,
    request_headers,
    transport_failure,
)
from tierwise.serving.reload import Reloader, WorkloadsFile
from tierwise.serving.router_core import RouterCore
from tierwise.serving.router_link import GrpcLink, Link, RouterDown, RouterUnavailable, RoutingError
from tierwise.serving.tier_upstreams import TierUpstreams

log = logging.getLogger("tierwise.proxy")

ROUTED_MODEL = "tierwise"
NO_WORKLOADS = Workloads()
_OPTION_HEADERS = {
    "quality_target": "x-tierwise-quality-target",
    "latency_band": "x-tierwise-latency-band",
    "allowed_tiers": "x-tierwise-allowed-tiers",
    "workload": "x-tierwise-workload",
}


def route_options(
    headers: Mapping[str, str], defaults: RouteOptions, workloads: Workloads | None = None
) -> RouteOptions:
    """The routing options a request carries in its `x-tierwise-*` headers, over its workload's entry in `workloads`
    and then `defaults`; a bad one is named."""
    try:
        target = headers.get(_OPTION_HEADERS["quality_target"])
        tiers = headers.get(_OPTION_HEADERS["allowed_tiers"])
        band = headers.get(_OPTION_HEADERS["latency_band"])
        if band is not None:
            IDENTIFIER.check(band, _OPTION_HEADERS["latency_band"])
        requested = RouteOptions(
            quality_target=None if target is None else _number(target, _OPTION_HEADERS["quality_target"]),
            latency_band=band,
            allowed_tiers=() if tiers is None else tuple(name.strip() for name in tiers.split(",") if name.strip()),
            workload=headers.get(_OPTION_HEADERS["workload"]),
        )
    except FieldError as exc:
        field = exc.field.partition("[")[0]
        raise invalid(f"{_OPTION_HEADERS.get(field, field)}: {exc.problem}") from exc
    return (workloads or NO_WORKLOADS).resolve(requested, defaults)[0]


def _number(text: str, header: str) -> float:
    IDENTIFIER.check(text, header)
    try:
        value = float(text)
    except ValueError:
        raise invalid(f"{header}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise invalid(f"{header}: {text!r} is not a finite number")
    return value


def tierwise_headers(
    request_id: str, tier: str, model: str, attempts: int, router_error: str | None, kept_warm: bool
) -> dict[str, str]:
    """The routing headers of every routed answer."""
    headers = {
        "x-tierwise-request-id": request_id,
        "x-tierwise-tier": tier,
        "x-tierwise-model": model,
        "x-tierwise-attempts": str(attempts),
    }
    if router_error is not None:
        headers["x-tierwise-router-error"] = router_error
    if kept_warm:
        headers["x-tierwise-kept-warm"] = "true"
    return headers


def routing_headers(routing: Routing) -> dict[str, str]:
    """The routing headers of a finished walk, with its cost and verdict."""
    headers = tierwise_headers(
        routing.request_id, routing.tier, routing.model, len(routing.attempts), routing.router_error, routing.kept_warm
    )
    headers["x-tierwise-cost-usd"] = f"{routing.cost_usd:.8f}"
    headers["x-tierwise-accepted"] = "true" if routing.accepted else "false"
    return headers


def _no_answer(routing: Routing) -> ApiError:
    last = routing.attempts[-1].error if routing.attempts else "none"
    message = f"no usable upstream answer on any tier tried (last error: {last})"
    return ApiError(502, "api_error", message, routing_headers(routing))


class Proxy:
    """The proxy's state (upstream client, the router it asks and reports to, what it routed) and its endpoints."""

    def __init__(self, config: ProxyConfig, router: Link, feedback_token: str | None = None):
        self.config = config
        self.router = router
        self.judge = Judge()
        self.served = ServedRequests()
        self.conversations = Conversations(config.session_ttl_s)
        self.feedback_auth = FeedbackAuth(feedback_token)
        self.upstream = Upstream(config.upstream, config.upstream_timeout_s, config.max_concurrency)
        ladder = TierLadder.load(config.tiers) if config.tiers else None
        self.tiers = TierUpstreams(self.upstream, ladder, config.upstream_timeout_s, config.max_concurrency)
        self.workloads: WorkloadsFile | None = None
        self._reloader: Reloader | None = None
        if isinstance(router, LocalLink):  # the router in this process follows the file: reloads, SIGHUP, tier check
            self.workloads = router.core.workloads
        elif config.workloads:
            self.workloads = WorkloadsFile(config.workloads)
            self._reloader = Reloader([self.workloads], config.reload_interval)
            self.workloads.load()

    async def start(self) -> None:
        if self._reloader is not None:
            self._reloader.start()
        self.tiers.routes((await self.router.prices()).ladder)  # an unset key variable is said at start

    async def stop(self) -> None:
        if self._reloader is not None:
            self._reloader.stop()
        await self.tiers.aclose()
        await self.router.close()

    # --- endpoints ---------------------------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        body = await self._body(request)
        params = message_params(body)
        if params["model"] != ROUTED_MODEL:
            return await self._pass_through(request, body, stream=bool(params.get("stream")))
        headers = request_headers(_header_pairs(request), decode=True)
        return await self._route(request, params, headers)

    async def chat_completions(self, request: Request) -> Response:
        """OpenAI's Chat Completions: `model: "tierwise"` routed as a Messages request (`chat_translation`), any
        other model passed through; every refusal in OpenAI's error format."""
        try:
            body = await self._body(request)
            chat = request_json(body, "the Chat Completions API's request")
            if not isinstance(chat, dict):
                raise ChatError("body", "must be a JSON object (the Chat Completions API's request)")
            if chat.get("model") != ROUTED_MODEL:
                return await self._pass_through(request, body, stream=bool(chat.get("stream")))
            params = messages_request(chat)
            if self.conversations.named(request.headers):
                params = cache_marked(params)
            stream = ChatStream(include_usage(chat))
            headers = messages_headers(request_headers(_header_pairs(request), decode=True))
            return await self._route(request, params, headers, stream)
        except ChatError as exc:
            return JSONResponse(error_body("invalid_request_error", str(exc), exc.param), status_code=400)
        except ApiError as exc:
            return JSONResponse(error_body(exc.kind, str(exc)), status_code=exc.status, headers=exc.headers)

    async def models(self, request: Request) -> Response:
        """The upstream's models with `tierwise` first, in the asking API's format (Anthropic's sends
        `anthropic-version`)."""
        response = await self._pass_through(request, await self._body(request), stream=False)
        listed = parse_json(response.body)
        if response.status_code != 200 or not isinstance(listed, dict) or not isinstance(listed.get("data"), list):
            return response
        entry = models_entry(ROUTED_MODEL, "anthropic-version" in request.headers)
        listed["data"] = [entry, *listed["data"]]
        if "first_id" in listed:
            listed["first_id"] = ROUTED_MODEL
        headers = {k: v for k, v in response.headers.items() if k != "content-length"}
        return JSONResponse(listed, status_code=200, headers=headers)

    async def count_tokens(self, request: Request) -> Response:
        body = await self._body(request)
        params = message_params(body)
        if params["model"] == ROUTED_MODEL:
            top = (await self.router.prices()).ladder.top.model
            body = encoded({**params, "model": top})
        return await self._pass_through(request, body, stream=False)

    async def other(self, request: Request) -> Response:
        return await self._pass_through(request, await self._body(request), stream=True)

    async def feedback(self, request: Request) -> Response:
        sent = credential(request.headers)
        grade = read_grade(await self._body(request))
        model, attempt = self.feedback_auth.graded_attempt(sent, grade, self.served.get(grade.request_id))
        outcome = grade_outcome(grade.request_id, model, attempt, grade.success, grade.score)
        try:
            known = await self.router.grade(outcome)
        except FieldError as exc:
            raise invalid(str(exc)) from exc
        except RoutingError as exc:
            raise ApiError(502, "api_error", f"tierwise router did not take the grade: {exc.code.name}") from exc
        answer = {"request_id": grade.request_id, "model": model, "attempt": attempt, "known_request": known}
        return JSONResponse(answer)

    async def health(self, request: Request) -> Response:
        outage = self.router.outage
        health = {"status": "ok", "router": "ok" if outage is None else f"unavailable: {outage}"}
        if self.workloads is not None:
            refusal = self.workloads.last_refusal
            health["workloads"] = "ok" if refusal is None else f"refused, the previous policy in use: {refusal}"
        return JSONResponse(health)

    # --- routing -----------------------------------------------------------------------------------------

    async def _route(
        self, request: Request, params: dict[str, Any], headers: list[tuple[str, str]], chat: ChatStream | None = None
    ) -> Response:
        """A Messages request routed: decided with the caller's options, walked upstream; `chat` answers it as
        Chat Completions."""
        check_routable(params)
        policy = None if self.workloads is None else self.workloads.current
        options = route_options(request.headers, self.config.routing, policy)
        key = self._conversation_key(request, params)
        decision = await self._decide(params, options, self.conversations.get(key))
        escalation = Escalation(decision, self.judge, self.router, on_settled=self.conversations.recorder(key))
        caller = self.feedback_auth.fingerprint(credential(request.headers))
        return await self._routed(params, headers, escalation, caller, bool(params.get("stream")), chat)

    def _conversation_key(self, request: Request, params: dict[str, Any]) -> bytes | None:
        """The request's conversation (`conversations.py`), or None when conversations are not followed."""
        try:
            return self.conversations.key(request.headers, params)
        except FieldError as exc:
            raise invalid(str(exc)) from exc

    async def _decide(self, params: dict[str, Any], options: RouteOptions, conversation: Conversation | None) -> Any:
        try:
            return await self.router.decide(params, options, conversation)
        except FieldError as exc:
            raise invalid(str(exc)) from exc
        except RoutingError as exc:
            if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
                raise invalid(str(exc)) from exc
            raise ApiError(502, "api_error", str(exc)) from exc
        except RouterUnavailable as exc:
            raise ApiError(503, "api_error", str(exc)) from exc

    async def _routed(
        self,
        params: dict[str, Any],
        headers: list[tuple[str, str]],
        escalation: Escalation,
        caller: bytes,
        streamed: bool,
        chat: ChatStream | None = None,
    ) -> Response:
        """Walk the chain upstream: the final answer with its routing headers, or a stream as soon as one starts."""

        async def attempt(step: Step) -> Reply:
            started = time.perf_counter()
            try:
                ladder = escalation.decision.prices.ladder
                response = await self.tiers.open(step, {**params, "model": step.model}, headers, streamed, ladder)
                if streamed and response.status_code == 200 and is_event_stream(response.headers):
                    return Reply(None, handed=self._streamed(response, escalation, step, started, caller, chat))
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            except httpx.TransportError as exc:
                return Reply(transport_failure(exc, started))
            # A stream asked for and answered 200 without one is not an answer to pass on.
            payload = None if streamed and response.status_code == 200 else parse_json(response.content)
            call = answer_call(response.status_code, payload, started)
            if not call.error:
                return Reply(call, payload, response)
            return Reply(call, handed=None if call.error == INVALID_RESPONSE else response)

        final = await escalation.walk(attempt)
        if isinstance(final, StreamingResponse):
            return final
        routing = escalation.routing()
        self._remember(routing, caller)
        if final is None:
            raise _no_answer(routing)
        headers_out = reply_headers(final.headers, decoded=True) | routing_headers(routing)
        if chat is None:
            return Response(final.content, status_code=final.status_code, headers=headers_out)
        payload = parse_json(final.content)
        answer = chat_completion(payload) if final.status_code == 200 else chat_error(payload, final.status_code)
        headers_out.pop("content-type", None)
        return JSONResponse(answer, status_code=final.status_code, headers=headers_out)

    def _streamed(
        self,
        response: httpx.Response,
        escalation: Escalation,
        step: Step,
        started: float,
        caller: bytes,
        chat: ChatStream | None,
    ) -> StreamingResponse:
        """A started upstream stream, relayed with the routing headers of its attempt."""
        decision = escalation.decision
        routed = tierwise_headers(
            decision.request_id,
            step.tier,
            step.model,
            len(escalation.attempts) + 1,
            decision.router_error,
            decision.kept_warm,
        )
        return StreamingResponse(
            self._relay(response, StreamWatch(escalation, started), caller, chat),
            status_code=200,
            headers=reply_headers(response.headers, decoded=True) | routed,
        )

    async def _relay(
        self, response: httpx.Response, watch: StreamWatch, caller: bytes, chat: ChatStream | None
    ) -> AsyncIterator[bytes]:
        """The upstream stream, whole events at a time (as chunks for `chat`); cut short upstream, it ends with an
        `error` event."""
        scanner = SseScanner(watch)
        relayed = (lambda events: events) if chat is None else chat.feed
        try:
            try:
                async for chunk in response.aiter_bytes():
                    if events := relayed(scanner.feed(chunk)):
                        yield events
            except httpx.TransportError:
                pass  # the stream was cut short: `ending` says so
            if ending := relayed(scanner.ending()):
                yield ending
        finally:
            watch.finish(error=scanner.error)
            self._remember(watch.escalation.routing(), caller)
            with anyio.CancelScope(shield=True):
                await response.aclose()

    # --- plumbing ----------------------------------------------------------------------------------------

    async def _pass_through(self, request: Request, body: bytes, stream: bool) -> Response:
        """The request as it came, to the same path upstream; the answer as it came, read whole unless `stream`.

        The path is the one the gate checked (normalised, nothing encoded), so it stays below the upstream's base.
        """
        query = request.scope["query_string"].decode()  # as `request.url` reads it, without building the URL
        path = request.scope["path"] + (f"?{query}" if query else "")
        headers = request_headers(_header_pairs(request), decode=False)
        try:
            if not stream:
                response = await self.upstream.call(request.method, path, body, headers)
                return Response(response.content, response.status_code, reply_headers(response.headers, decoded=True))
            response = await self.upstream.open(request.method, path, body, headers)
        except httpx.TransportError as exc:
            raise ApiError(502, "api_error", f"upstream unreachable: {type(exc).__name__}") from exc
        return StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            headers=reply_headers(response.headers, decoded=False),
            background=BackgroundTask(response.aclose),
        )

    async def _body(self, request: Request) -> bytes:
        return await read_body(request, self.config.max_body_bytes)

    def _remember(self, routing: Routing, caller: bytes) -> None:
        models = tuple(attempt.model for attempt in routing.attempts)
        self.served.remember(routing.request_id, Served(models, routing.attempt, caller))


def _header_pairs(request: Request) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw]


def create_app(
    config: ProxyConfig,
    router: Link,
    on_ready: Callable[[], None] | None = None,
    feedback_token: str | None = None,
) -> ASGIApp:
    """The proxy as an ASGI app (what `tierwise proxy` serves with uvicorn), asking `router`; `feedback_token` may
    grade any routed request."""
    proxy = Proxy(config, router, feedback_token)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await proxy.start()
        if on_ready is not None:
            on_ready()
        yield
        await proxy.stop()

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return exc.response()

    app = Starlette(
        routes=[
            Route("/v1/messages", proxy.messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", proxy.count_tokens, methods=["POST"]),
            Route("/v1/chat/completions", proxy.chat_completions, methods=["POST"]),
            Route("/v1/models", proxy.models, methods=["GET"]),
            Route("/v1/tierwise/feedback", proxy.feedback, methods=["POST"]),
            Route(HEALTH_PATH, proxy.health, methods=["GET"]),
            Route("/v1/{path:path}", proxy.other, methods=["GET", "POST", "DELETE"]),
        ],
        exception_handlers={ApiError: api_error},
        lifespan=lifespan,
    )
    return Gate(app, config.max_concurrency)


def serve_proxy(config: ProxyConfig) -> None:
    """Run the proxy until SIGTERM or SIGINT; prints one `listening on HOST:PORT` line once it answers.

    With `config.local` the router runs in this process: its model is loaded before the proxy answers (and the
    proxy refuses to start without one), SIGHUP reloads the model and reopens the decision and outcome logs, and
    the logs are written out when the proxy stops.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        for handler in logging.getLogger().handlers:
            handler.addFilter(masked_record)
    feedback_token = read_token(config.feedback_token_file) if config.feedback_token_file else None
    host, port = config.listen_address()
    sock = _listening_socket(config, host, port)
    try:
        router, described = _router(config, host)
    except BaseException:
        sock.close()
        raise
    bound = sock.getsockname()[1]

    def ready() -> None:
        print(
            f"tierwise proxy: listening on {host}:{bound} ({described}, upstream {masked(config.upstream)})",
            flush=True,
        )

    app = create_app(config, router, on_ready=ready, feedback_token=feedback_token)
    # uvloop and httptools when installed (the anthropic extra brings them): 0.2-0.4 ms less per routed request.
    # No X-Forwarded-* rewriting: the proxy reads neither the client's address nor the URL's scheme and host.
    served = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", proxy_headers=False)
    server = uvicorn.Server(served)
    server.run(sockets=[sock])


def _router(config: ProxyConfig, host: str) -> tuple[Link, str]:
    """The router the proxy asks (the app closes it when the proxy stops), and how the ready line names it: a shared
    one over gRPC, or one started here (model loaded, reload and metrics running, SIGHUP taken)."""
    down = RouterDown(config.router_down, config.fallback_model)
    if config.local is None:
        assert config.router is not None
        token = read_token(config.auth_token_file) if config.auth_token_file else None
        link = GrpcLink(config.router, down, timeout_s=config.router_timeout_s, ca_cert=config.ca_cert, token=token)
        return link, f"router {config.router}"
    core = RouterCore(dataclasses.replace(config.local, host=host))
    try:
        core.start()
    except BaseException:
        core.close()
        raise
    signal.signal(signal.SIGHUP, lambda *_: core.on_sighup())
    loaded = core.holder.current
    assert loaded is not None
    metrics = f", metrics on :{core.endpoint.port}" if core.endpoint else ""
    described = f"router in this process: model {loaded.router.version} from {core.holder.source.describe()}"
    return LocalLink(core, down), described + metrics


def _listening_socket(config: ProxyConfig, host: str, port: int) -> socket.socket:
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted connections only for sockets that say so,
    # and without it every answer waits out a 40 ms delayed ACK.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ProxyError(f"--listen: cannot listen on {config.listen}: {exc.strerror}") from exc
    sock.listen(2048)
    return sock
