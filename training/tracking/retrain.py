"""Retraining from new logs with a gate: a challenger replaces the champion only when it is really better.

Both are evaluated on the same held-out rows of the new logs, at their own default thresholds (what each
would serve), and compared request by request with paired bootstrap intervals (`promotion.gate`). A challenger
that is unfit to be champion (`promotion.fitness_problems`: provably below the static mix, or missing its own
quality target) is never promoted. The decision is printed, written in the version's description, and the
like-for-like numbers are logged as an MLflow comparison run.

When the held-out rows are collected traffic (`tierwise collect`), both are judged by inverse-propensity
weighting of what the traffic revealed (`tierwise.training.evaluation.traffic`), so the champion that served the
traffic gains nothing from having chosen which outcomes were seen.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierError, TierLadder
from tierwise.training.evaluation.evaluate import evaluate_router
from tierwise.training.evaluation.report import EvalReport
from tierwise.training.evaluation.summary import flat_headline
from tierwise.training.evaluation.table import format_metric, with_interval
from tierwise.training.evaluation.traffic import TrafficEvaluation, evaluate_on_traffic, traffic_rows
from tierwise.training.logs import AttemptLog, LogError
from tierwise.training.tracking.promotion import PairedDifference, gate, gate_rule
from tierwise.training.tracking.registry import CHAMPION, ModelRef, Registry
from tierwise.training.tracking.run_logging import describe_version, log_comparison_run, log_training_run
from tierwise.training.train import TrainOptions, train_bundle


@dataclass(frozen=True)
class Standing:
    """One version's evaluation on the shared held-out rows."""

    version: str
    evaluation: EvalReport | TrafficEvaluation

    def row(self, role: str) -> str:
        point = self.evaluation.operating_point.point
        metrics = self.evaluation.router.metrics
        return (
            f"{role:<12}{self.version:>8}{point.quality:>10.4f}{point.cost:>14.6f}"
            f"{format_metric(self.evaluation.cost_ratio(point.cost)):>12}{format_metric(metrics['apgr']):>8}"
            f"{format_metric(metrics['gain_over_static'], signed=True):>8}"
        )


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
            cost = d.relative_cost_ci
            lines.append(
                f"challenger - champion on {d.requests} requests: quality "
                f"{with_interval(d.quality, d.quality_ci, signed=True)}, cost {d.relative_cost:+.1%} "
                f"[{cost.lo:+.1%}, {cost.hi:+.1%}]"
            )
        lines.append(f"decision: v{self.challenger.version} {self.verdict}: {self.reason}")
        return "\n".join(lines)

    @property
    def verdict(self) -> str:
        return "PROMOTED to champion" if self.promoted else "kept as challenger"

    def description(self) -> str:
        """The decision as the version's description in the registry."""
        against = f" against v{self.champion.version}" if self.champion else ""
        return f"Retrain: {self.verdict}{against}: {self.reason}."

    def comparison_metrics(self) -> dict[str, float]:
        """The like-for-like numbers: each role's headline metrics, the paired difference, and the verdict."""
        metrics = {"promoted": float(self.promoted)}
        for role, standing in (("challenger", self.challenger), ("champion", self.champion)):
            if standing is not None:
                point = standing.evaluation.operating_point.point
                headline = flat_headline(standing.evaluation) | {"quality": point.quality, "cost_usd": point.cost}
                metrics |= {f"{role}/{key}": value for key, value in headline.items()}
        if self.difference is not None:
            d = self.difference
            for key, value, interval in (
                ("quality", d.quality, d.quality_ci),
                ("relative_cost", d.relative_cost, d.relative_cost_ci),
            ):
                metrics[f"difference/{key}"] = value
                metrics |= {f"difference/{key}_ci_{end}": v for end, v in (("lo", interval.lo), ("hi", interval.hi))}
        return {key: value for key, value in metrics.items() if value is not None}


def retrain(
    name: str,
    log: AttemptLog,
    registry: Registry,
    ladder: TierLadder,
    options: TrainOptions,
    *,
    window_days: float | None = None,
    out: Path | None = None,
    experiment: str = "tierwise",
) -> RetrainDecision:
    """Train a challenger on the log, register it, and promote it only if it is fit and beats the champion.

    Each router is evaluated once on the held-out rows: the challenger by training, the champion here.
    """
    if window_days:
        log = log.last_days(window_days)
    with tempfile.TemporaryDirectory() as tmp:
        result = train_bundle(log, out or Path(tmp) / "challenger", ladder, options)
        if result.evaluation is None and result.traffic_evaluation is None:
            raise LogError("no held-out request has an outcome on every tier, so no challenger can be judged")
        tags = {"tierwise.retrain_of": name, "tierwise.source_logs": ",".join(str(p) for p in log.files)}
        if window_days:
            tags["tierwise.window_days"] = f"{window_days:g}"
        tracked = log_training_run(result, registry, register=name, experiment=experiment, tags=tags)
    challenger = Standing(str(tracked.version), result.traffic_evaluation or result.evaluation)
    refused = "; ".join(tracked.refused)
    if tracked.alias == CHAMPION:
        decision = RetrainDecision(challenger, None, None, True, "the registry had no champion yet", log.selection)
    elif registry.alias_version(name, CHAMPION) is None:
        decision = RetrainDecision(challenger, None, None, False, refused, log.selection)
    else:
        champion = _champion_standing(name, registry, result.labels.ladder, options, result.labels.frame)
        if isinstance(challenger.evaluation, TrafficEvaluation) and isinstance(champion.evaluation, TrafficEvaluation):
            difference = PairedDifference.on_traffic(challenger.evaluation, champion.evaluation)
        else:
            difference = PairedDifference.of(challenger.evaluation, champion.evaluation)
        promoted, reason = (False, refused) if refused else gate(difference)
        if promoted:
            registry.promote(name, challenger.version)
        decision = RetrainDecision(challenger, champion, difference, promoted, reason, log.selection)
    record_decision(registry, name, decision, experiment)
    return decision


def _champion_standing(
    name: str, registry: Registry, ladder: TierLadder, options: TrainOptions, frame: pl.DataFrame
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
        return Standing(str(found.version), evaluate_on_traffic(router, traffic))
    return Standing(str(found.version), evaluate_router(router, frame, split="test", split_rule=options.split_rule))


def record_decision(registry: Registry, name: str, decision: RetrainDecision, experiment: str) -> None:
    """The decision in the challenger's description, and the like-for-like numbers as a comparison run."""
    describe_version(registry, name, decision.challenger.version, decision.description())
    versions = f"v{decision.challenger.version}"
    if decision.champion is not None:
        versions += f" vs v{decision.champion.version}"
    log_comparison_run(
        registry,
        experiment,
        f"retrain {name} · {versions} · {decision.challenger.evaluation.evaluated} req",
        decision.comparison_metrics(),
        {"tierwise.comparison_of": name, "tierwise.decision": decision.description()[:500]},
    )
