"""Prometheus metrics for the router service: traffic, latency, decisions and the model serving them."""

from __future__ import annotations

import time
from collections.abc import Callable

import prometheus_client as prom
from prometheus_client.registry import CollectorRegistry

# Predict sits on callers' hot path: the buckets resolve the 50 µs - 10 ms range finely.
LATENCY_BUCKETS = (
    50e-6, 100e-6, 150e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 0.5, 2.5, 10.0,
)  # fmt: skip


class ServiceMetrics:
    """The service's metrics in their own registry (so several servers can share a process in tests).

    Labelled children are cached: the hot path pays a dict lookup, not prometheus-client's label resolution.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = prom.Counter(
            "tierwise_requests",
            "RPCs handled, by method and gRPC status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self._latency = prom.Histogram(
            "tierwise_request_latency_seconds",
            "Server-side handling time per RPC (per message for PredictStream).",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._tiers = prom.Counter(
            "tierwise_predicted_tier",
            "Routing decisions, by chosen tier.",
            ["tier"],
            registry=self.registry,
        )
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
        self._request_children: dict[tuple[str, str], Callable[[], None]] = {}
        self._latency_children: dict[str, Callable[[float], None]] = {}
        self._tier_children: dict[str, Callable[[], None]] = {}

    def record_call(self, method: str, code: str, seconds: float) -> None:
        """Count one finished call and its handling time."""
        inc = self._request_children.get((method, code))
        if inc is None:
            inc = self._request_children[(method, code)] = self._requests.labels(method, code).inc
        inc()
        observe = self._latency_children.get(method)
        if observe is None:
            observe = self._latency_children[method] = self._latency.labels(method).observe
        observe(seconds)

    def record_tier(self, tier: str) -> None:
        """Count one routing decision."""
        inc = self._tier_children.get(tier)
        if inc is None:
            inc = self._tier_children[tier] = self._tiers.labels(tier).inc
        inc()

    def record_model(self, version: str, encoder: str, source: str) -> None:
        """Publish which model is now serving."""
        self._model.info({"version": version, "encoder": encoder, "source": source})
        self._loaded_at.set(time.time())
        self._reloads.labels("loaded").inc()

    def record_refused_reload(self) -> None:
        self._reloads.labels("refused").inc()

    def serve_http(self, host: str, port: int) -> MetricsEndpoint:
        """Expose /metrics over HTTP on host:port (port 0 picks a free one)."""
        httpd, thread = prom.start_http_server(port, addr=host, registry=self.registry)
        return MetricsEndpoint(httpd, thread)


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
