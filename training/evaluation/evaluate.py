"""Evaluating a trained router bundle on labelled requests: the one path `tierwise eval`, compare and retrain share.

The router's own ONNX graph gives the probabilities and its manifest the rule and threshold, so what is
scored is exactly what would serve. The k-NN baseline is fitted on the rows that are not evaluated
(or on an explicit training frame), embedded with the router's encoder kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from classifier.router import Router
from classifier.tiers import TierLadder
from training.evaluation.baselines import knn_probs
from training.evaluation.frames import outcome_arrays, prompt_chars, select_split
from training.evaluation.report import EvalReport, build_report

PROBABILITY_BATCH = 128
REGISTRY_PREFIX = "models:/"


def router_probabilities(router: Router, prompts: Sequence[str], batch: int = PROBABILITY_BATCH) -> np.ndarray:
    """P(success) per tier from the bundle's graph, in length-sorted batches so padding and memory stay small."""
    order = np.argsort([len(p) for p in prompts], kind="stable")
    probs = np.empty((len(prompts), len(router.ladder)), dtype=np.float64)
    with tqdm(total=len(prompts), desc="routing", unit="prompt", disable=len(prompts) < 4 * batch) as bar:
        for start in range(0, len(prompts), batch):
            rows = order[start : start + batch]
            probs[rows] = router.probabilities([prompts[i] for i in rows])
            bar.update(len(rows))
    return probs


def split_frames(
    frame: pl.DataFrame, split: str | None, split_column: str = "split"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(evaluated rows, the other rows). Logs without the split column hold out `test` as `tierwise train` does."""
    if split is None:
        return frame, frame.clear()
    if split_column not in frame.columns and split == "test":
        from training.train import split_masks

        _, test = split_masks(frame, split_column)
        return frame.filter(pl.Series(test)), frame.filter(pl.Series(~test))
    chosen = select_split(frame, split, split_column)
    rest = frame.filter(pl.col(split_column).cast(pl.String).ne_missing(split))
    return chosen, rest


def knn_baseline(router: Router, train: pl.DataFrame, evaluated: pl.DataFrame, cache: bool = True) -> np.ndarray:
    """k-NN probabilities for the evaluated rows from the training rows, embedded by the router's encoder kind."""
    from training.encoders import embed, load_encoder

    encoder = load_encoder(router.manifest.encoder.kind)
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
    split_column: str = "split",
    cache: bool = True,
) -> EvalReport:
    """Score a router bundle and every baseline on one split of labelled requests (`training.labels` frame).

    `split=None` evaluates every row. The k-NN baseline learns from `train_frame` when given, else from the
    rows outside the evaluated split; with neither it is left out. The frame must be labelled with the
    router's tier ladder (same tier names; prices may differ, they only set the costs).
    """
    evaluated, rest = split_frames(labels_frame, split, split_column)
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
    )


def load_router(model: str, tracking_uri: str | None = None) -> Router:
    """A bundle directory, or a registered version `models:/NAME@ALIAS` (`models:/NAME/VERSION`) via MLflow."""
    if not model.startswith(REGISTRY_PREFIX):
        return Router.load(model)
    from training.tracking.registry import resolve_bundle

    return Router.load(resolve_bundle(model, tracking_uri))


def evaluation_ladder(router: Router, tiers: str | Path | None) -> TierLadder:
    """The ladder to label with: the bundle's own, or `tiers` if it names the same tiers (prices may differ)."""
    if tiers is None:
        return router.ladder
    ladder = TierLadder.load(tiers)
    if ladder.names != router.ladder.names:
        raise ValueError(
            f"--tiers {tiers} names tiers {ladder.names}, but the model routes between {router.ladder.names}; "
            "leave --tiers out to use the model's own ladder"
        )
    return ladder


def run_eval(
    model: str,
    logs: Sequence[str],
    *,
    tiers: str | None = None,
    split: str | None = "test",
    json_out: str | Path | None = None,
    plot_out: str | Path | None = None,
    success_threshold: float = 1.0,
    skip_invalid: bool = False,
    tracking_uri: str | None = None,
) -> tuple[Router, EvalReport]:
    """`tierwise eval`: label the logs with the model's ladder, evaluate one split, write the JSON and chart."""
    import json

    from training.labels import label_requests
    from training.logs import read_attempts

    router = load_router(model, tracking_uri)
    ladder = evaluation_ladder(router, tiers)
    log = read_attempts(list(logs), success_threshold=success_threshold, skip_invalid=skip_invalid)
    report = evaluate_router(router, label_requests(log, ladder).frame, split=split)
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n")
    if plot_out is not None:
        from training.evaluation.plot import plot_report

        Path(plot_out).parent.mkdir(parents=True, exist_ok=True)
        plot_report(report, plot_out)
    return router, report
