"""Evaluating a trained router bundle on labelled requests: the one path `tierwise eval`, train, compare and
retrain share.

The router's own ONNX graph gives the probabilities and its manifest the rule and threshold, so what is
scored is exactly what would serve. The k-NN baseline is fitted on the rows that are not evaluated
(or on an explicit training frame), embedded with the router's encoder kind.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tierwise.classifier.outputs import atomic_file
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierError, TierLadder
from tierwise.training.data.groups import group_keys, require_column
from tierwise.training.data.labels import label_requests
from tierwise.training.data.logs import AttemptLog, LogError
from tierwise.training.data.splits import SplitRule
from tierwise.training.evaluation.bands import BandReport, evaluate_band, latency_matrix
from tierwise.training.evaluation.baselines import knn_bank, knn_probs
from tierwise.training.evaluation.by_group import GroupReports
from tierwise.training.evaluation.curves import known_rows
from tierwise.training.evaluation.frames import outcome_arrays, prompt_chars
from tierwise.training.evaluation.report import EvalReport, build_report
from tierwise.training.progress import progress

PROBABILITY_BATCH = 128
BUDGET_SWEEP_POINTS = 12


def router_probabilities(router: Router, prompts: Sequence[str], batch: int = PROBABILITY_BATCH) -> np.ndarray:
    """P(success) per tier from the bundle's graph, in length-sorted batches so padding and memory stay small."""
    order = np.argsort([len(p) for p in prompts], kind="stable")
    probs = np.empty((len(prompts), len(router.ladder)), dtype=np.float64)
    with progress(len(prompts), "routing", "prompt", quiet_below=4 * batch) as update:
        for start in range(0, len(prompts), batch):
            rows = order[start : start + batch]
            probs[rows] = router.probabilities([prompts[i] for i in rows])
            update(len(rows))
    return probs


def knn_baseline(router: Router, train: pl.DataFrame, evaluated: pl.DataFrame, cache: bool = True) -> np.ndarray:
    """k-NN probabilities for the evaluated rows from the training rows (`knn_bank` of them), embedded by the
    router's encoder kind."""
    from tierwise.training.embedding.embed import embed
    from tierwise.training.embedding.encoders import load_encoder

    encoder = load_encoder(router.manifest.encoder.kind)
    train = train[knn_bank(train.height)]
    train_success, _ = outcome_arrays(train, router.ladder.names)
    return knn_probs(
        embed(train["prompt"].to_list(), encoder, cache=cache),
        train_success,
        embed(evaluated["prompt"].to_list(), encoder, cache=cache),
    )


def evaluate_router(
    router: Router,
    labels_frame: pl.DataFrame,
    train_frame: pl.DataFrame | None = None,
    split: str | None = "test",
    split_rule: SplitRule | None = None,
    cache: bool = True,
) -> EvalReport:
    """Score a router bundle and every baseline on one split of labelled requests (a `tierwise.training.data.labels`
    frame).

    `split=None` evaluates every row. The k-NN baseline learns from `train_frame` when given, else from the
    rows outside the evaluated split; with neither it is left out. The frame must be labelled with the
    router's tier ladder (same tier names; prices may differ, they only set the costs). `split_rule` defaults
    to the `split` column's.
    """
    evaluated, rest = (split_rule or SplitRule()).select(labels_frame, split)
    train = rest if train_frame is None else train_frame
    tiers = router.ladder.names
    success, cost = outcome_arrays(evaluated, tiers)
    policy = router.manifest.policy
    return build_report(
        tiers,
        success,
        cost,
        router_probabilities(router, evaluated["prompt"].to_list()),
        policy.threshold,
        prompt_chars=prompt_chars(evaluated),
        knn_probs=knn_baseline(router, train, evaluated, cache) if train.height else None,
        rule=policy.rule,
        request_ids=evaluated["request_id"].cast(pl.String).to_list(),
        tier_costs=router.manifest.tier_costs_usd,
    )


def evaluate_by(
    router: Router, labels_frame: pl.DataFrame, column: str, split: str | None = "test", cache: bool = True
) -> GroupReports:
    """`evaluate_router` on each group of requests by `column` (requests without a value form one group), largest
    first: the group's rows of `split`, its k-NN baseline learning from the group's other rows. A group with no
    request known on every tier there is listed with the reason instead."""
    require_column(labels_frame, column)
    keyed = labels_frame.with_columns(group_keys(labels_frame, column).alias("_group"))
    reports, skipped = {}, {}
    for (name,), rows in sorted(keyed.partition_by("_group", as_dict=True).items(), key=lambda g: -g[1].height):
        try:
            reports[str(name)] = evaluate_router(router, rows.drop("_group"), split=split, cache=cache)
        except LogError as exc:
            skipped[str(name)] = str(exc)
    return GroupReports(column, reports, skipped)


def evaluation_ladder(router: Router, ladder: TierLadder | None) -> TierLadder:
    """The ladder to label with: the bundle's own, or `ladder` if it names the same tiers (prices may differ)."""
    if ladder is None:
        return router.ladder
    if ladder.names != router.ladder.names:
        raise TierError(
            f"{ladder.source} names tiers {ladder.names}, but the model routes between {router.ladder.names}; "
            "leave --tiers out to use the model's own ladder"
        )
    return ladder


def band_evaluation(
    router: Router, evaluated: pl.DataFrame, probs: np.ndarray, options: RouteOptions, sweep: bool = False
) -> BandReport:
    """The band evaluation of a router on labelled rows, reusing their probabilities; `sweep` adds the router
    across interactive budgets spanning the tiers' latencies (for the cost-versus-time chart)."""
    success, cost = outcome_arrays(evaluated, router.ladder.names)
    latency, logged = latency_matrix(evaluated, router)
    keep = known_rows(success, cost) & np.isfinite(latency).all(axis=1)
    if not keep.any():
        raise LogError("no evaluated request has an outcome, cost and latency on every tier: nothing to simulate")
    times = router.policy.times
    budgets: list[float] = []
    if sweep and times is not None and options.band == "interactive":
        low, high = times.tiers[0].quantile(0.25), 2 * times.tiers[-1].quantile(0.9)
        budgets = np.geomspace(low, high, BUDGET_SWEEP_POINTS).tolist()
    share = float(logged[keep].mean())
    return evaluate_band(router, success[keep], cost[keep], latency[keep], probs[keep], options, share, budgets)


def write_json(document: dict[str, Any], path: Path) -> None:
    """Write an evaluation's numbers as JSON (strict: no NaN), through `atomic_file`."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")


@dataclass(frozen=True)
class EvalRun:
    """What `tierwise eval` found: the evaluation, and per latency band and per group when asked."""

    report: EvalReport
    band: BandReport | None = None
    groups: GroupReports | None = None


def run_eval(
    router: Router,
    log: AttemptLog,
    *,
    ladder: TierLadder | None = None,
    split: str | None = "test",
    json_out: Path | None = None,
    plot_out: Path | None = None,
    band: RouteOptions | None = None,
    time_plot_out: Path | None = None,
    by: str | None = None,
) -> EvalRun:
    """`tierwise eval`: label the logs with the model's ladder, evaluate one split (and its chains in a latency
    band, and each group of requests by the column `by`, when asked), write the JSON and the charts."""
    labels = label_requests(log, evaluation_ladder(router, ladder))
    report = evaluate_router(router, labels.frame, split=split)
    band_report = None
    document = report.to_json()
    if band is not None:
        evaluated, _ = SplitRule().select(labels.frame, split)
        band_report = band_evaluation(router, evaluated, report.probabilities, band, sweep=time_plot_out is not None)
        document["band"] = band_report.to_json()
    groups = evaluate_by(router, labels.frame, by, split) if by is not None else None
    if groups is not None:
        document["by"] = groups.to_json()
    if json_out is not None:
        write_json(document, json_out)
    if plot_out is not None:
        from tierwise.training.evaluation.plot import plot_report

        plot_report(report, plot_out)
    if time_plot_out is not None and band_report is not None:
        from tierwise.training.evaluation.band_plot import plot_band_report

        plot_band_report(band_report, time_plot_out)
    return EvalRun(report, band_report, groups)
