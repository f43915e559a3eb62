"""Prometheus metrics for the router service: traffic, latency, decisions and the model serving them."""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import prometheus_client as prom
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from classifier.errors import InputError
from serving.calibration import DEFAULT_WINDOW, OutcomeStats

log = logging.getLogger("tierwise.serving")

# Predict sits on callers' hot path: the buckets resolve the 50 µs - 10 ms range finely.
LATENCY_BUCKETS = (
    50e-6, 100e-6, 150e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 0.5, 2.5, 10.0,
)  # fmt: skip


class HotPathStats(Collector):
    """Call counts, latency histograms and tier counts kept as plain numbers under one lock.

    prometheus-client's labelled Counter and Histogram cost several microseconds a call (a lock per
    child and a Python loop over the buckets); the hot path here pays one lock and one bisect, and the
    metric families are built only when /metrics is scraped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str], int] = {}
        self._latency: dict[str, tuple[list[int], list[float]]] = {}
        self._tiers: dict[str, int] = {}
        self._explored = 0

    def record_call(self, method: str, code: str, seconds: float) -> None:
        """Count one finished call and its handling time."""
        key = (method, code)
        with self._lock:
            self._calls[key] = self._calls.get(key, 0) + 1
            histogram = self._latency.get(method)
            if histogram is None:
                histogram = self._latency[method] = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
            counts, total = histogram
            counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            total[0] += seconds

    def record_tier(self, tier: str, explored: bool = False) -> None:
        """Count one routing decision by its served tier, and whether that tier was an exploration draw."""
        with self._lock:
            self._tiers[tier] = self._tiers.get(tier, 0) + 1
            self._explored += explored

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            calls = dict(self._calls)
            latency = {method: (list(counts), total[0]) for method, (counts, total) in self._latency.items()}
            tiers = dict(self._tiers)
            explored = self._explored
        requests = CounterMetricFamily(
            "tierwise_requests", "RPCs handled, by method and gRPC status code.", labels=["method", "code"]
        )
        for (method, code), count in calls.items():
            requests.add_metric([method, code], count)
        histogram = HistogramMetricFamily(
            "tierwise_request_latency_seconds",
            "Server-side handling time per RPC (per message for PredictStream).",
            labels=["method"],
        )
        bounds = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]
        for method, (counts, total) in latency.items():
            cumulative = list(itertools.accumulate(counts))
            histogram.add_metric([method], list(zip(bounds, cumulative, strict=True)), total)
        predicted = CounterMetricFamily(
            "tierwise_predicted_tier", "Routing decisions, by chosen tier.", labels=["tier"]
        )
        for tier, count in tiers.items():
            predicted.add_metric([tier], count)
        exploration = CounterMetricFamily(
            "tierwise_explored", "Decisions served a cheaper tier than the policy chose (--explore-rate)."
        )
        exploration.add_metric([], explored)
        yield from (requests, histogram, predicted, exploration)


class ServiceMetrics:
    """The service's metrics in their own registry (so several servers can share a process in tests)."""

    def __init__(self, calibration_window: int = DEFAULT_WINDOW) -> None:
        self.registry = CollectorRegistry()
        self._stats = HotPathStats()
        self.registry.register(self._stats)
        self.outcomes = OutcomeStats(calibration_window)
        self.registry.register(self.outcomes)
        self.record_call = self._stats.record_call
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
        self._dropped_rows = prom.Counter(
            "tierwise_log_rows_dropped",
            "Rows a JSONL log (decisions, outcomes) could not write, e.g. on a full disk.",
            ["log"],
            registry=self.registry,
        )

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
