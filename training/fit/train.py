"""The training pipeline: attempt log -> labels -> embeddings -> calibrated head -> policy -> ONNX bundle.

The split rule (`tierwise.training.data.splits`) decides which requests are fitted on, which choose the policy and
which are only evaluated. Training refuses a tier with too few observed outcomes
(`tierwise.training.fit.sufficiency`), or drops it when asked. The exported bundle is then scored on the held-out
rows by the same code `tierwise eval` runs, and that evaluation travels with the result, so nothing downstream
(run logging, retrain's gate) scores it again.

Collected traffic (`tierwise collect`): the heads learn from each request's first attempt, whose tier was
drawn with a known probability whatever the request's difficulty (an escalation attempt happens because an
earlier one failed, so it over-represents hard requests), weighted by inverse propensity; the policy and
the held-out scores weight what the traffic revealed the same way (`tierwise.training.evaluation.off_policy`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tierwise.classifier.bundle import Manifest, check_bundle_out, write_manifest
from tierwise.classifier.policy import RULES
from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierLadder
from tierwise.training.data.attempts import WORKLOAD
from tierwise.training.data.groups import group_sizes
from tierwise.training.data.labels import Labels, label_requests
from tierwise.training.data.logs import STREAMING, AttemptLog, LogError
from tierwise.training.data.splits import DEFAULT_COLUMN, SplitRule
from tierwise.training.embedding.embed import embed
from tierwise.training.embedding.encoders import DEFAULT_ENCODER, Encoder, load_encoder
from tierwise.training.evaluation.curves import known_rows
from tierwise.training.evaluation.evaluate import evaluate_router
from tierwise.training.evaluation.frames import outcome_arrays
from tierwise.training.evaluation.off_policy import TrafficLog
from tierwise.training.evaluation.report import EvalReport
from tierwise.training.evaluation.summary import summary_metrics
from tierwise.training.evaluation.traffic_eval import TrafficEvaluation, evaluate_on_traffic, traffic_rows
from tierwise.training.fit.export import export_bundle
from tierwise.training.fit.guarantee import QualityTarget
from tierwise.training.fit.head import TierHead
from tierwise.training.fit.policy_choice import (
    DEFAULT_QUALITY_FLOOR,
    PolicyChoice,
    choose_policy,
    choose_policy_on_traffic,
)
from tierwise.training.fit.speed import measure_latency
from tierwise.training.fit.sufficiency import DEFAULT_MIN_OUTCOMES, refuse_short_tiers, tier_outcomes, without_tiers
from tierwise.training.fit.time_fit import TIMED_COLUMNS, TimeFit, fit_tier_times

LATENCY_PROMPTS = 200
MANIFEST_WORKLOADS = 50  # the manifest names the largest workloads trained on; the rest are counted together


@dataclass(frozen=True)
class TrainOptions:
    """How a router is trained: what `tierwise train` and `tierwise retrain` take besides the logs."""

    encoder: str = DEFAULT_ENCODER
    split_column: str = DEFAULT_COLUMN
    seed: int = 0
    C: float = 0.1
    threshold_rule: str = "auto"
    quality_floor: float = DEFAULT_QUALITY_FLOOR
    quality_target: float | None = None
    confidence: float = 0.95
    min_outcomes_per_tier: int = DEFAULT_MIN_OUTCOMES
    drop_untrained_tiers: bool = False
    cache: bool = True
    max_train_requests: int | None = 500_000  # None: every training request (SplitRule.training_sample)

    @property
    def split_rule(self) -> SplitRule:
        return SplitRule(self.split_column)

    @property
    def rules(self) -> tuple[str, ...]:
        """The threshold rules to choose among on validation rows."""
        return tuple(RULES) if self.threshold_rule == "auto" else (self.threshold_rule,)

    @property
    def target(self) -> QualityTarget | None:
        """The guarded quality target, when one was asked for (else the unguarded `quality_floor` applies)."""
        return None if self.quality_target is None else QualityTarget(self.quality_target, self.confidence)


@dataclass
class TrainResult:
    """What a training run produced: the bundle and its router, the held-out evaluation, and the run's facts."""

    bundle_dir: Path
    manifest: Manifest
    router: Router
    evaluation: EvalReport | None
    options: TrainOptions
    log: AttemptLog
    labels: Labels
    calibration_folds: int
    untimed_tiers: list[str] = field(default_factory=list)
    dropped_tiers: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # The held-out scores by inverse propensity, when the held-out requests are collected traffic.
    traffic_evaluation: TrafficEvaluation | None = None

    @property
    def params(self) -> dict[str, Any]:
        """Everything that decided the model, as MLflow params and the report show it."""
        options = self.options
        return {
            "encoder": options.encoder,
            "head": "per-tier logistic regression + Platt scaling",
            "C": options.C,
            "calibration_folds": self.calibration_folds,
            "threshold_rule": options.threshold_rule,
            **self._quality_params(),
            "min_outcomes_per_tier": options.min_outcomes_per_tier,
            "seed": options.seed,
            "split_column": options.split_column,
            "success_threshold": self.log.success_threshold,
            "tiers": self.labels.ladder.names,
        }

    def _quality_params(self) -> dict[str, Any]:
        options = self.options
        if options.quality_target is None:
            return {"quality_floor": options.quality_floor}
        return {"quality_target": options.quality_target, "confidence": options.confidence}


@dataclass(frozen=True)
class Masks:
    """The training rows, split into fit and validation, and the held-out test rows."""

    train: np.ndarray
    fit: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    @classmethod
    def of(cls, frame: pl.DataFrame, options: TrainOptions) -> Masks:
        test = options.split_rule.test_mask(frame)
        if test.all():
            raise LogError("no training requests: every request is in the test split")
        validation = options.split_rule.validation_mask(frame, options.seed)
        return cls(train=~test, fit=~test & ~validation, validation=validation, test=test)

    def counts(self) -> dict[str, int]:
        return {"train": int(self.train.sum()), "validation": int(self.validation.sum()), "test": int(self.test.sum())}


def fit_head_and_policy(
    vectors: np.ndarray,
    success: np.ndarray,
    cost: np.ndarray,
    tier_costs: list[float],
    masks: Masks,
    options: TrainOptions,
    traffic: TrafficLog | None,
    refit: bool = True,
) -> tuple[TierHead, PolicyChoice]:
    """Choose the policy with a head fitted on the fit rows, then (with `refit`) refit the head on every training
    row; `tierwise train` refits, `tierwise audit`'s cross-fitted routers, one per fold, do not.

    With a guarded quality target the head is not refit: the validation rows it was certified on must stay
    unseen by the head that serves, or the guarantee would not hold. On collected traffic the heads learn
    from first attempts and the policy is chosen on inverse-propensity estimates of what the traffic revealed.
    """
    taught, weights = (success, np.ones_like(success)) if traffic is None else traffic.first_attempts(success)
    revealed = None if traffic is None else traffic.revealed(success)
    fit = masks.fit
    head = TierHead(C=options.C, random_state=options.seed).fit(vectors[fit], taught[fit], weights[fit])
    valid = masks.validation
    probs = head.predict_proba(vectors[valid])
    if revealed is None:
        choice = choose_policy(
            success[valid], cost[valid], probs, options.rules, tier_costs, options.quality_floor, options.target
        )
    elif options.target is not None:
        raise LogError(
            "--quality-target cannot be certified on collected traffic (its outcomes are weighted, not all known); "
            "use --quality-floor, or logs with every tier's outcome"
        )
    else:
        outcomes, probability = revealed
        choice = choose_policy_on_traffic(
            outcomes[valid], probability[valid], cost[valid], probs, options.rules, tier_costs, options.quality_floor
        )
    if refit and options.target is None:
        train = masks.train
        head = TierHead(C=options.C, random_state=options.seed).fit(vectors[train], taught[train], weights[train])
    return head, choice


def _trainable_labels(log: AttemptLog, ladder: TierLadder, options: TrainOptions) -> tuple[Labels, dict[str, int]]:
    """Labels on a ladder whose every tier has enough observed training outcomes, and the tiers dropped for it.

    A short tier stops training (`TooFewOutcomesError`) unless `drop_untrained_tiers`, which relabels without it.
    """
    labels = _sampled(label_requests(log, ladder), options)
    outcomes = tier_outcomes(labels, Masks.of(labels.frame, options).train, options.min_outcomes_per_tier)
    if not outcomes.short:
        return labels, {}
    if not options.drop_untrained_tiers:
        refuse_short_tiers(outcomes, log, ladder)
    dropped = {tier: outcomes.observed[tier] for tier in outcomes.short}
    return _sampled(label_requests(log, without_tiers(ladder, list(dropped))), options), dropped


def _sampled(labels: Labels, options: TrainOptions) -> Labels:
    """The labels of the requests trained on: at most about `max_train_requests` training requests, all held-out
    ones, the requests left out counted in `sampled_from`."""
    if options.max_train_requests is None:
        return labels
    frame = options.split_rule.training_sample(labels.frame, options.max_train_requests)
    if frame.height == labels.frame.height:
        return labels
    return replace(labels, frame=frame, sampled_from=labels.frame.height)


def _manifest(
    log: AttemptLog,
    labels: Labels,
    tier_costs: list[float],
    masks: Masks,
    choice: PolicyChoice,
    encoder: Encoder,
    times: TimeFit,
) -> Manifest:
    frame = labels.frame
    return Manifest(
        ladder=labels.ladder.to_dict(),
        tier_costs_usd=tier_costs,
        policy=choice.spec,
        encoder=encoder.spec,
        tier_times=times.to_manifest(),
        data={
            **log.fingerprint(),
            "requests": masks.counts() | ({"sampled_from": labels.sampled_from} if labels.sampled_from else {}),
            "statuses": dict(frame.group_by("status").len().iter_rows()),
            **({"workloads": group_sizes(frame, WORKLOAD, MANIFEST_WORKLOADS)} if WORKLOAD in frame.columns else {}),
        },
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _train_attempts(log: AttemptLog, frame: pl.DataFrame, masks: Masks) -> pl.DataFrame:
    """The attempt rows of the training requests: what the time model is fitted on (held-out rows stay unseen).

    Only the columns the time model reads are collected, by the streaming engine.
    """
    train_ids = frame.filter(pl.Series(masks.train))["request_id"]
    columns = [c for c in ("model", *TIMED_COLUMNS) if c in log.columns]
    rows = log.attempts.filter(pl.col("request_id").is_in(train_ids.implode())).select(columns)
    return rows.collect(engine=STREAMING)


def train_bundle(
    log: AttemptLog, out_dir: Path, ladder: TierLadder, options: TrainOptions = TrainOptions()
) -> TrainResult:
    """Train a router on an attempt log and export it as a verified bundle directory, evaluated once."""
    check_bundle_out(out_dir)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    labels, dropped = _trainable_labels(log, ladder, options)
    frame = labels.frame
    masks = Masks.of(frame, options)
    success, cost = outcome_arrays(frame, labels.ladder.names)
    # What the policy weighs per tier, when it is chosen and when it serves: the mean cost on training rows.
    tier_costs = [float(np.nanmean(cost[masks.train, k])) for k in range(len(labels.ladder))]
    traffic = TrafficLog.from_labels(frame, labels.ladder.names)
    timings["label_s"] = time.perf_counter() - started

    step = time.perf_counter()
    encoder = load_encoder(options.encoder)
    vectors = embed(frame["prompt"], encoder, cache=options.cache)
    timings["embed_s"] = time.perf_counter() - step

    step = time.perf_counter()
    head, choice = fit_head_and_policy(vectors, success, cost, tier_costs, masks, options, traffic)
    timings["fit_s"] = time.perf_counter() - step

    step = time.perf_counter()
    times = fit_tier_times(_train_attempts(log, frame, masks), labels.ladder)
    manifest = _manifest(log, labels, tier_costs, masks, choice, encoder, times)
    stamped = export_bundle(out_dir, encoder, head, manifest)
    router = Router.load(out_dir)
    evaluation = traffic_evaluation = None
    held_out_traffic = traffic_rows(frame, "test", options.split_rule) if traffic is not None else None
    if held_out_traffic is not None:
        traffic_evaluation = evaluate_on_traffic(router, held_out_traffic)
    elif known_rows(success[masks.test], cost[masks.test]).any():
        train_rows = frame.filter(pl.Series(masks.train))
        evaluation = evaluate_router(router, frame, train_rows, "test", options.split_rule, options.cache)
    latency = measure_latency(router, frame["prompt"].head(LATENCY_PROMPTS).to_list())
    metrics = summary_metrics(evaluation, latency)
    if traffic_evaluation is not None:
        metrics |= traffic_evaluation.flat_metrics()
    write_manifest(out_dir, replace(stamped, metrics=metrics))
    router = Router.load(out_dir)
    timings["export_s"] = time.perf_counter() - step
    timings["total_s"] = time.perf_counter() - started
    return TrainResult(
        bundle_dir=out_dir,
        manifest=router.manifest,
        router=router,
        evaluation=evaluation,
        options=options,
        log=log,
        labels=labels,
        calibration_folds=head.calibration_folds,
        untimed_tiers=times.untimed_tiers,
        dropped_tiers=dropped,
        timings={**timings, **latency},
        traffic_evaluation=traffic_evaluation,
    )
