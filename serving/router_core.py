"""The router as one process runs it, whatever carries the calls: built from a `ServeConfig` in one place.

`RouterCore` holds the served model and its verify-then-swap reload (`ModelHolder`, `Reloader`, following
`models:/NAME@ALIAS` as `open_model_source` resolves it), the `Decider` with its hooks (the tier counted in the
metrics, the decision remembered for outcomes, the decision log), the `OutcomeDesk` (checked, idempotent,
calibrated, logged outcomes), the metrics and their /metrics endpoint. `tierwise serve` puts gRPC in front of it
(`service.py`, `server.py`); `tierwise proxy --model` asks it in-process (`local_link.py`). Both build it here,
so the two decide, remember, log and count alike.
"""

from __future__ import annotations

import logging

from tierwise.classifier.decider import BandDefaults, Decider, Decision, Hook
from tierwise.classifier.workloads import WorkloadError, Workloads
from tierwise.registry.sources import open_model_source
from tierwise.serving.config import ServeConfig, ServeError
from tierwise.serving.decision_log import DecisionLog
from tierwise.serving.jsonl_log import JsonlAppender
from tierwise.serving.metrics import MetricsEndpoint, ServiceMetrics
from tierwise.serving.outcomes import OutcomeDesk, OutcomeLog
from tierwise.serving.recent import RecentDecisions
from tierwise.serving.reload import LoadedModel, ModelHolder, Reloader, ReloadResult, WorkloadsFile

log = logging.getLogger("tierwise.serving")


class RouterCore:
    """Model holder and reloader, decider, outcome desk, metrics, decision and outcome logs: no transport."""

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
        self.recent = RecentDecisions(config.recent_decisions)
        hooks: list[Hook] = [self._count, self._remember]
        if self.decision_log is not None:
            hooks.append(self.decision_log.add)
        seed = config.explore_seed
        if seed is not None and config.worker is not None:
            seed += config.worker  # workers draw apart
        band_defaults = BandDefaults(config.max_latency_ms, config.value_of_time_usd_per_s)
        self.decider = Decider(band_defaults, config.explore_rate, seed, hooks)
        self.outcomes = OutcomeDesk(self.holder, self.recent, self.metrics.outcomes, self.outcome_log)
        self.workloads = None
        if config.workloads:
            self.workloads = WorkloadsFile(
                config.workloads, self._route_by, self._served_tiers, self.metrics.record_workloads_reload
            )
        self.reloader = Reloader([self.holder, *filter(None, [self.workloads])], config.reload_interval)
        self.endpoint: MetricsEndpoint | None = None

    def start(self) -> None:
        """Load the first model (nothing is served without one), expose the metrics, start following the source."""
        if self.holder.refresh() is not ReloadResult.LOADED:
            raise ServeError(f"cannot serve: {self.holder.last_refusal}")
        if self.workloads is not None:
            self.workloads.load()
        if self.config.metrics_port is not None:
            host = self.config.metrics_host or self.config.host
            self.endpoint = self.metrics.serve_http(host, self.config.metrics_port)
        self.reloader.start()

    @property
    def logs(self) -> list[JsonlAppender]:
        """The JSONL logs this router writes (decisions, outcomes), whichever are on."""
        return [appender for appender in (self.decision_log, self.outcome_log) if appender is not None]

    def on_sighup(self) -> None:
        """Reload the model and reopen the logs (after logrotate renamed them); safe from a signal handler."""
        self.reloader.request_reload()
        for appender in self.logs:
            appender.reopen()

    def close(self) -> None:
        """Stop following the source and serving metrics; write what the logs still hold."""
        self.reloader.stop()
        if self.endpoint is not None:
            self.endpoint.close()
        for appender in self.logs:
            appender.close()

    def _published(self, loaded: LoadedModel) -> None:
        encoder = loaded.router.manifest.encoder.kind
        self.metrics.record_model(loaded.router.version, encoder, self.holder.source.describe())
        try:
            self.decider.workloads.check_tiers(loaded.router.ladder.names)
        except WorkloadError as exc:
            log.error("%s: requests of those workloads are refused until the file or the model changes", exc)

    def _route_by(self, workloads: Workloads) -> None:
        """Route by a new workloads policy (one assignment: calls already running keep the one they started with)."""
        self.decider.workloads = workloads

    def _served_tiers(self) -> list[str] | None:
        loaded = self.holder.current
        return None if loaded is None else loaded.router.ladder.names

    def _count(self, decision: Decision) -> None:
        workload = self.decider.workloads.label(decision.options.workload)
        self.metrics.record_tier(decision.prediction.tier, decision.model_version, decision.explored, workload)

    def _remember(self, decision: Decision) -> None:
        self.recent.remember(decision.request_id, decision.prediction.probabilities)
