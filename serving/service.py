"""The tierwise.v1.Router RPCs: protobuf in, decisions and outcomes out, every failure a gRPC status.

`RouterService` only adapts: a `PredictRequest` becomes a `RouteRequest` (which checks itself), the
`RouterCore`'s transport-free `Decider` decides (band defaults, policy, exploration; its hooks count the tier,
remember the decision and log it), and the `Decision` goes back as a `PredictResponse`; an `Outcome` goes to the
core's `OutcomeDesk`. `sync_handlers` and `aio_handlers` adapt the service
to grpcio's thread-pool server and to its asyncio server. Every failure becomes a gRPC status with a message
naming what was wrong; nothing a caller sends can take the server down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from typing import Any

import grpc
from tierwise.classifier.limits import FieldError
from tierwise.classifier.request import RouteRequest
from tierwise.classifier.router import Router
from tierwise.classifier.timing import TierTime
from tierwise.serving.metrics import UNKNOWN_RPC, Rpc, ServiceMetrics
from tierwise.serving.outcomes import OutcomeDesk
from tierwise.serving.reload import LoadedModel
from tierwise.serving.router_core import RouterCore
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.validation import MalformedRequest, lenient_deserializer, predict_response, route_request

log = logging.getLogger("tierwise.serving")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Router"].full_name
ROUTER_RPCS = {m.name: Rpc.of(m) for m in pb.DESCRIPTOR.services_by_name["Router"].methods}
_RPCS_BY_PATH = {f"/{SERVICE_NAME}/{name}": rpc for name, rpc in ROUTER_RPCS.items()}


class RpcFailure(Exception):
    """A call that ends with a non-OK status; `details` tells the caller what to fix."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code = code
        self.details = details


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a single call may ask of the server (`ServeConfig` holds the defaults)."""

    max_prompt_bytes: int
    max_batch: int


class RouterService:
    """Answers routing requests with whatever model the holder serves at the moment each call starts."""

    def __init__(self, core: RouterCore, limits: Limits):
        self._holder = core.holder
        self._metrics = core.metrics
        self._limits = limits
        self.decider = core.decider
        self.outcomes = core.outcomes
        self._info: tuple[LoadedModel, pb.ModelInfo] | None = None
        self._abandoned = threading.Event()

    def abandon_calls(self) -> None:
        """Stop running batches at their next chunk: the drain's grace is over and the process is leaving."""
        self._abandoned.set()

    def predict(self, request: pb.PredictRequest | MalformedRequest, context: Any) -> pb.PredictResponse:
        if isinstance(request, MalformedRequest):
            raise _invalid(request.error)
        loaded = self._serving_model()
        try:
            routed = route_request(request, self._limits.max_prompt_bytes)
            _check_deadline(context)
            decision = self.decider.decide(loaded.router, routed)
        except FieldError as exc:
            raise _invalid(exc) from None
        return predict_response(decision)

    def predict_batch(
        self, request: pb.PredictBatchRequest | MalformedRequest, context: Any
    ) -> pb.PredictBatchResponse:
        if isinstance(request, MalformedRequest):
            raise _invalid(request.error)
        loaded = self._serving_model()
        if len(request.requests) > self._limits.max_batch:
            raise _invalid(FieldError("requests", f"{len(request.requests)} items; at most {self._limits.max_batch}"))
        router = loaded.router
        try:
            routed = self._batch_items(request.requests)
            decisions = self.decider.decide_batch(router, routed, lambda: self._between_chunks(context))
        except FieldError as exc:
            raise _invalid(exc) from None
        return pb.PredictBatchResponse(
            responses=[predict_response(decision) for decision in decisions],
            model_version=router.version,
            inference_us=sum(decision.inference_us for decision in decisions),
        )

    def model_info(self, request: object, context: Any) -> pb.ModelInfo:
        loaded = self._serving_model()
        cached = self._info
        if cached is None or cached[0] is not loaded:
            cached = self._info = (loaded, model_info(loaded))
        info = pb.ModelInfo(explore_rate=self.decider.explore_rate)
        info.MergeFrom(cached[1])
        info.live_calibration.extend(
            pb.LiveCalibration(**dataclasses.asdict(row)) for row in self._metrics.outcomes.calibration()
        )
        return info

    def report_outcome(self, request: pb.Outcome | MalformedRequest, context: Any) -> pb.OutcomeAck:
        if isinstance(request, MalformedRequest):
            raise _invalid(request.error)
        try:
            known = self.outcomes.receive(request)
        except FieldError as exc:
            raise _invalid(exc) from None
        return pb.OutcomeAck(request_id=request.request_id, known_request=known)

    def outcome_tally(self) -> OutcomeTally:
        """A fresh count for one ReportOutcomes stream."""
        return OutcomeTally(self.outcomes)

    def _serving_model(self) -> LoadedModel:
        loaded = self._holder.current
        if loaded is None:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "no model is loaded yet")
        return loaded

    def _batch_items(self, requests: Iterable[pb.PredictRequest]) -> list[RouteRequest]:
        items = []
        for index, request in enumerate(requests):
            try:
                items.append(route_request(request, self._limits.max_prompt_bytes))
            except FieldError as exc:
                raise exc.within(f"requests[{index}].") from None
        return items

    def _between_chunks(self, context: Any) -> None:
        """Stop a batch whose deadline passed, or that the server's drain gave up on."""
        _check_deadline(context)
        if self._abandoned.is_set():
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "the server stopped before the batch was done")


class OutcomeTally:
    """One ReportOutcomes stream: each outcome received as ReportOutcome would, counted for the summary."""

    def __init__(self, desk: OutcomeDesk):
        self._desk = desk
        self.received = 0
        self.unknown = 0

    def add(self, outcome: pb.Outcome | MalformedRequest, context: Any) -> None:
        """Receive the next outcome of the stream; a bad one is INVALID_ARGUMENT naming `outcomes[i].field`.

        Outcomes before a bad one are kept (and logged); a client that resends the whole stream only repeats
        them: repeats change nothing (counted as duplicates, not logged again).
        """
        prefix = f"outcomes[{self.received}]."
        if isinstance(outcome, MalformedRequest):
            raise _invalid(outcome.error.within(prefix))
        try:
            known = self._desk.receive(outcome, prefix)
        except FieldError as exc:
            raise _invalid(exc) from None
        self.received += 1
        self.unknown += not known

    def summary(self) -> pb.OutcomesSummary:
        return pb.OutcomesSummary(received=self.received, unknown_requests=self.unknown)


def rpc_for(path: str) -> Rpc:
    """The metrics labels for a called method path: the Router's own methods, every other path `unknown`.

    Callers choose the path (any `/x/<uuid>` reaches the auth check); labelling by it would let them add
    metric series without bound.
    """
    return _RPCS_BY_PATH.get(path, UNKNOWN_RPC)


def model_info(loaded: LoadedModel) -> pb.ModelInfo:
    """GetModelInfo's answer for a loaded bundle."""
    router: Router = loaded.router
    manifest = router.manifest
    policy = manifest.policy
    times = router.policy.times
    return pb.ModelInfo(
        version=router.version,
        tiers=[
            pb.TierInfo(
                name=t.name,
                model=t.model,
                models=list(t.models),
                input_usd_per_mtok=t.input_usd_per_mtok,
                output_usd_per_mtok=t.output_usd_per_mtok,
                time=None if times is None else tier_time_info(times.tiers[i]),
            )
            for i, t in enumerate(router.ladder.tiers)
        ],
        threshold=policy.threshold,
        threshold_rule=f"{policy.rule}: {policy.chosen_by}" if policy.chosen_by else policy.rule,
        encoder=manifest.encoder.kind,
        metrics=flatten_metrics(manifest.metrics),
        data_fingerprint=str(manifest.data.get("fingerprint", "")),
        source=str(loaded.bundle.path),
        manifest_json=json.dumps(manifest.to_json(), sort_keys=True),
    )


def tier_time_info(time: TierTime) -> pb.TierTime:
    """GetModelInfo's view of a tier's time model (0 where the first-token time or rate is unknown)."""
    return pb.TierTime(
        first_token_ms=time.first_token_ms or 0.0,
        output_tokens_per_s=time.output_tokens_per_s or 0.0,
        latency_ms_p50=time.quantile(0.5),
        latency_ms_p90=time.quantile(0.9),
        latency_ms_p99=time.quantile(0.99),
        source=time.source,
    )


def flatten_metrics(metrics: object, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested metrics mapping, keyed by their dotted path."""
    flat: dict[str, float] = {}
    if isinstance(metrics, dict):
        for key, value in metrics.items():
            flat.update(flatten_metrics(value, f"{prefix}{key}."))
    elif isinstance(metrics, int | float) and not isinstance(metrics, bool):
        flat[prefix.rstrip(".")] = float(metrics)
    return flat


def _invalid(error: FieldError) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, str(error))


def _check_deadline(context: Any) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise RpcFailure(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the work was done")


# --- transport adapters -------------------------------------------------------------------------------

CallResult = tuple[Any, RpcFailure | None]
# The unary method a caller can use instead of a stream the sync server has no room for.
_UNARY_TWIN = {"PredictStream": "Predict", "ReportOutcomes": "ReportOutcome"}


Record = Callable[[Rpc, str, float], None]
_PREDICT_STREAM, _REPORT_OUTCOMES = ROUTER_RPCS["PredictStream"], ROUTER_RPCS["ReportOutcomes"]


def _run(record: Record, rpc: Rpc, fn: Callable[[Any, Any], Any], request: Any, context: Any) -> CallResult:
    """Run one call (or one message of a stream), record it, and turn any exception into the caller's status."""
    start = time.perf_counter()
    try:
        response, failure = fn(request, context), None
    except RpcFailure as exc:
        response, failure = None, exc
    except Exception:
        log.exception("%s failed unexpectedly", rpc.method)
        response, failure = None, RpcFailure(grpc.StatusCode.INTERNAL, "internal error; see the server log")
    record(rpc, "OK" if failure is None else failure.code.name, time.perf_counter() - start)
    return response, failure


def _handlers(
    unary: Callable[..., Any], predict_stream: Callable[..., Any], outcome_stream: Callable[..., Any]
) -> dict[str, grpc.RpcMethodHandler]:
    return {
        "Predict": grpc.unary_unary_rpc_method_handler(
            unary("Predict"),
            request_deserializer=lenient_deserializer(pb.PredictRequest),
            response_serializer=pb.PredictResponse.SerializeToString,
        ),
        "PredictBatch": grpc.unary_unary_rpc_method_handler(
            unary("PredictBatch"),
            request_deserializer=lenient_deserializer(pb.PredictBatchRequest),
            response_serializer=pb.PredictBatchResponse.SerializeToString,
        ),
        "PredictStream": grpc.stream_stream_rpc_method_handler(
            predict_stream,
            request_deserializer=lenient_deserializer(pb.PredictRequest),
            response_serializer=pb.PredictResponse.SerializeToString,
        ),
        "GetModelInfo": grpc.unary_unary_rpc_method_handler(
            unary("GetModelInfo"),
            request_deserializer=lenient_deserializer(pb.GetModelInfoRequest),
            response_serializer=pb.ModelInfo.SerializeToString,
        ),
        "ReportOutcome": grpc.unary_unary_rpc_method_handler(
            unary("ReportOutcome"),
            request_deserializer=lenient_deserializer(pb.Outcome),
            response_serializer=pb.OutcomeAck.SerializeToString,
        ),
        "ReportOutcomes": grpc.stream_unary_rpc_method_handler(
            outcome_stream,
            request_deserializer=lenient_deserializer(pb.Outcome),
            response_serializer=pb.OutcomesSummary.SerializeToString,
        ),
    }


def _methods(service: RouterService) -> dict[str, Callable[[Any, Any], Any]]:
    return {
        "Predict": service.predict,
        "PredictBatch": service.predict_batch,
        "GetModelInfo": service.model_info,
        "ReportOutcome": service.report_outcome,
    }


def sync_handlers(
    service: RouterService, metrics: ServiceMetrics, max_streams: int
) -> dict[str, grpc.RpcMethodHandler]:
    """Method handlers for grpc.server (thread pool).

    An open stream (PredictStream, ReportOutcomes) holds a thread while it waits for messages, so streams
    run on threads of their own: at most `max_streams` open at once, one more thread to refuse the next ones
    with RESOURCE_EXHAUSTED at once. Unary calls and health keep the server's pool whatever streams do.
    """
    methods = _methods(service)
    slots = threading.BoundedSemaphore(max_streams)
    # grpc.server runs a behavior on the executor in its `experimental_thread_pool` attribute when it has one
    # (grpc_health's Watch uses the same hook), else on the server's pool.
    stream_pool = futures.ThreadPoolExecutor(max_workers=max_streams + 1, thread_name_prefix="tierwise-stream")

    def unary(name: str) -> Callable[[Any, grpc.ServicerContext], Any]:
        fn, rpc = methods[name], ROUTER_RPCS[name]

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            metrics.start_rpc(rpc)
            response, failure = _run(metrics.record_call, rpc, fn, request, context)
            if failure is not None:
                context.abort(failure.code, failure.details)
            return response

        return handle

    def on_stream_thread(rpc: Rpc, body: Callable[[Iterable[Any], grpc.ServicerContext], Any]) -> Callable:
        def behavior(requests: Iterable[Any], context: grpc.ServicerContext) -> Any:
            if not slots.acquire(blocking=False):
                metrics.record_refused(rpc, grpc.StatusCode.RESOURCE_EXHAUSTED.name)
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{max_streams} streams are open, the most this server takes (--max-streams); "
                    f"retry later, or call {_UNARY_TWIN[rpc.method]}",
                )
            if not context.add_callback(slots.release):  # the call already ended
                slots.release()
            return body(requests, context)

        behavior.experimental_thread_pool = stream_pool  # type: ignore[attr-defined]
        return behavior

    def answer_stream(requests: Iterable[Any], context: grpc.ServicerContext) -> Iterable[pb.PredictResponse]:
        with metrics.timed(_PREDICT_STREAM, context):
            for request in requests:
                response, failure = _run(metrics.record_message, _PREDICT_STREAM, service.predict, request, context)
                if failure is not None:
                    context.abort(failure.code, failure.details)
                yield response

    def take_outcomes(requests: Iterable[Any], context: grpc.ServicerContext) -> pb.OutcomesSummary:
        with metrics.timed(_REPORT_OUTCOMES, context):
            tally = service.outcome_tally()
            for request in requests:
                _, failure = _run(metrics.record_message, _REPORT_OUTCOMES, tally.add, request, context)
                if failure is not None:
                    context.abort(failure.code, failure.details)
            return tally.summary()

    return _handlers(
        unary, on_stream_thread(_PREDICT_STREAM, answer_stream), on_stream_thread(_REPORT_OUTCOMES, take_outcomes)
    )


def aio_handlers(service: RouterService, metrics: ServiceMetrics) -> dict[str, grpc.RpcMethodHandler]:
    """Method handlers for grpc.aio.server. Batches run on a worker thread so they never stall the loop."""
    methods = _methods(service)

    def unary(name: str) -> Callable[[Any, grpc.aio.ServicerContext], Any]:
        fn, rpc = methods[name], ROUTER_RPCS[name]
        offload = name == "PredictBatch"

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metrics.start_rpc(rpc)
            if offload:
                response, failure = await asyncio.to_thread(_run, metrics.record_call, rpc, fn, request, context)
            else:
                response, failure = _run(metrics.record_call, rpc, fn, request, context)
            if failure is not None:
                await context.abort(failure.code, failure.details)
            return response

        return handle

    async def answer_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        with metrics.timed(_PREDICT_STREAM, context):
            async for request in requests:
                response, failure = _run(metrics.record_message, _PREDICT_STREAM, service.predict, request, context)
                if failure is not None:
                    await context.abort(failure.code, failure.details)
                yield response

    async def take_outcomes(requests: Any, context: grpc.aio.ServicerContext) -> pb.OutcomesSummary:
        with metrics.timed(_REPORT_OUTCOMES, context):
            tally = service.outcome_tally()
            async for request in requests:
                _, failure = _run(metrics.record_message, _REPORT_OUTCOMES, tally.add, request, context)
                if failure is not None:
                    await context.abort(failure.code, failure.details)
            return tally.summary()

    return _handlers(unary, answer_stream, take_outcomes)
