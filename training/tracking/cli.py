"""The commands that record or read MLflow runs and registered versions: `train`, `retrain`, `compare`, `promote`.

Each command turns its strings (paths, URIs, flags) into objects and hands them to the library; its body imports
the implementation, so `tierwise --help` stays light."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from tierwise.classifier.policy import RULES
from tierwise.registry.store import DEFAULT_EXPERIMENT
from tierwise.training.embedding.encoders import DEFAULT_ENCODER, ENCODERS
from tierwise.training.extras import TRAIN
from tierwise.training.options import ManyValuesOption, log_options, needs, tracking_uri_option

if TYPE_CHECKING:
    from tierwise.registry.models import Registry
    from tierwise.training.fit.train import TrainOptions


@click.group()
def commands() -> None:
    """The tracking commands (assembled into `tierwise` by `tierwise.cli`)."""


def open_registry(tracking_uri: str | None, create: bool = False) -> Registry:
    """The store a tracking command names, once the runs its killed predecessors left RUNNING are ended.

    `create` for the commands that record training runs (train, retrain): only they may create or migrate it.
    """
    from tierwise.registry.models import Registry
    from tierwise.registry.store import tracking_uri as store_uri
    from tierwise.training.tracking.run_owner import end_orphaned_runs

    registry = Registry(store_uri(tracking_uri), create=create)
    ended = end_orphaned_runs(registry)
    if ended:
        click.echo(f"marked {len(ended)} run(s) of killed commands KILLED: {', '.join(ended)}", err=True)
    return registry


def train_options(no_cache: bool, options: dict[str, Any]) -> TrainOptions:
    """The training options of `train` and `retrain`, from their click values.

    `--quality-floor` (unguarded) and `--quality-target` (guarded) are two ways to choose the default
    threshold; giving both is a usage error. Without either, the floor's default applies; so does the default
    sample size without --max-train-requests.
    """
    from tierwise.training.fit.train import TrainOptions

    if options["quality_floor"] is not None and options["quality_target"] is not None:
        raise click.UsageError("give --quality-floor (unguarded) or --quality-target (guarded), not both")
    for unset in ("quality_floor", "max_train_requests"):  # not given: TrainOptions' default
        if options[unset] is None:
            del options[unset]
    return TrainOptions(cache=not no_cache, **options)


def tracking_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that talks to MLflow shares."""
    command = click.option(
        "--experiment",
        default=DEFAULT_EXPERIMENT,
        show_default=True,
        help="MLflow experiment for training runs; comparison runs (retrain, compare --logs) go to "
        "EXPERIMENT-comparisons.",
    )(command)
    return tracking_uri_option(command)


def model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that decide how a router is trained (`train` and `retrain`)."""
    options = [
        click.option(
            "--encoder",
            type=click.Choice(list(ENCODERS)),
            default=DEFAULT_ENCODER,
            show_default=True,
            help="; ".join(f"{name}: {encoder.ABOUT}" for name, encoder in ENCODERS.items()) + ".",
        ),
        click.option(
            "--split-column", default="split", show_default=True, help="Rows where it says `test` are held out."
        ),
        click.option("--seed", default=0, show_default=True, type=int, help="Seed for folds and the validation part."),
        click.option(
            "--C",
            "C",
            default=0.1,
            show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            help="Inverse L2 strength.",
        ),
        click.option(
            "--threshold-rule",
            type=click.Choice(["auto", *RULES]),
            default="auto",
            show_default=True,
            help="".join(f"{name}: {rule.about}; " for name, rule in RULES.items())
            + "auto: whichever has the best validation APGR (recorded in the manifest).",
        ),
        click.option(
            "--quality-target",
            type=click.FloatRange(0, 1),
            help="Guarded default threshold: keep at least this share of always-top quality on new requests, "
            "with probability --confidence (certified on the validation rows; docs/evaluation.md).",
        ),
        click.option(
            "--confidence",
            default=0.95,
            show_default=True,
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            help="Probability that --quality-target holds on new requests like the validation rows.",
        ),
        click.option(
            "--quality-floor",
            type=click.FloatRange(0, 1),
            help="Unguarded default threshold: the cheapest one keeping this share of always-top quality on the "
            "validation rows themselves (new requests miss it about half the time). Default 0.95 when "
            "--quality-target is not given.",
        ),
        click.option(
            "--min-outcomes-per-tier",
            default=50,
            show_default=True,
            type=click.IntRange(min=0),
            help="Refuse to train (exit 2) when a tier has fewer observed outcomes in the training requests.",
        ),
        click.option(
            "--drop-untrained-tiers",
            is_flag=True,
            help="Train without the tiers that have fewer than --min-outcomes-per-tier outcomes instead of refusing.",
        ),
        click.option("--no-cache", is_flag=True, help="Recompute embeddings instead of reusing the on-disk cache."),
        click.option(
            "--max-train-requests",
            type=click.IntRange(min=1),
            help="Train on a hashed sample of about this many training requests when the logs hold more (every "
            "held-out request is still evaluated); default 500,000. Each one's embedding is held in memory while "
            "the head fits, and a head on a few hundred features learns no more from millions.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@commands.command("train")
@needs(TRAIN)
@log_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle directory to write.")
@model_options
@click.option("--register", metavar="NAME", help="Register the model as a new version of NAME in the MLflow registry.")
@tracking_options
def train(
    logs: tuple[str, ...],
    tiers: str | None,
    success_threshold: float,
    skip_invalid: bool,
    out: str,
    no_cache: bool,
    register: str | None,
    tracking_uri: str | None,
    experiment: str,
    **options: Any,
) -> None:
    """Train a router on attempt logs and export it as a bundle (one ONNX graph + tokenizer + manifest).

    Labels the logs, embeds the prompts (cached on disk), fits one calibrated logistic regression per
    tier, chooses the routing rule and default threshold on a validation part of the training rows, and
    reports calibration and routing on the held-out `test` rows. Every run is recorded in MLflow
    (params, data lineage, metrics, plots, the model); --register also makes it a registered version,
    `champion` if the model has none yet, else `challenger`.
    """
    from tierwise.classifier.bundle import check_bundle_out
    from tierwise.classifier.tiers import TierLadder
    from tierwise.training.data.logs import read_attempts
    from tierwise.training.fit.train import train_bundle
    from tierwise.training.fit.train_report import render_report
    from tierwise.training.tracking.promotion import place
    from tierwise.training.tracking.run_logging import training_run

    check_bundle_out(Path(out))  # before any work: refused output directories cost nothing
    registry = open_registry(tracking_uri, create=True)
    log = read_attempts(logs, success_threshold, skip_invalid)
    chosen = train_options(no_cache, options)
    with training_run(registry, log, chosen.encoder, experiment) as run:
        result = train_bundle(log, Path(out), TierLadder.load(tiers), chosen)
        click.echo(render_report(result))
        tracked = run.record(result, register)
    click.echo(f"mlflow run {tracked.run_id}")
    if register is not None and tracked.version is not None:
        placed = place(registry, register, tracked.version, result)
        click.echo(f"registered {register} version {placed.version} as {placed.alias}")
        for problem in placed.refused:
            click.echo(f"not made champion: {problem}")


@commands.command("retrain")
@needs(TRAIN)
@click.argument("name")
@log_options
@click.option(
    "--window",
    "window_days",
    metavar="DAYS",
    type=click.FloatRange(min=0, min_open=True),
    help="Train and compare on the requests of the last DAYS only (by the logs' timestamp column).",
)
@click.option("--out", type=click.Path(file_okay=False), help="Also keep the challenger bundle here.")
@model_options
@tracking_options
def retrain(
    name: str,
    logs: tuple[str, ...],
    tiers: str | None,
    success_threshold: float,
    skip_invalid: bool,
    window_days: float | None,
    out: str | None,
    no_cache: bool,
    tracking_uri: str | None,
    experiment: str,
    **options: Any,
) -> None:
    """Train a challenger for NAME on LOGS and promote it only if it beats the champion.

    Challenger and champion are evaluated on the same held-out rows of LOGS (the `test` split) at their
    default thresholds; the margins and both rows of numbers are printed. A challenger that does not clear
    them stays `challenger`. An empty registry's first version becomes champion. --window keeps the
    requests last tried within DAYS of the newest timestamp in the logs.
    """
    from tierwise.classifier.bundle import check_bundle_out
    from tierwise.classifier.tiers import TierLadder
    from tierwise.training.data.logs import read_attempts
    from tierwise.training.tracking.retrain import retrain as run_retrain

    if out:
        check_bundle_out(Path(out))  # before any work: refused output directories cost nothing
    registry = open_registry(tracking_uri, create=True)
    decision = run_retrain(
        name,
        read_attempts(logs, success_threshold, skip_invalid),
        registry,
        TierLadder.load(tiers),
        train_options(no_cache, options),
        window_days=window_days,
        out=Path(out) if out else None,
        experiment=experiment,
    )
    click.echo(decision.render())


@commands.command("compare")
@needs(TRAIN)
@click.argument("name")
@click.option(
    "--versions",
    cls=ManyValuesOption,
    type=click.IntRange(min=1),
    help="Versions to show, in this order: `--versions 3 5 7` or `--versions 3 --versions 5`. Default: all.",
)
@click.option(
    "--logs",
    "logs",
    cls=ManyValuesOption,
    type=click.Path(),
    help="Re-evaluate every version on these attempt logs (one evaluation set, comparable numbers); "
    "several files after one flag, like --versions.",
)
@click.option("--tiers", type=click.Path(dir_okay=False), help="Price ladder for --logs (same tier names).")
@click.option(
    "--split", default="test", show_default=True, help="Which split of --logs to evaluate on; `all` for every row."
)
@tracking_options
def compare(
    name: str,
    versions: tuple[int, ...],
    logs: tuple[str, ...],
    tiers: str | None,
    split: str,
    tracking_uri: str | None,
    experiment: str,
) -> None:
    """Compare registered versions of NAME side by side: metrics, data, encoder, and aliases held.

    Without --logs each version shows the metrics its training run recorded on its own held-out rows; with
    --logs all versions are re-evaluated on the same rows (95% intervals in brackets), and those numbers are
    logged as an MLflow comparison run in EXPERIMENT-comparisons.
    """
    from tierwise.classifier.tiers import TierLadder
    from tierwise.training.data.logs import read_attempts
    from tierwise.training.tracking.compare import compare_versions, render_comparison

    registry = open_registry(tracking_uri)
    log = read_attempts(logs, 1.0, False) if logs else None
    rows, run_id = compare_versions(
        registry,
        name,
        [str(v) for v in versions],
        log,
        TierLadder.load(tiers) if tiers else None,
        None if split == "all" else split,
        experiment,
    )
    where = f"re-evaluated on {split} rows of {', '.join(logs)}" if logs else "as recorded at training time"
    click.echo(render_comparison(rows, where))
    if run_id is not None:
        click.echo(f"mlflow comparison run {run_id}")


@commands.command("promote")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@tracking_uri_option
def promote(name: str, version: int, tracking_uri: str | None) -> None:
    """Move the `champion` alias of NAME to VERSION (servers following models:/NAME@champion reload it)."""
    from tierwise.training.tracking.promotion import promote as promote_version

    previous = promote_version(
        open_registry(tracking_uri), name, str(version), "promoted by hand (`tierwise promote`)."
    )
    click.echo(f"{name}: champion is now version {version} (was {previous or 'none'})")
