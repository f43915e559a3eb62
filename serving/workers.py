"""`tierwise serve --workers N`: N server processes sharing one port, supervised by this one.

A Python process runs its handlers under one GIL, so one server process uses about one core however
many threads it has. gRPC's answer (grpcio's multiprocessing example) is several processes listening on
the same port with SO_REUSEPORT: the kernel spreads connections across them. Each worker is a complete
`tierwise serve` (health, reflection, hot reload, metrics, decision log) with its own copy of the model.

The supervisor forwards SIGHUP (reload) and SIGTERM (drain, then exit 0), restarts a worker that dies,
and serves /metrics by merging the workers' metrics, each sample labelled with its `worker`. Workers
reload independently (on SIGHUP at once; on a content change within --reload-interval), so during a
reload two versions may answer side by side: every response names its `model_version`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time

from prometheus_client.registry import CollectorRegistry
from tierwise.classifier.errors import InputError
from tierwise.classifier.workloads import Workloads
from tierwise.serving.config import ServeConfig, ServeError
from tierwise.serving.metrics import MetricsEndpoint, WorkerMetrics, serve_registry
from tierwise.serving.process import ServerProcess
from tierwise.serving.server import configure_logging, serve, warn_if_exposed

log = logging.getLogger("tierwise.serving")

# A worker ignores SIGHUP until its server installs the reload handler: a reload asked for while it is still
# starting must not kill it (it loads the newest bundle anyway).
WORKER_PROGRAM = (
    sys.executable,
    "-c",
    "import signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
    "from tierwise.serving.workers import main; main(sys.argv[1:])",
)
# A worker stopped by SIGTERM before its handler was installed, or while Python was finalising, had nothing
# left in flight: that counts as a clean exit.
CLEAN_EXITS = (0, -signal.SIGTERM)
START_TIMEOUT_S = 120.0
RESTART_BACKOFF_S = 5.0
_MODEL = re.compile(r"model \S+ from .*$")


def reserve_port(host: str, port: int) -> int:
    """The port the workers will share: `port` checked to be free, or a free one when it is 0.

    The check binds without SO_REUSEPORT, so it fails if anything listens there, sharing or not.
    """
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, port))
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        return probe.getsockname()[1]


class WorkerPool:
    """The worker processes of one `tierwise serve --workers N`, started, watched and stopped together."""

    def __init__(self, config: ServeConfig, port: int):
        self.config = config
        self.port = port
        self.workers: list[ServerProcess | None] = [None] * config.workers
        self._last_start = [0.0] * config.workers
        self._lock = threading.Lock()

    def _worker_config(self, index: int) -> ServeConfig:
        return dataclasses.replace(
            self.config,
            port=self.port,
            workers=1,
            server_mode=self.config.mode,
            reuse_port=True,
            worker=index,
            metrics_host="127.0.0.1",
            metrics_port=None if self.config.metrics_port is None else 0,
        )

    def _start(self, index: int) -> ServerProcess:
        self._last_start[index] = time.monotonic()
        payload = json.dumps(dataclasses.asdict(self._worker_config(index)), default=str)
        worker = ServerProcess([payload], START_TIMEOUT_S, program=WORKER_PROGRAM, capture_log=False)
        log.info("worker %d started (pid %d)", index, worker.proc.pid)
        return worker

    def start(self) -> None:
        """Start every worker; if one cannot start, stop the others and raise ServeError."""
        for index in range(len(self.workers)):
            try:
                worker = self._start(index)
            except RuntimeError as exc:
                self.stop()
                raise ServeError(f"worker {index} did not start; its log is above") from exc
            with self._lock:
                self.workers[index] = worker

    def restart_dead(self) -> None:
        """Replace workers that exited on their own, at most one attempt per worker every few seconds."""
        for index, worker in enumerate(self.workers):
            if worker is not None and worker.proc.poll() is None:
                continue
            if time.monotonic() - self._last_start[index] < RESTART_BACKOFF_S:
                continue
            if worker is not None:
                log.warning(
                    "worker %d (pid %d) exited with %s; restarting it", index, worker.proc.pid, worker.proc.returncode
                )
            try:
                replacement = self._start(index)
            except RuntimeError as exc:
                log.error("worker %d could not be restarted: %s", index, exc)
                replacement = None
            with self._lock:
                self.workers[index] = replacement

    def signal_all(self, sig: signal.Signals) -> None:
        """Send a signal to every running worker (SIGHUP: reload; SIGTERM: drain and exit)."""
        for worker in self.workers:
            if worker is not None and worker.proc.poll() is None:
                worker.send(sig)

    def metrics_ports(self) -> dict[int, int]:
        """Each live worker's internal /metrics port, by worker index."""
        with self._lock:
            return {
                index: worker.metrics_port
                for index, worker in enumerate(self.workers)
                if worker is not None and worker.metrics_port is not None and worker.proc.poll() is None
            }

    def stop(self) -> int:
        """SIGTERM every worker, wait for their drains, and return 0 only if all of them exited cleanly."""
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.config.grace + 10
        worst = 0
        for index, worker in enumerate(self.workers):
            if worker is None:
                continue
            code = worker.wait(max(0.0, deadline - time.monotonic()))
            if code not in CLEAN_EXITS:
                log.error("worker %d (pid %d) exited with %s while draining", index, worker.proc.pid, code)
                worst = max(worst, abs(code))
        return worst

    def model_line(self) -> str:
        first = self.workers[0]
        found = _MODEL.search(first.ready_line) if first is not None else None
        return found.group(0) if found else ""


def serve_workers(config: ServeConfig) -> None:
    """Run `config.workers` server processes on one port until SIGTERM or SIGINT, then drain them all."""
    configure_logging(config)
    warn_if_exposed(config)
    if config.workloads:
        Workloads.load(config.workloads)  # a bad file stops the pool before any worker starts, naming what is wrong
    port = reserve_port(config.host, config.port)
    pool = WorkerPool(config, port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: pool.signal_all(signal.SIGHUP))
    pool.start()
    endpoint: MetricsEndpoint | None = None
    try:
        if config.metrics_port is not None:
            registry = CollectorRegistry()
            registry.register(WorkerMetrics(pool.metrics_ports))
            endpoint = serve_registry(registry, config.metrics_host or config.host, config.metrics_port)
        metrics = f"metrics on :{endpoint.port}" if endpoint else "metrics off"
        transport = "TLS" if config.tls_cert else "plaintext"
        print(
            f"tierwise serve: listening on {config.host}:{port} ({transport}, {config.transport_name}"
            f" x {config.workers} workers), {metrics}, {pool.model_line()}",
            flush=True,
        )
        while not stop.wait(0.5):
            pool.restart_dead()
    finally:
        log.info("shutting down: draining the %d workers", config.workers)
        code = pool.stop()
        if endpoint is not None:
            endpoint.close()
    if code:
        raise ServeError(f"a worker exited with status {code} while draining")


def _exit_with_parent(parent: int) -> None:
    """A worker whose supervisor is gone (even SIGKILLed) drains and exits instead of holding the port."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> None:
    """A worker process: run one server from the pool's JSON config until SIGTERM or the supervisor is gone."""
    config = ServeConfig(**json.loads(argv[0]))
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        serve(config)
    except InputError as exc:  # what was wrong, as `tierwise serve` says it
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
