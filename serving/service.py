"""The tierwise.v1.Router RPCs: validation, routing, exploration, responses, outcomes, metrics and the logs.

`RouterService` holds the logic once, independent of transport; `sync_handlers` and `aio_handlers` adapt
it to grpcio's thread-pool server and to its asyncio server. Every failure becomes a gRPC status with a
message naming what was wrong; nothing a caller sends can take the server down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from typing import Any

import grpc
from tierwise.classifier.exploration import Explorer
from tierwise.classifier.policy import PolicyError
from tierwise.classifier.router import Prediction, Router
from tierwise.classifier.timing import TierTime
from tierwise.serving.decision_log import Decision, DecisionLog
from tierwise.serving.metrics import UNKNOWN_RPC, Rpc, ServiceMetrics
from tierwise.serving.outcomes import OutcomeDesk, OutcomeLog
from tierwise.serving.recent import RecentDecisions
from tierwise.serving.reload import LoadedModel, ModelHolder
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.validation import (
    MODE_ENUM,
    MalformedRequest,
    RequestError,
    RouteArgs,
    lenient_deserializer,
    route_args,
)

log = logging.getLogger("tierwise.serving")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Router"].full_name
ROUTER_RPCS = {m.name: Rpc.of(m) for m in pb.DESCRIPTOR.services_by_name["Router"].methods}
_RPCS_BY_PATH = {f"/{SERVICE_NAME}/{name}": rpc for name, rpc in ROUTER_RPCS.items()}
# Deadlines are checked between chunks of a batch, so an expired call stops within one chunk's work.
BATCH_CHUNK = 64


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


@dataclasses.dataclass(frozen=True)
class Feedback:
    """How the server learns from its traffic (`ServeConfig` holds the defaults): exploration, memory, outcomes."""

    explore_rate: float
    explore_seed: int | None
    recent_decisions: int
    outcome_log: OutcomeLog | None


@dataclasses.dataclass(frozen=True)
class BandDefaults:
    """The latency budget and value of time a request gets when it sets none (`tierwise serve` options).

    Applied only when the serving model has a time model; a request that sets one itself on a model without
    one is refused, naming the field.
    """

    max_latency_ms: float | None = None
    value_of_time_usd_per_s: float | None = None

    def options(self, args: RouteArgs, router: Router) -> dict[str, object]:
        """The band keywords of Router.predict for one request."""
        timed = router.policy.times is not None
        budget, value = args.max_latency_ms, args.value_of_time_usd_per_s
        return {
            "band": args.band,
            "max_latency_ms": self.max_latency_ms if budget is None and timed else budget,
            "value_of_time_usd_per_s": self.value_of_time_usd_per_s if value is None and timed else value,
        }


class RouterService:
    """Answers routing requests with whatever model the holder serves at the moment each call starts."""

    def __init__(
        self,
        holder: ModelHolder,
        metrics: ServiceMetrics,
        limits: Limits,
        decision_log: DecisionLog | None,
        feedback: Feedback,
        band_defaults: BandDefaults,
    ):
        self._holder = holder
        self._metrics = metrics
        self._limits = limits
        self._band_defaults = band_defaults
        self._decision_log = decision_log
        self._explore_rate = feedback.explore_rate
        self._explore_seed = feedback.explore_seed
        self._explorer: tuple[Router | None, Explorer | None] = (None, None)
        self._recent = RecentDecisions(feedback.recent_decisions)
        self.outcomes = OutcomeDesk(holder, self._recent, metrics.outcomes, feedback.outcome_log)
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
            args = route_args(request, self._limits.max_prompt_bytes)
        except RequestError as exc:
            raise _invalid(exc) from None
        _check_deadline(context)
        router = loaded.router
        start = time.perf_counter_ns()
        try:
            prediction = router.predict(
                args.text,
                quality_target=args.quality_target,
                allowed_tiers=args.allowed_tiers,
                mode=args.mode,
                **self._band_defaults.options(args, router),
            )
        except PolicyError as exc:
            raise _invalid(_field_error(exc)) from None
        inference_us = (time.perf_counter_ns() - start) // 1000
        return self._answer(args, prediction, router, inference_us)

    def predict_batch(
        self, request: pb.PredictBatchRequest | MalformedRequest, context: Any
    ) -> pb.PredictBatchResponse:
        if isinstance(request, MalformedRequest):
            raise _invalid(request.error)
        loaded = self._serving_model()
        if len(request.requests) > self._limits.max_batch:
            raise _invalid(RequestError("requests", f"{len(request.requests)} items; at most {self._limits.max_batch}"))
        max_bytes = self._limits.max_prompt_bytes
        try:
            all_args = [route_args(r, max_bytes, f"requests[{i}].") for i, r in enumerate(request.requests)]
        except RequestError as exc:
            raise _invalid(exc) from None
        router = loaded.router
        responses: list[pb.PredictResponse | None] = [None] * len(all_args)
        total_us = 0
        for indices in _policy_groups(all_args):
            for chunk_start in range(0, len(indices), BATCH_CHUNK):
                chunk = indices[chunk_start : chunk_start + BATCH_CHUNK]
                _check_deadline(context)
                if self._abandoned.is_set():
                    raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "the server stopped before the batch was done")
                first = all_args[chunk[0]]
                start = time.perf_counter_ns()
                try:
                    predictions = router.predict_batch(
                        [all_args[i].text for i in chunk],
                        quality_target=first.quality_target,
                        allowed_tiers=first.allowed_tiers,
                        mode=first.mode,
                        **self._band_defaults.options(first, router),
                    )
                except PolicyError as exc:
                    raise _invalid(_field_error(exc, f"requests[{chunk[0]}].")) from None
                chunk_us = (time.perf_counter_ns() - start) // 1000
                total_us += chunk_us
                for i, prediction in zip(chunk, predictions, strict=True):
                    responses[i] = self._answer(all_args[i], prediction, router, chunk_us // len(chunk))
        return pb.PredictBatchResponse(responses=responses, model_version=router.version, inference_us=total_us)

    def model_info(self, request: object, context: Any) -> pb.ModelInfo:
        loaded = self._serving_model()
        cached = self._info
        if cached is None or cached[0] is not loaded:
            cached = self._info = (loaded, model_info(loaded))
        info = pb.ModelInfo(explore_rate=self._explore_rate)
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
        except RequestError as exc:
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

    def _explorer_for(self, router: Router) -> Explorer:
        cached_for, explorer = self._explorer
        if cached_for is not router or explorer is None:
            explorer = Explorer(router, self._explore_rate, random.Random(self._explore_seed))
            self._explorer = (router, explorer)
        return explorer

    def _answer(self, args: RouteArgs, prediction: Prediction, router: Router, inference_us: int) -> pb.PredictResponse:
        version = router.version
        explored, propensity, propensities = False, 1.0, None
        if self._explore_rate and args.allow_explore:
            served = self._explorer_for(router).serve(prediction, args.allowed_tiers, band=args.band)
            prediction, explored, propensity, propensities = (
                served.prediction,
                served.explored,
                served.propensity,
                served.propensities,
            )
        response = pb.PredictResponse(
            request_id=args.request_id,
            tier=prediction.tier,
            model=prediction.model,
            probabilities=prediction.probabilities,
            fallback_chain=prediction.fallback_chain,
            model_version=version,
            inference_us=inference_us,
            quality_target=prediction.quality_target,
            mode=MODE_ENUM[prediction.mode],
            use_batch_api=args.use_batch_api,
            latency_budget_met=prediction.latency_budget_met,
            explored=explored,
            propensity=propensity,
        )
        if prediction.expected_cost_usd is not None:
            response.expected_cost_usd = prediction.expected_cost_usd
        if prediction.expected_latency_ms is not None:
            response.expected_latency_ms = prediction.expected_latency_ms
        self._metrics.record_tier(prediction.tier, version, explored)
        self._recent.remember(args.request_id, prediction.probabilities)
        if self._decision_log is not None:
            self._decision_log.add(
                Decision(
                    args.request_id,
                    args.text,
                    args.messages,
                    prediction,
                    version,
                    args.band,
                    time.time(),
                    explored,
                    propensity,
                    propensities,
                )
            )
        return response


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
            raise _invalid(_field_error(outcome.error, prefix))
        try:
            known = self._desk.receive(outcome, prefix)
        except RequestError as exc:
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


def _policy_groups(all_args: list[RouteArgs]) -> Iterable[list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, args in enumerate(all_args):
        groups.setdefault(args.policy_key, []).append(i)
    return groups.values()


def _field_error(error: RequestError | PolicyError, prefix: str = "") -> RequestError:
    """The error as a RequestError whose field path starts with `prefix` (an item of a batch or stream)."""
    return RequestError(prefix + error.field, str(error).removeprefix(f"{error.field}: "))


def _invalid(error: RequestError) -> RpcFailure:
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
