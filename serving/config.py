"""What `tierwise serve` can be told, with every default in one place.

Kept free of grpc and protobuf imports, so the command line can read the defaults without loading the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from classifier.errors import InputError

ServerMode = Literal["sync", "aio"]
DEFAULT_THREADS = 4


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
    host: str = "0.0.0.0"
    port: int = 50051
    metrics_port: int | None = 9464
    server_mode: ServerMode | None = None  # None: default_server_mode(workers)
    threads: int = DEFAULT_THREADS
    reload_interval: float = 2.0
    max_prompt_bytes: int = 1 << 20
    max_batch: int = 1024
    grace: float = 10.0
    tls_cert: str | Path | None = None
    tls_key: str | Path | None = None
    auth_token_file: str | Path | None = None
    decision_log: str | Path | None = None
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
        return "asyncio" if self.mode == "aio" else f"{self.threads} threads"

    def grpc_options(self) -> list[tuple[str, int]]:
        """grpcio server options.

        Refuse to share a port silently with another server (grpc enables SO_REUSEPORT by default) unless
        this is one of a pool's workers, and let an over-size prompt reach the handler, which names the
        field, instead of failing in the transport.
        """
        receive_limit = max(8 << 20, 4 * self.max_prompt_bytes + (1 << 20))
        return [("grpc.so_reuseport", int(self.reuse_port)), ("grpc.max_receive_message_length", receive_limit)]
