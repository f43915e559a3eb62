"""`tierwise serve`: the gRPC server process, with health, reflection, hot reload, TLS, auth and metrics.

Lifecycle: listen (health NOT_SERVING) -> load and verify the model -> SERVING -> hot-reload on SIGHUP or
when the bundle changes (SIGHUP also reopens the decision and outcome logs, for log rotation) -> on SIGTERM/SIGINT stop
accepting, drain in-flight calls for up to --grace seconds, then stop running batches at their next chunk
and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import ssl
import threading
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tierwise.classifier.decider import BandDefaults
from tierwise.classifier.uris import masked_record
from tierwise.registry.sources import open_model_source
from tierwise.serving.auth import AsyncTokenInterceptor, TokenInterceptor, read_token
from tierwise.serving.config import ServeConfig, ServeError
from tierwise.serving.counted_health import AsyncCountedHealthServicer, CountedHealthServicer
from tierwise.serving.decision_log import DecisionLog
from tierwise.serving.jsonl_log import JsonlAppender
from tierwise.serving.metrics import MetricsEndpoint, ServiceMetrics
from tierwise.serving.outcomes import OutcomeLog
from tierwise.serving.reload import LoadedModel, ModelHolder, Reloader, ReloadResult
from tierwise.serving.service import (
    SERVICE_NAME,
    Feedback,
    Limits,
    RouterService,
    aio_handlers,
    rpc_for,
    sync_handlers,
)

log = logging.getLogger("tierwise.serving")
PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")
CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


class ServingApp:
    """Everything except the transport: model holder and reloader, metrics, decision and outcome logs, the service."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.metrics = ServiceMetrics(config.calibration_window)
        source = open_model_source(config.model, config.tracking_uri)
        self.holder = ModelHolder(
            source, on_swap=self._published, on_refuse=lambda reason: self.metrics.record_refused_reload()
        )
        self.decision_log = (
            DecisionLog(config.decision_log, self.metrics.dropped_rows_counter("decisions"), config.redact_prompts)
            if config.decision_log
            else None
        )
        self.outcome_log = None
        if config.outcome_log:
            self.outcome_log = OutcomeLog(config.outcome_log, self.metrics.dropped_rows_counter("outcomes"))
        limits = Limits(max_prompt_bytes=config.max_prompt_bytes, max_batch=config.max_batch)
        band_defaults = BandDefaults(config.max_latency_ms, config.value_of_time_usd_per_s)
        seed = config.explore_seed
        if seed is not None and config.worker is not None:
            seed += config.worker  # workers draw apart
        feedback = Feedback(config.explore_rate, seed, config.recent_decisions, self.outcome_log)
        self.service = RouterService(self.holder, self.metrics, limits, self.decision_log, feedback, band_defaults)
        self.reloader = Reloader(self.holder, config.reload_interval)
        self.endpoint: MetricsEndpoint | None = None
        self.token = read_token(config.auth_token_file) if config.auth_token_file else None

    def credentials(self) -> grpc.ServerCredentials | None:
        cert, key = self.config.tls_cert, self.config.tls_key
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise ServeError("TLS needs both --tls-cert and --tls-key")
        try:
            key_pem, cert_pem = Path(key).read_bytes(), Path(cert).read_bytes()
        except OSError as exc:
            raise ServeError(f"cannot read TLS files: {exc}") from exc
        check_tls_pair(Path(cert), cert_pem, Path(key), key_pem)
        return grpc.ssl_server_credentials([(key_pem, cert_pem)])

    def bind(self, server: grpc.Server | grpc.aio.Server) -> int:
        address = f"{self.config.host}:{self.config.port}"
        credentials = self.credentials()
        try:
            if credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            raise ServeError(f"cannot listen on {address}: {exc}") from exc
        if port == 0:
            raise ServeError(f"cannot listen on {address}")
        return port

    def load_model(self) -> None:
        """Load the first model; the server refuses to run without one."""
        if self.holder.refresh() is not ReloadResult.LOADED:
            raise ServeError(f"cannot serve: {self.holder.last_refusal}")
        if self.config.metrics_port is not None:
            host = self.config.metrics_host or self.config.host
            self.endpoint = self.metrics.serve_http(host, self.config.metrics_port)
        self.reloader.start()

    def announce(self, port: int, transport: str) -> None:
        loaded = self.holder.current
        assert loaded is not None
        metrics = f"metrics on :{self.endpoint.port}" if self.endpoint else "metrics off"
        print(
            f"tierwise serve: listening on {self.config.host}:{port} ({transport}, {self.config.transport_name}),"
            f" {metrics}, model {loaded.router.version} from {loaded.bundle.path}",
            flush=True,
        )

    @property
    def logs(self) -> list[JsonlAppender]:
        """The JSONL logs this server writes (decisions, outcomes), whichever are on."""
        return [appender for appender in (self.decision_log, self.outcome_log) if appender is not None]

    def on_sighup(self) -> None:
        """Reload the model and reopen the logs (after logrotate renamed them); safe from a signal handler."""
        self.reloader.request_reload()
        for appender in self.logs:
            appender.reopen()

    def close(self) -> None:
        self.reloader.stop()
        if self.endpoint is not None:
            self.endpoint.close()
        for appender in self.logs:
            appender.close()

    def denied(self, method: str) -> None:
        self.metrics.record_refused(rpc_for(method), "UNAUTHENTICATED")

    def _published(self, loaded: LoadedModel) -> None:
        encoder = loaded.router.manifest.encoder.kind
        self.metrics.record_model(loaded.router.version, encoder, self.holder.source.describe())


def check_tls_pair(cert: Path, cert_pem: bytes, key: Path, key_pem: bytes) -> None:
    """Refuse TLS files grpc could not use, naming the file and what is wrong with it (grpc itself only fails to
    bind the port): a key that is not a PEM private key (or is encrypted), a chain with no certificate, a key and
    chain that do not belong together."""
    if not PRIVATE_KEY.search(key_pem):
        found = "a certificate" if CERTIFICATE in key_pem else "no PEM private key block"
        raise ServeError(f"--tls-key {key}: not a private key (it holds {found}); give the certificate's key")
    if b"ENCRYPTED" in key_pem:
        raise ServeError(f"--tls-key {key}: an encrypted private key; the server needs it unencrypted")
    if CERTIFICATE not in cert_pem:
        raise ServeError(f"--tls-cert {cert}: not a certificate (no '-----BEGIN CERTIFICATE-----' block)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        raise ServeError(
            f"--tls-cert {cert} and --tls-key {key} cannot be used together ({exc.reason or exc})"
        ) from exc


def configure_logging(config: ServeConfig) -> None:
    """Timestamped server log lines on stderr, tagged with the worker number in a pool; a URI quoted in any line
    (an MLflow or HTTP library's own included) has its credentials masked."""
    if not logging.getLogger().handlers:
        name = "%(name)s" if config.worker is None else f"%(name)s[worker {config.worker}]"
        logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s {name}: %(message)s")
        for handler in logging.getLogger().handlers:
            handler.addFilter(masked_record)


def warn_if_exposed(config: ServeConfig) -> None:
    """Say once, on the log, when the server is reachable beyond this machine without TLS or a token."""
    warning = config.exposure_warning()
    if warning is not None:
        log.warning(warning)


def serve(config: ServeConfig) -> None:
    """Run one server process until SIGTERM or SIGINT, then drain and return (the process exits 0)."""
    configure_logging(config)
    if config.worker is None:  # a pool's supervisor warns for its workers
        warn_if_exposed(config)
    app = ServingApp(config)
    try:
        if config.mode == "aio":
            asyncio.run(_serve_aio(app))
        else:
            _serve_sync(app)
    finally:
        app.close()


_SERVICES = (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)


def _serve_sync(app: ServingApp) -> None:
    config = app.config
    interceptors = [TokenInterceptor(app.token, app.denied)] if app.token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="tierwise-rpc"),
        options=config.grpc_options(),
        interceptors=interceptors,
    )
    handlers = sync_handlers(app.service, app.metrics, config.max_streams)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)])
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
    health_servicer = CountedHealthServicer(
        app.metrics,
        experimental_non_blocking=True,
        experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=1),
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(_SERVICES, server)
    port = app.bind(server)
    _set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: app.on_sighup())
    server.start()
    try:
        app.load_model()
    except BaseException:
        server.stop(None)
        raise
    _set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)
    app.announce(port, "TLS" if config.tls_cert else "plaintext")
    while not stop.wait(0.5):
        pass
    health_servicer.enter_graceful_shutdown()
    drained = server.stop(config.grace)  # refuses new calls from here on
    log.info("shutting down: draining in-flight calls (up to %gs)", config.grace)
    drained.wait(config.grace)
    app.service.abandon_calls()  # a handler still running now outlives its call: stop it at its next chunk
    drained.wait()
    log.info("stopped")


async def _serve_aio(app: ServingApp) -> None:
    config = app.config
    interceptors = [AsyncTokenInterceptor(app.token, app.denied)] if app.token else []
    server = grpc.aio.server(options=config.grpc_options(), interceptors=interceptors)
    handlers = aio_handlers(app.service, app.metrics)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)])
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
    health_servicer = AsyncCountedHealthServicer(app.metrics)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(_SERVICES, server)
    port = app.bind(server)
    await _set_health_async(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, app.on_sighup)
    await server.start()
    try:
        await asyncio.to_thread(app.load_model)
    except BaseException:
        await server.stop(None)
        raise
    await _set_health_async(health_servicer, health_pb2.HealthCheckResponse.SERVING)
    app.announce(port, "TLS" if config.tls_cert else "plaintext")
    await stop.wait()
    await health_servicer.enter_graceful_shutdown()
    drained = asyncio.create_task(server.stop(config.grace))
    await asyncio.sleep(0)  # the stop task runs up to its first wait: new calls are refused from here on
    log.info("shutting down: draining in-flight calls (up to %gs)", config.grace)
    await asyncio.wait({drained}, timeout=config.grace)
    app.service.abandon_calls()  # a batch still running on a worker thread now outlives its call
    await drained
    log.info("stopped")


def _set_health(servicer: health.HealthServicer, status: int) -> None:
    for name in ("", SERVICE_NAME):
        servicer.set(name, status)


async def _set_health_async(servicer: health.aio.HealthServicer, status: int) -> None:
    for name in ("", SERVICE_NAME):
        await servicer.set(name, status)
