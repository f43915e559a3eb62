"""Prometheus metrics for the router service: traffic, latency, decisions and the model serving them."""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import NamedTuple

import grpc
import prometheus_client as prom
from google.protobuf.descriptor import MethodDescriptor
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString
from tierwise.classifier.errors import InputError
from tierwise.classifier.workloads import OTHER
from tierwise.serving.calibration import DEFAULT_WINDOW, OutcomeStats

log = logging.getLogger("tierwise.serving")
ServicerContext = grpc.ServicerContext | grpc.aio.ServicerContext

# Predict sits on callers' hot path: the buckets resolve the 50 µs - 10 ms range finely.
LATENCY_BUCKETS = (
    50e-6, 100e-6, 150e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 0.5, 2.5, 10.0,
)  # fmt: skip


class Rpc(NamedTuple):
    """A gRPC method as the standard server metrics label it (go-grpc-prometheus, py-grpc-prometheus).

    `type` is unary, client_stream, server_stream or bidi_stream. tierwise's own metrics label a call by
    `method` alone. A tuple, so the hot path's dict look-ups hash it in C.
    """

    service: str
    method: str
    type: str

    @classmethod
    def of(cls, method: MethodDescriptor) -> Rpc:
        """The labels of a method of a protobuf service."""
        if method.client_streaming:
            kind = "bidi_stream" if method.server_streaming else "client_stream"
        else:
            kind = "server_stream" if method.server_streaming else "unary"
        return cls(method.containing_service.full_name, method.name, kind)


# Every path that is not a method this server knows: callers choose paths, so labelling by them would let
# them add series without bound.
UNKNOWN_RPC = Rpc("unknown", "unknown", "unknown")


class _Histogram:
    """Counts per latency bucket (upper bounds inclusive, the last one +Inf) and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def merge(self, other: _Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total

    def copy(self) -> _Histogram:
        copied = _Histogram()
        copied.merge(self)
        return copied

    def cumulative(self) -> list[tuple[str, float]]:
        """(bound, count) pairs, each bound counting every value up to it, as HistogramMetricFamily takes them."""
        return list(zip(_BOUNDS, itertools.accumulate(self.counts), strict=True))


_BOUNDS = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]
Timings = dict[tuple[Rpc, str], _Histogram]


def _add(timings: Timings, key: tuple[Rpc, str], seconds: float) -> None:
    """One timing into the histogram of its (rpc, code); the caller holds the lock."""
    histogram = timings.get(key)
    if histogram is None:
        histogram = timings[key] = _Histogram()
    histogram.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
    histogram.total += seconds


class HotPathStats(Collector):
    """Call counts, latency histograms and tier counts kept as plain numbers under one lock.

    prometheus-client's labelled Counter and Histogram cost several microseconds a call (a lock per
    child and a Python loop over the buckets); the hot path here pays a lock, a dict look-up and one bisect
    per record, and the metric families are built only when /metrics is scraped.

    Two views of the same traffic: tierwise's own (`tierwise_requests`, `tierwise_request_latency_seconds`:
    one count per unary call or per stream message, Router methods only) and gRPC's standard server metrics
    (`grpc_server_*`: one count per RPC, a stream from its start to its end, health checks included). Each
    timing is kept once, as a histogram by (rpc, code) whose total is the count: unary calls feed both views,
    stream messages tierwise's, stream and health check ends gRPC's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: dict[Rpc, int] = {}
        self._calls: Timings = {}
        self._messages: Timings = {}
        self._ends: Timings = {}
        self._tiers: dict[tuple[str, str, str], int] = {}
        self._explored: dict[str, int] = {}

    def start_rpc(self, rpc: Rpc) -> None:
        """Count an RPC as it starts, so started minus handled is what is in flight."""
        with self._lock:
            self._started[rpc] = self._started.get(rpc, 0) + 1

    def record_call(self, rpc: Rpc, code: str, seconds: float) -> None:
        """A unary RPC ended: one call in tierwise's metrics and one handled RPC in gRPC's."""
        with self._lock:
            _add(self._calls, (rpc, code), seconds)

    def record_message(self, rpc: Rpc, code: str, seconds: float) -> None:
        """One message of a stream handled: tierwise's metrics count each as a call."""
        with self._lock:
            _add(self._messages, (rpc, code), seconds)

    def end_rpc(self, rpc: Rpc, code: str, seconds: float) -> None:
        """A stream or a health check ended: one handled RPC in gRPC's metrics (tierwise's count messages)."""
        with self._lock:
            _add(self._ends, (rpc, code), seconds)

    def record_tier(self, tier: str, model_version: str, explored: bool = False, workload: str = OTHER) -> None:
        """Count one routing decision by its served tier, the model version that made it and its workload label
        (`Workloads.label`: the workloads file's names and `other`), and whether that tier was an exploration draw.
        Only versions this process served get series."""
        key = (tier, model_version, workload)
        with self._lock:
            self._tiers[key] = self._tiers.get(key, 0) + 1
            self._explored[workload] = self._explored.get(workload, 0) + explored

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            started = dict(self._started)
            calls = _merged((self._calls, self._messages), lambda rpc, code: (rpc.method, code))
            handled = _merged((self._calls, self._ends), lambda rpc, code: (rpc, code))
            tiers = dict(self._tiers)
            explored = dict(self._explored)
        yield from _tierwise_families(calls, tiers, explored)
        yield from _grpc_families(started, handled)


def _merged(sets: tuple[Timings, ...], key: Callable[[Rpc, str], tuple]) -> dict[tuple, _Histogram]:
    """Copies of several sets of timings as one, re-keyed (by method and code for tierwise's view, by rpc and
    code for gRPC's)."""
    merged: dict[tuple, _Histogram] = {}
    for timings in sets:
        for (rpc, code), histogram in timings.items():
            into = merged.get(key(rpc, code))
            if into is None:
                merged[key(rpc, code)] = histogram.copy()
            else:
                into.merge(histogram)
    return merged


def _by_first(timings: dict[tuple, _Histogram]) -> dict[object, _Histogram]:
    """Histograms summed over the codes: latency is labelled by method, not by how the call ended."""
    merged: dict[object, _Histogram] = {}
    for (labels, _), histogram in timings.items():
        into = merged.get(labels)
        if into is None:
            merged[labels] = histogram.copy()
        else:
            into.merge(histogram)
    return merged


def _tierwise_families(
    calls: dict[tuple, _Histogram], tiers: dict[tuple[str, str, str], int], explored: dict[str, int]
) -> Iterator[Metric]:
    """tierwise's own view: calls and stream messages by method, decisions by tier, model version and workload."""
    requests = CounterMetricFamily(
        "tierwise_requests",
        "Calls handled (each message of a stream counts), by method and gRPC status code.",
        labels=["method", "code"],
    )
    for (method, code), histogram in calls.items():
        requests.add_metric([method, code], sum(histogram.counts))
    latency = HistogramMetricFamily(
        "tierwise_request_latency_seconds",
        "Server-side handling time per call (per message for streams).",
        labels=["method"],
    )
    for method, histogram in _by_first(calls).items():
        latency.add_metric([method], histogram.cumulative(), histogram.total)
    predicted = CounterMetricFamily(
        "tierwise_predicted_tier",
        "Routing decisions, by served tier, the model version that made them and workload (--workloads names, other).",
        labels=["tier", "model_version", "workload"],
    )
    for (tier, version, workload), count in tiers.items():
        predicted.add_metric([tier, version, workload], count)
    exploration = CounterMetricFamily(
        "tierwise_explored",
        "Decisions served a cheaper tier than the policy chose (--explore-rate), by workload.",
        labels=["workload"],
    )
    for workload, count in (explored or {OTHER: 0}).items():
        exploration.add_metric([workload], count)
    yield from (requests, latency, predicted, exploration)


_RPC_LABELS = ["grpc_type", "grpc_service", "grpc_method"]


def _grpc_families(started: dict[Rpc, int], handled: dict[tuple, _Histogram]) -> Iterator[Metric]:
    """gRPC's standard server metrics, with go-grpc-prometheus's names and labels."""
    started_total = CounterMetricFamily(
        "grpc_server_started", "Total number of RPCs started on the server.", labels=_RPC_LABELS
    )
    for rpc, count in started.items():
        started_total.add_metric([rpc.type, rpc.service, rpc.method], count)
    handled_total = CounterMetricFamily(
        "grpc_server_handled",
        "Total number of RPCs completed on the server, regardless of success or failure.",
        labels=[*_RPC_LABELS, "grpc_code"],
    )
    for (rpc, code), histogram in handled.items():
        handled_total.add_metric([rpc.type, rpc.service, rpc.method, code], sum(histogram.counts))
    seconds = HistogramMetricFamily(
        "grpc_server_handling_seconds",
        "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
        labels=_RPC_LABELS,
    )
    for rpc, histogram in _by_first(handled).items():
        seconds.add_metric([rpc.type, rpc.service, rpc.method], histogram.cumulative(), histogram.total)
    yield from (started_total, handled_total, seconds)


class RpcTimer:
    """One RPC from its start to its end in gRPC's metrics, as a context manager (streams, health checks)."""

    __slots__ = ("_context", "_rpc", "_start", "_stats")

    def __init__(self, stats: HotPathStats, rpc: Rpc, context: ServicerContext):
        self._stats = stats
        self._rpc = rpc
        self._context = context

    def __enter__(self) -> RpcTimer:
        self._stats.start_rpc(self._rpc)
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        code = final_code(self._context, failed=exc_type is not None)
        self._stats.end_rpc(self._rpc, code, time.perf_counter() - self._start)


def final_code(context: ServicerContext, failed: bool) -> str:
    """The status an RPC ends with: the one its handler set or aborted with; DEADLINE_EXCEEDED once its
    deadline passed; CANCELLED when the handler left with an exception of its own (`failed`: the caller went
    away mid-call); else OK.

    grpcio may end the request stream of a call its caller cancelled as if the caller had closed it; a
    stream whose handler then returns counts as OK.
    """
    code = context.code()
    if code is not None:
        return code.name
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return "DEADLINE_EXCEEDED"
    return "CANCELLED" if failed else "OK"


class ServiceMetrics:
    """The service's metrics in their own registry (so several servers can share a process in tests)."""

    def __init__(self, calibration_window: int = DEFAULT_WINDOW) -> None:
        self.registry = CollectorRegistry()
        prom.ProcessCollector(registry=self.registry)  # process_*: this process's CPU, memory, file descriptors
        self._stats = HotPathStats()
        self.registry.register(self._stats)
        self.outcomes = OutcomeStats(calibration_window)
        self.registry.register(self.outcomes)
        self.start_rpc = self._stats.start_rpc
        self.record_call = self._stats.record_call
        self.record_message = self._stats.record_message
        self.record_tier = self._stats.record_tier
        self._model = prom.Info("tierwise_model", "The model bundle being served.", registry=self.registry)
        self._loaded_at = prom.Gauge(
            "tierwise_model_loaded_timestamp_seconds",
            "When the serving model was loaded.",
            registry=self.registry,
        )
        self._reloads = prom.Counter(
            "tierwise_model_reloads",
            "Model load attempts, by result (loaded or refused).",
            ["result"],
            registry=self.registry,
        )
        self._workloads_reloads = prom.Counter(
            "tierwise_workloads_reloads",
            "Workloads file loads (--workloads), by result (loaded or refused).",
            ["result"],
            registry=self.registry,
        )
        for result in ("loaded", "refused"):
            self._workloads_reloads.labels(result)  # exported at 0 from the start, so an alert can watch it
        self._dropped_rows = prom.Counter(
            "tierwise_log_rows_dropped",
            "Rows a JSONL log (decisions, outcomes) could not write, e.g. on a full disk.",
            ["log"],
            registry=self.registry,
        )

    def timed(self, rpc: Rpc, context: ServicerContext) -> RpcTimer:
        """Count a stream or a health check in gRPC's metrics: `with metrics.timed(rpc, context): ...`."""
        return RpcTimer(self._stats, rpc, context)

    def record_refused(self, rpc: Rpc, code: str) -> None:
        """An RPC answered with an error before its handler ran (a wrong token, no room for a stream)."""
        self._stats.start_rpc(rpc)
        self._stats.record_call(rpc, code, 0.0)

    def dropped_rows_counter(self, log_name: str) -> Callable[[int], None]:
        """The counter of one log's dropped rows, exported at 0 from now on so an alert can watch it."""
        return self._dropped_rows.labels(log_name).inc

    def record_model(self, version: str, encoder: str, source: str) -> None:
        """Publish which model is now serving."""
        self._model.info({"version": version, "encoder": encoder, "source": source})
        self._loaded_at.set(time.time())
        self._reloads.labels("loaded").inc()

    def record_refused_reload(self) -> None:
        self._reloads.labels("refused").inc()

    def record_workloads_reload(self, result: str) -> None:
        """A workloads file load (`serve --workloads`): `loaded`, or `refused` while the old policy keeps serving."""
        self._workloads_reloads.labels(result).inc()

    def serve_http(self, host: str, port: int) -> MetricsEndpoint:
        """Expose /metrics over HTTP on host:port (port 0 picks a free one)."""
        return serve_registry(self.registry, host, port)


def serve_registry(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Expose a registry's metrics at /metrics over HTTP on host:port (port 0 picks a free one).

    Raises ValueError naming the address when it cannot listen (a taken port), like the gRPC port does.
    """
    try:
        httpd, thread = prom.start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise InputError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
    return MetricsEndpoint(httpd, thread)


class WorkerMetrics(Collector):
    """The metrics of a pool's worker processes, read from each one's /metrics at scrape time.

    Samples keep their names and labels and gain `worker`, so a query sums over workers or tells them apart.
    A worker that cannot be read (restarting) is left out of that scrape.
    """

    def __init__(self, ports: Callable[[], dict[int, int]], timeout_s: float = 2.0):
        self._ports = ports
        self._timeout_s = timeout_s

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for index, port in sorted(self._ports().items()):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=self._timeout_s) as response:
                    text = response.read().decode("utf-8")
            except OSError as exc:
                log.warning("metrics of worker %d unavailable: %s", index, exc)
                continue
            for family in text_string_to_metric_families(text):
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation, family.type)
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "worker": str(index)}, sample.value)
        yield from families.values()


class MetricsEndpoint:
    """A running /metrics HTTP server."""

    def __init__(self, httpd, thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self.port: int = httpd.server_port

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
