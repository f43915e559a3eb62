"""Retraining from new logs with a gate: a challenger replaces the champion only when it is really better.

Both are evaluated on the same held-out rows of the new logs, at their own default thresholds (what each
would serve). Quality is the success rate of the chosen tier; cost is the mean cost per request. The
challenger is promoted when it is
- as good on quality (at most QUALITY_TOLERANCE below the champion) at lower cost (at least COST_MARGIN
  cheaper, relative), or
- better on quality (at least QUALITY_MARGIN above) at no more cost (at most COST_TOLERANCE dearer, relative:
  the slack of measuring cost on a few hundred requests).
A test split of a few hundred requests moves the success rate by a third of a point per request, hence
margins of a point or two rather than zero.

When the held-out rows are collected traffic (`tierwise collect`), both are judged by inverse-propensity
weighting of what the traffic revealed (`training.evaluation.traffic`), so the champion that served the
traffic gains nothing from having chosen which outcomes were seen.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from classifier.router import Router
from classifier.tiers import TierError, TierLadder
from training.evaluation.evaluate import evaluate_router
from training.evaluation.report import EvalReport
from training.evaluation.traffic import TrafficEvaluation, evaluate_on_traffic, traffic_rows
from training.logs import AttemptLog, LogError
from training.tracking.registry import CHAMPION, ModelRef, Registry
from training.tracking.run_logging import log_training_run
from training.train import TrainOptions, train_bundle

QUALITY_TOLERANCE = 0.01
COST_MARGIN = 0.02
QUALITY_MARGIN = 0.02
COST_TOLERANCE = 0.01


@dataclass(frozen=True)
class Standing:
    """What a version does on the shared held-out rows at its default threshold."""

    version: str
    quality: float
    cost_usd: float
    cost_ratio: float
    apgr: float | None


@dataclass(frozen=True)
class RetrainDecision:
    """The gate's verdict, with both rows of numbers behind it."""

    challenger: Standing
    champion: Standing | None
    promoted: bool
    reason: str
    note: str = ""

    def render(self) -> str:
        """The decision and both rows, as printed by `tierwise retrain`."""
        lines = [f"window: {self.note}"] if self.note else []
        lines += [
            f"margins: promote if quality >= champion - {QUALITY_TOLERANCE} at cost <= champion x "
            f"{1 - COST_MARGIN:g}, or quality >= champion + {QUALITY_MARGIN} at cost <= champion x "
            f"{1 + COST_TOLERANCE:g}",
            f"{'':<12}{'version':>8}{'quality':>10}{'cost/req USD':>14}{'cost x top':>12}{'APGR':>8}",
        ]
        for role, row in (("challenger", self.challenger), ("champion", self.champion)):
            if row is not None:
                apgr = "-" if row.apgr is None else f"{row.apgr:.3f}"
                lines.append(
                    f"{role:<12}{row.version:>8}{row.quality:>10.4f}{row.cost_usd:>14.6f}{row.cost_ratio:>12.3f}"
                    f"{apgr:>8}"
                )
        verdict = "PROMOTED to champion" if self.promoted else "kept as challenger"
        lines.append(f"decision: v{self.challenger.version} {verdict}: {self.reason}")
        return "\n".join(lines)


def gate(challenger: Standing, champion: Standing) -> tuple[bool, str]:
    """Whether the challenger beats the champion by the margins, and why."""
    if challenger.quality >= champion.quality - QUALITY_TOLERANCE and challenger.cost_usd <= champion.cost_usd * (
        1 - COST_MARGIN
    ):
        return True, "as good on quality at lower cost"
    if challenger.quality >= champion.quality + QUALITY_MARGIN and challenger.cost_usd <= champion.cost_usd * (
        1 + COST_TOLERANCE
    ):
        return True, "better on quality at no more cost"
    if challenger.quality < champion.quality - QUALITY_TOLERANCE:
        return False, "lower quality than the champion"
    return False, "not cheaper, and not better on quality, by the margins"


def standing(version: str, evaluation: EvalReport | TrafficEvaluation) -> Standing:
    """What a version's evaluation on the held-out rows says it does at its default threshold."""
    if isinstance(evaluation, TrafficEvaluation):
        point = evaluation.operating_point
        ratio = evaluation.cost_ratio(point.cost)
        return Standing(version, point.quality, point.cost, ratio if ratio is not None else 0.0, evaluation.apgr)
    report = evaluation.to_json()
    point = report["operating_point"]
    return Standing(version, point["quality"], point["cost_usd"], point["cost_ratio"], report.get("apgr"))


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
    """Train a challenger on the log, register it, and promote it only if it beats the champion.

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
    challenger_evaluation = result.traffic_evaluation or result.evaluation
    assert challenger_evaluation is not None
    challenger = standing(str(tracked.version), challenger_evaluation)
    if tracked.alias == CHAMPION:
        decision = RetrainDecision(challenger, None, True, "the registry had no champion yet", log.selection)
        record_decision(registry, name, decision)
        return decision
    found = registry.version(ModelRef(name, alias=CHAMPION))
    champion_router = Router.load(registry.bundle_dir(found))
    if champion_router.ladder.names != ladder.names:
        raise TierError(
            f"champion v{found.version} routes between {champion_router.ladder.names}, the challenger between "
            f"{ladder.names}: they cannot be compared on the same rows"
        )
    held_out: EvalReport | TrafficEvaluation
    if result.traffic_evaluation is None:
        held_out = evaluate_router(champion_router, result.labels.frame, split="test", split_rule=options.split_rule)
    else:  # the same held-out traffic rows the challenger was scored on
        traffic = traffic_rows(result.labels.frame, "test", options.split_rule)
        assert traffic is not None
        held_out = evaluate_on_traffic(champion_router, traffic)
    champion = standing(str(found.version), held_out)
    promoted, reason = gate(challenger, champion)
    if promoted:
        registry.promote(name, challenger.version)
    decision = RetrainDecision(challenger, champion, promoted, reason, log.selection)
    record_decision(registry, name, decision)
    return decision


def record_decision(registry: Registry, name: str, decision: RetrainDecision) -> None:
    """Tag the challenger's version with the gate's verdict and the champion it was measured against."""
    verdict = "promoted" if decision.promoted else "kept as challenger"
    against = f" against v{decision.champion.version}" if decision.champion else ""
    registry.client.set_model_version_tag(
        name, decision.challenger.version, "retrain_decision", f"{verdict}{against}: {decision.reason}"
    )
