"""What `tierwise serve` can be told, with every default in one place.

Kept free of grpc and protobuf imports, so the command line can read the defaults without loading the server.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tierwise.classifier.errors import InputError

ServerMode = Literal["sync", "aio"]
DEFAULT_THREADS = 4
# The transport refuses bigger messages before any handler sees them (RESOURCE_EXHAUSTED); below it, an
# over-size prompt reaches validation, which answers INVALID_ARGUMENT naming the field.
MIN_RECEIVE_LIMIT = 64 << 20


class ServeError(InputError):
    """The server cannot start as asked (bad model, unreadable TLS or token file, port taken)."""


def default_server_mode(workers: int) -> ServerMode:
    """The grpcio server kind that answered the most calls in benchmarks/grpc_load.py (docs/benchmarks.md).

    One process: the asyncio server, which hands no call between threads. Several workers: the thread pool.
    """
    return "aio" if workers == 1 else "sync"


@dataclass(frozen=True)
class ServeConfig:
    """Everything `tierwise serve` can be told; the command line's defaults are these."""

    model: str
    tracking_uri: str | None = None  # the MLflow store for models:/ URIs (None: $MLFLOW_TRACKING_URI, ./mlflow.db)
    host: str = "127.0.0.1"  # loopback only unless asked: see exposure_warning
    port: int = 50051
    metrics_port: int | None = 9464
    server_mode: ServerMode | None = None  # None: default_server_mode(workers)
    threads: int = DEFAULT_THREADS
    max_streams: int = 8  # sync server: open PredictStreams, each on a thread of its own beyond `threads`
    reload_interval: float = 2.0
    max_prompt_bytes: int = 1 << 20
    max_batch: int = 1024
    grace: float = 10.0
    tls_cert: str | Path | None = None
    tls_key: str | Path | None = None
    auth_token_file: str | Path | None = None
    decision_log: str | Path | None = None
    redact_prompts: bool = False  # the decision log keeps only each prompt's hash
    outcome_log: str | Path | None = None
    explore_rate: float = 0.0
    explore_seed: int | None = None  # fixed exploration draws, for reproducible experiments (None: fresh entropy)
    recent_decisions: int = 100_000  # routed request_ids remembered, to flag outcomes of unknown ones
    calibration_window: int = 1000  # graded outcomes per tier behind the live calibration figures
    # For requests that set none, on models with a time model: INTERACTIVE's budget, TOLERANT's value of time.
    max_latency_ms: float | None = None
    value_of_time_usd_per_s: float | None = None
    # The policy per workload (classifier/workloads.py): what a request leaves unset, over the options above.
    workloads: str | Path | None = None
    workers: int = 1
    # Set by the worker pool for its children: share the port, expose metrics to the pool only, tag logs.
    reuse_port: bool = False
    metrics_host: str | None = None
    worker: int | None = None

    @property
    def mode(self) -> ServerMode:
        return self.server_mode or default_server_mode(self.workers)

    @property
    def transport_name(self) -> str:
        """How the server runs its handlers, for the ready line."""
        return "asyncio" if self.mode == "aio" else f"{self.threads} threads + {self.max_streams} stream threads"

    @property
    def receive_limit(self) -> int:
        """The largest message the transport accepts: room for a batch of prompts over the prompt limit."""
        return max(MIN_RECEIVE_LIMIT, 4 * self.max_prompt_bytes + (1 << 20))

    def exposure_warning(self) -> str | None:
        """One line saying what is exposed when the server listens beyond loopback without TLS or a token."""
        if is_loopback(self.host) or (self.tls_cert and self.auth_token_file):
            return None
        if self.auth_token_file:
            risk = "without TLS: the token and every prompt cross the network in plaintext"
        elif self.tls_cert:
            risk = "without a token: anyone who can reach the port can call the router"
        else:
            risk = "with neither TLS nor a token: anyone who can reach the port can call the router"
        return f"--host {self.host} reaches beyond loopback {risk}; see the README's Security section"

    def grpc_options(self) -> list[tuple[str, int]]:
        """grpcio server options.

        Refuse to share a port silently with another server (grpc enables SO_REUSEPORT by default) unless
        this is one of a pool's workers, and let an over-size prompt reach the handler, which names the
        field, instead of failing in the transport.
        """
        return [("grpc.so_reuseport", int(self.reuse_port)), ("grpc.max_receive_message_length", self.receive_limit)]


def is_loopback(host: str) -> bool:
    """Whether an address to listen on is reachable from this machine only (`localhost`, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface
