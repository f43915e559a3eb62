"""Retraining from new logs with a gate: a challenger replaces the champion only when it is really better.

Both are evaluated on the same held-out rows of the new logs, at their own default thresholds (what each
would serve), and compared request by request with paired bootstrap intervals (`promotion.gate`). A challenger
that is unfit to be champion (`promotion.fitness_problems`: provably below the static mix, or missing its own
quality target) is never promoted. The challenger's training is a training run; the comparison is a run of the
comparisons experiment (`run_logging`), opened when the champion's scoring starts, holding both versions'
numbers (`v<N>/...`), their paired difference (`v<N>-v<M>/...`), the gate's margins, the evaluation data, the
comparison plot, and the decision as its description. `promotion.judge` decides and describes the version.

When the held-out rows are collected traffic (`tierwise collect`), both are judged by inverse-propensity
weighting of what the traffic revealed (`tierwise.training.evaluation.traffic_eval`), so the champion that served the
traffic gains nothing from having chosen which outcomes were seen.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from tierwise.classifier.bundle import Manifest
from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierError, TierLadder
from tierwise.registry.models import CHAMPION, ModelRef, Registry
from tierwise.registry.store import DEFAULT_EXPERIMENT
from tierwise.training.data.logs import AttemptLog, LogError
from tierwise.training.evaluation.evaluate import evaluate_router
from tierwise.training.evaluation.report import EvalReport
from tierwise.training.evaluation.summary import flat_headline
from tierwise.training.evaluation.table import format_metric
from tierwise.training.evaluation.traffic_eval import TrafficEvaluation, evaluate_on_traffic, traffic_rows
from tierwise.training.fit.train import TrainOptions, train_bundle
from tierwise.training.tracking.headline import Facts, headline_table, run_metrics
from tierwise.training.tracking.promotion import (
    PairedDifference,
    cost_text,
    gate_params,
    gate_rule,
    judge,
    place,
    quality_text,
)
from tierwise.training.tracking.run_logging import comparison_run, evaluated_params, training_run


@dataclass(frozen=True)
class Standing:
    """One version's evaluation on the shared held-out rows, and how it routes."""

    version: str
    evaluation: EvalReport | TrafficEvaluation
    params: dict[str, str]

    @classmethod
    def of(cls, version: str, evaluation: EvalReport | TrafficEvaluation, manifest: Manifest, log: AttemptLog):
        """A version scored on held-out rows of `log`, with its rule, threshold, guarantee and encoder."""
        params = evaluated_params(manifest, f"{evaluation.evaluated} held-out requests", log.files)
        return cls(version, evaluation, params)

    def row(self, role: str) -> str:
        point = self.evaluation.operating_point.point
        metrics = self.evaluation.router.metrics
        return (
            f"{role:<12}{self.version:>8}{point.quality:>10.4f}{point.cost:>14.6f}"
            f"{format_metric(self.evaluation.cost_ratio(point.cost)):>12}{format_metric(metrics['apgr']):>8}"
            f"{format_metric(metrics['gain_over_static'], signed=True):>8}"
        )

    def metrics(self) -> dict[str, float]:
        """The headline and the operating point, as a comparison run records them under `v<N>/`."""
        point = self.evaluation.operating_point.point
        ratio = self.evaluation.cost_ratio(point.cost)
        flat = flat_headline(self.evaluation)
        numbers = flat | {"quality": point.quality, "cost_usd": point.cost}
        return run_metrics(numbers | ({"cost_ratio": ratio} if ratio is not None else {}), flat)

    def facts(self) -> Facts:
        return Facts(self.metrics(), self.params)


@dataclass(frozen=True)
class RetrainDecision:
    """The gate's verdict, with both rows of numbers and their paired difference behind it."""

    challenger: Standing
    champion: Standing | None
    difference: PairedDifference | None
    promoted: bool
    reason: str
    note: str = ""

    def render(self) -> str:
        """The decision and both rows, as printed by `tierwise retrain`."""
        lines = [f"window: {self.note}"] if self.note else []
        lines += [
            f"gate: {gate_rule()}",
            f"{'':<12}{'version':>8}{'quality':>10}{'cost/req USD':>14}{'cost x top':>12}{'APGR':>8}{'gain':>8}",
            self.challenger.row("challenger"),
        ]
        if self.champion is not None:
            lines.append(self.champion.row("champion"))
        if self.difference is not None:
            d = self.difference
            lines.append(
                f"challenger - champion on {d.requests} requests: quality {quality_text(d)}, cost {cost_text(d)}"
            )
        lines.append(f"decision: {self.headline()}")
        return "\n".join(lines)

    @property
    def verdict(self) -> str:
        return "PROMOTED to champion" if self.promoted else "kept as challenger"

    def headline(self) -> str:
        """`v4 kept as challenger: <the rule that failed, with its numbers>`."""
        return f"v{self.challenger.version} {self.verdict}: {self.reason}"

    def run_name(self, name: str) -> str:
        versions = f"v{self.challenger.version}"
        if self.champion is not None:
            versions += f" vs v{self.champion.version}"
        return f"retrain {name} · {versions} · {self.challenger.evaluation.evaluated} req"

    def standings(self) -> dict[str, Standing]:
        """Label -> standing, challenger first."""
        found = {f"v{self.challenger.version} (challenger)": self.challenger}
        if self.champion is not None:
            found[f"v{self.champion.version} (champion)"] = self.champion
        return found

    def comparison_metrics(self) -> dict[str, float]:
        """Each version's numbers under `v<N>/`, the paired difference under `v<N>-v<M>/` (quality in points,
        cost in percent of the champion's, each with its interval ends), and the verdict."""
        metrics = {"promoted": float(self.promoted)}
        for standing in self.standings().values():
            metrics |= {f"v{standing.version}/{key}": value for key, value in standing.metrics().items()}
        if self.difference is not None and self.champion is not None:
            d, prefix = self.difference, f"v{self.challenger.version}-v{self.champion.version}"
            for key, value, interval in (
                ("quality_pp", d.quality, d.quality_ci),
                ("cost_pct", d.relative_cost, d.relative_cost_ci),
            ):
                ends = {"": value, "_lo": interval.lo, "_hi": interval.hi}
                metrics |= {f"{prefix}/{key}{end}": round(100 * v, 2) for end, v in ends.items() if v is not None}
        return metrics

    def comparison_params(self) -> dict[str, Any]:
        """What was compared and by which margins."""
        params: dict[str, Any] = {"challenger_version": self.challenger.version, "decision": self.verdict}
        if self.champion is not None:
            params["champion_version"] = self.champion.version
        params |= gate_params() | {"gate": gate_rule(), "evaluated_requests": self.challenger.evaluation.evaluated}
        return params | ({"window": self.note} if self.note else {})

    def description(self) -> str:
        """The comparison run's description: the decision and its numbers, then both versions side by side."""
        lines = [f"**{self.headline()}**", ""]
        if self.difference is not None:
            d = self.difference
            lines += [
                f"challenger - champion on the same {d.requests} requests: quality {quality_text(d)}, "
                f"cost {cost_text(d)}; gate: {gate_rule()}.",
                "",
            ]
        columns = {label: standing.facts() for label, standing in self.standings().items()}
        return "\n".join(lines) + "\n" + headline_table(columns)

    def plots(self, whose: str) -> dict[str, Any]:
        """The cost-quality curves of both versions on the same rows (none on collected traffic)."""
        from tierwise.training.evaluation.plot import plot_versions

        reports = {k: s.evaluation for k, s in self.standings().items() if isinstance(s.evaluation, EvalReport)}
        if not reports:
            return {}
        return {"cost_quality.png": lambda path: plot_versions(reports, path, whose=whose)}


def retrain(
    name: str,
    log: AttemptLog,
    registry: Registry,
    ladder: TierLadder,
    options: TrainOptions,
    *,
    window_days: float | None = None,
    out: Path | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
) -> RetrainDecision:
    """Train a challenger on the log, register it, and promote it only if it is fit and beats the champion.

    Each router is evaluated once on the held-out rows: the challenger by training, the champion here.
    """
    if window_days:
        log = log.last_days(window_days)
    tags = {"tierwise.retrain_of": name, "tierwise.source_logs": ",".join(str(p) for p in log.files)}
    if window_days:
        tags["tierwise.window_days"] = f"{window_days:g}"
    with tempfile.TemporaryDirectory() as tmp, training_run(registry, log, options.encoder, experiment, tags) as run:
        result = train_bundle(log, out or Path(tmp) / "challenger", ladder, options)
        if result.evaluation is None and result.traffic_evaluation is None:
            raise LogError("no held-out request has an outcome on every tier, so no challenger can be judged")
        tracked = run.record(result, register=name)
    placement = place(registry, name, str(tracked.version), result)
    evaluation = result.traffic_evaluation or result.evaluation
    challenger = Standing.of(placement.version, evaluation, result.manifest, log)
    about = {"tierwise.comparison_of": name}
    with comparison_run(registry, experiment, f"retrain {name} · v{challenger.version}", about) as comparing:
        if placement.alias == CHAMPION:
            decision = RetrainDecision(challenger, None, None, True, "the registry had no champion yet", log.selection)
        elif registry.alias_version(name, CHAMPION) is None:
            decision = RetrainDecision(challenger, None, None, False, "; ".join(placement.refused), log.selection)
        else:
            with comparing.stage("score_champion"):
                champion = _champion_standing(name, registry, result.labels.ladder, options, result.labels.frame, log)
            if isinstance(evaluation, TrafficEvaluation) and isinstance(champion.evaluation, TrafficEvaluation):
                difference = PairedDifference.on_traffic(evaluation, champion.evaluation)
            else:
                difference = PairedDifference.of(evaluation, champion.evaluation)
            promoted, reason = judge(
                registry, name, challenger.version, champion.version, difference, placement.refused
            )
            decision = RetrainDecision(challenger, champion, difference, promoted, reason, log.selection)
        title = comparing.title(decision.run_name(name))
        comparing.record(
            decision.run_name(name),
            decision.comparison_metrics(),
            decision.comparison_params(),
            decision.description(),
            log,
            result.manifest.data["files"],
            decision.plots(title),
        )
    return decision


def _champion_standing(
    name: str, registry: Registry, ladder: TierLadder, options: TrainOptions, frame: pl.DataFrame, log: AttemptLog
) -> Standing:
    """The champion scored once, on the challenger's held-out rows."""
    found = registry.version(ModelRef(name, alias=CHAMPION))
    router = Router.load(registry.bundle_dir(found))
    if router.ladder.names != ladder.names:
        raise TierError(
            f"champion v{found.version} routes between {router.ladder.names}, the challenger between "
            f"{ladder.names}: they cannot be compared on the same rows"
        )
    traffic = traffic_rows(frame, "test", options.split_rule)
    if traffic is not None:  # the same held-out traffic the challenger was scored on
        evaluation: EvalReport | TrafficEvaluation = evaluate_on_traffic(router, traffic)
    else:
        evaluation = evaluate_router(router, frame, split="test", split_rule=options.split_rule)
    return Standing.of(str(found.version), evaluation, router.manifest, log)
