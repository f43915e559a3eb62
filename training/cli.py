"""The training side of the `tierwise` command line: logs, labels, training, evaluation, MLflow, replay.

Each command turns its strings (paths, URIs, flags) into objects and hands them to the library; its body
imports the implementation, so `tierwise --help` stays light. Input errors (`tierwise.classifier.errors.InputError`)
are reported by the `tierwise` entry point with exit code 2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from tierwise.classifier.extras import Extra
from tierwise.classifier.policy import RULES
from tierwise.classifier.request import BANDS
from tierwise.training.cli_options import ManyValuesOption
from tierwise.training.extras import SPARK, TRAIN

if TYPE_CHECKING:
    from tierwise.classifier.router import Router
    from tierwise.training.logs import AttemptLog
    from tierwise.training.tracking.registry import Registry
    from tierwise.training.train import TrainOptions


@click.group()
def commands() -> None:
    """The training commands (assembled into `tierwise` by `tierwise.cli`)."""


def needs(extra: Extra) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a command as needing an optional extra: without it, the command stops before doing anything, with
    one line naming the install command (exit 2) instead of an ImportError from deep inside."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def checked(*args: Any, **kwargs: Any) -> Any:
            extra.require(click.get_current_context().command_path)
            return command(*args, **kwargs)

        return checked

    return decorate


def read_logs(logs: tuple[str, ...], success_threshold: float, skip_invalid: bool) -> AttemptLog:
    """The attempt logs named on the command line, validated."""
    from tierwise.training.logs import read_attempts

    return read_attempts(list(logs), success_threshold=success_threshold, skip_invalid=skip_invalid)


def load_router(model: str, tracking_uri: str | None) -> Router:
    """The router a --model argument names (bundle directory or models:/ URI), as it would serve now."""
    from tierwise.classifier.router import Router
    from tierwise.serving.sources import open_model_source

    return Router.load(open_model_source(model, tracking_uri).resolve().path)


def open_registry(tracking_uri: str | None, create: bool = False) -> Registry:
    """The store a tracking command names, once the runs its killed predecessors left RUNNING are ended.

    `create` for the commands that record training runs (train, retrain): only they may create or migrate it.
    """
    from tierwise.training.tracking.registry import Registry
    from tierwise.training.tracking.run_owner import end_orphaned_runs
    from tierwise.training.tracking.store import tracking_uri as store_uri

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
    from tierwise.training.train import TrainOptions

    if options["quality_floor"] is not None and options["quality_target"] is not None:
        raise click.UsageError("give --quality-floor (unguarded) or --quality-target (guarded), not both")
    for unset in ("quality_floor", "max_train_requests"):  # not given: TrainOptions' default
        if options[unset] is None:
            del options[unset]
    return TrainOptions(cache=not no_cache, **options)


TRACKING_HELP = "MLflow tracking/registry store. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here."


def log_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that reads attempt logs shares."""
    command = click.option(
        "--skip-invalid",
        is_flag=True,
        help="Drop rows that break the attempt-log format (counted in the summary) instead of stopping.",
    )(command)
    command = click.option(
        "--success-threshold",
        type=float,
        default=1.0,
        show_default=True,
        help="When a row has `score` but no `success`, success = score >= this.",
    )(command)
    command = click.option(
        "--tiers",
        type=click.Path(dir_okay=False),
        default=None,
        help="Tier ladder TOML, cheapest tier first. Default: the shipped Claude ladder (haiku < sonnet < opus).",
    )(command)
    return click.argument("logs", nargs=-1, required=True, type=click.Path())(command)


def tracking_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that talks to MLflow shares."""
    command = click.option(
        "--experiment",
        default="tierwise",
        show_default=True,
        help="MLflow experiment for training runs; comparison runs (retrain, compare --logs) go to "
        "EXPERIMENT-comparisons.",
    )(command)
    return click.option(
        "--tracking-uri",
        default=None,
        help=TRACKING_HELP,
    )(command)


def model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that decide how a router is trained (`train` and `retrain`)."""
    options = [
        click.option(
            "--encoder",
            type=click.Choice(["static", "minilm"]),
            default="static",
            show_default=True,
            help="static: distilled token embedding (sub-millisecond, served default); minilm: the full transformer.",
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
            help="absolute: cheapest tier with P >= threshold, else the top; relative: P >= threshold x best P; "
            "utility: the tier maximising P - lambda x cost / top cost, lambda = (1 - threshold) / threshold; "
            "auto: whichever has the best validation APGR (recorded in the manifest).",
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


@commands.command("sample-logs")
@needs(TRAIN)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory to write into.")
@click.option("--requests", default=1000, show_default=True, type=click.IntRange(min=1), help="Requests to make.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (same seed, same logs).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]), default="jsonl", show_default=True)
@click.option("--tiers", type=click.Path(dir_okay=False), default=None, help="Tier ladder whose models to use.")
def sample_logs(out_dir: str, requests: int, seed: int, fmt: str, tiers: str | None) -> None:
    """Write realistic synthetic attempt logs (several tiers, censored and unsolved requests) for demos and tests."""
    from tierwise.classifier.tiers import TierLadder
    from tierwise.training.sample_logs import write_sample_logs

    path = write_sample_logs(Path(out_dir), requests, seed=seed, fmt=fmt, ladder=TierLadder.load(tiers))
    click.echo(f"wrote {path}")


@commands.command("label")
@needs(TRAIN)
@log_options
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="labels.parquet (or .csv / .jsonl).")
def label(logs: tuple[str, ...], tiers: str | None, success_threshold: float, skip_invalid: bool, out: str) -> None:
    """Label each request with the cheapest tier that succeeded, and print what the logs hold.

    LOGS are files or directories of attempt logs. Status is `solved`, `unsolved` (every tier tried, none
    succeeded; labelled with the top tier) or `censored` (a cheaper tier was never tried, so the true
    label is unknown and is not guessed).
    """
    from tierwise.classifier.tiers import TierLadder
    from tierwise.training.labels import label_requests, summarize, table_format, write_table

    table_format(out)
    log = read_logs(logs, success_threshold, skip_invalid)
    labels = label_requests(log, TierLadder.load(tiers))
    path = write_table(labels.frame, Path(out))
    click.echo(summarize(log, labels).render())
    click.echo(f"wrote {labels.frame.height} labelled requests to {path}")


@commands.command("collect")
@needs(TRAIN)
@click.argument("logs", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="attempts.parquet (or .csv / .jsonl).")
@click.option(
    "--prompts",
    "prompt_files",
    multiple=True,
    type=click.Path(),
    help="Prompts kept by the application, for a server run with --redact-prompts: rows with `prompt` (or "
    "`messages`) and `request_id` (else matched by the decision's prompt_sha256). Repeatable.",
)
@click.option(
    "--tiers",
    type=click.Path(dir_okay=False),
    default=None,
    help="Tier ladder the censored share is counted on. Default: the shipped Claude ladder.",
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Drop rows that cannot be read (a line torn by a crash or a full disk, a bad field), counted in the "
    "summary by reason, instead of stopping.",
)
def collect(
    logs: tuple[str, ...], out: str, prompt_files: tuple[str, ...], tiers: str | None, skip_invalid: bool
) -> None:
    """Join decision logs and outcome logs (`tierwise serve --decision-log/--outcome-log`) into attempt logs.

    LOGS are files or directories of both kinds, JSONL, CSV or Parquet: a file whose rows carry
    `fallback_chain` is a decision log, any other an outcome log. One attempt row per reported attempt,
    with the decision's propensity, explored, model_version, latency_band and workload; several reports of one
    attempt (a later grade) merge into one row. Prints what was matched, what was not and why, and the
    censored share. The output feeds `label`, `train`, `retrain` and `replay` as it is.
    """
    from tierwise.classifier.tiers import TierLadder
    from tierwise.training.collect import Prompts
    from tierwise.training.collect import collect as run_collect

    prompts = Prompts.read(prompt_files, skip_invalid) if prompt_files else None
    summary = run_collect(logs, Path(out), TierLadder.load(tiers), prompts, skip_invalid)
    click.echo(summary.render())
    click.echo(f"wrote {summary.matched} attempt rows to {out}")


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
    from tierwise.training.tracking.promotion import place
    from tierwise.training.tracking.run_logging import training_run
    from tierwise.training.train import train_bundle
    from tierwise.training.train_report import render_report

    check_bundle_out(Path(out))  # before any work: refused output directories cost nothing
    registry = open_registry(tracking_uri, create=True)
    log = read_logs(logs, success_threshold, skip_invalid)
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


@commands.command("eval")
@needs(TRAIN)
@log_options
@click.option(
    "--model", required=True, help="Bundle directory, or a registered version models:/NAME@ALIAS (MLflow registry)."
)
@click.option(
    "--split",
    default="test",
    show_default=True,
    help="Evaluate the rows whose `split` column says this (logs without one: the 20% `tierwise train` held out); "
    "`all` for every row.",
)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write every number as JSON here.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), help="Draw the cost-quality chart (PNG) here.")
@click.option(
    "--band",
    type=click.Choice(BANDS, case_sensitive=False),
    help="Also replay each request's chain in this latency band on its logged outcomes, costs and latencies: cost, "
    "quality and time to an acceptable answer for the router, each tier, the static mix and the oracle.",
)
@click.option(
    "--max-latency-ms",
    type=click.FloatRange(min=0, min_open=True),
    help="--band interactive: the router's budget, and the one quality is judged within.",
)
@click.option(
    "--value-of-time-usd-per-s",
    type=click.FloatRange(min=0),
    help="--band tolerant: what a second of waiting is worth to the router.",
)
@click.option(
    "--time-plot",
    "time_plot_out",
    type=click.Path(dir_okay=False),
    help="With --band: draw the cost-versus-time chart (PNG) here.",
)
@click.option(
    "--by",
    metavar="COLUMN",
    help="Also print the headline metrics per group of requests by this column (e.g. workload, category).",
)
@click.option("--tracking-uri", help=f"For models:/ URIs. {TRACKING_HELP}")
def evaluate(
    model: str,
    logs: tuple[str, ...],
    tiers: str | None,
    success_threshold: float,
    skip_invalid: bool,
    split: str,
    json_out: str | None,
    plot_out: str | None,
    band: str | None,
    max_latency_ms: float | None,
    value_of_time_usd_per_s: float | None,
    time_plot_out: str | None,
    by: str | None,
    tracking_uri: str | None,
) -> None:
    """Score a router against trivial routing on labelled logs: APGR, CPT, cost at quality, calibration.

    Sweeps the router's quality threshold over [0, 1] on the requests of --split whose outcome is known on
    every tier, and compares it on the same requests with always-each-tier, a random mix of cheapest and
    top, a prompt-length heuristic, k-NN over the other rows, and the oracle. --tiers defaults to the
    model's own ladder (give one with the same tier names to re-price). On collected traffic (`tierwise
    collect`) the router is scored by inverse propensity instead. Definitions: docs/evaluation.md.
    """
    from tierwise.classifier.request import RouteOptions
    from tierwise.classifier.tiers import TierLadder
    from tierwise.training.evaluation.evaluate import run_eval
    from tierwise.training.evaluation.table import render_table
    from tierwise.training.evaluation.traffic import run_traffic_eval

    if band is None and (max_latency_ms, value_of_time_usd_per_s, time_plot_out) != (None, None, None):
        raise click.UsageError("--max-latency-ms, --value-of-time-usd-per-s and --time-plot need --band")
    router = load_router(model, tracking_uri)
    log = read_logs(logs, success_threshold, skip_invalid)
    ladder = TierLadder.load(tiers) if tiers else None
    chosen = None if split == "all" else split
    click.echo(f"model {model} (version {router.version}, encoder {router.manifest.encoder.name}), split {split}")
    traffic = run_traffic_eval(router, log, ladder=ladder, split=chosen, json_out=Path(json_out) if json_out else None)
    if traffic is not None:  # collected traffic: weighted by inverse propensity, no full-information charts
        if plot_out or band or by:
            raise click.UsageError("--plot, --band and --by need full-information logs; these are collected traffic")
        click.echo(traffic.table())
    else:
        run = run_eval(
            router,
            log,
            ladder=ladder,
            split=chosen,
            json_out=Path(json_out) if json_out else None,
            plot_out=Path(plot_out) if plot_out else None,
            band=RouteOptions(
                latency_band=band, max_latency_ms=max_latency_ms, value_of_time_usd_per_s=value_of_time_usd_per_s
            )
            if band
            else None,
            time_plot_out=Path(time_plot_out) if time_plot_out else None,
            by=by,
        )
        click.echo(render_table(run.report))
        if run.band is not None:
            click.echo(run.band.table())
        if run.groups is not None:
            click.echo("\n".join(run.groups.lines()))
    for written in (json_out, plot_out, time_plot_out):
        if written:
            click.echo(f"wrote {written}")


@commands.command("audit")
@needs(TRAIN)
@log_options
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Report directory to write: report.html, report.json, recommended.workloads.toml.",
)
@click.option(
    "--workloads",
    "workloads_file",
    type=click.Path(dir_okay=False),
    help="Workloads TOML ([default], [workload.NAME]): each workload's band decides whether batching applies.",
)
@click.option(
    "--quality-target",
    type=click.FloatRange(0, 1),
    help="A tier or router meets the target when it keeps this share of the top tier's success rate. Default: "
    "0.95, train's default quality floor.",
)
@click.option(
    "--workload-column",
    default="workload",
    show_default=True,
    help="The per-request column naming each request's workload (e.g. category, benchmark).",
)
@click.option("--no-cache", is_flag=True, help="Recompute embeddings instead of reusing the on-disk cache.")
def audit(
    logs: tuple[str, ...],
    tiers: str | None,
    success_threshold: float,
    skip_invalid: bool,
    out: str,
    workloads_file: str | None,
    quality_target: float | None,
    workload_column: str,
    no_cache: bool,
) -> None:
    """Where each workload's spend goes, and what each lever would save on it.

    Per workload (the logs' `workload` column) and in total: requests, spend as logged (input, output, cache
    reads and writes), each tier's share, success and latency; then what right-sizing, routing within the workload
    (a cross-fitted router), the Batch API, prompt caching and removing escalation waste would save, in USD and as a
    share, each with a 95% interval and its effect on quality. Writes report.html (self-contained), report.json
    (docs/evaluation.md) and recommended.workloads.toml (for `tierwise serve --workloads`).
    """
    from tierwise.classifier.tiers import TierLadder
    from tierwise.classifier.workloads import Workloads
    from tierwise.training.audit.run import run_audit
    from tierwise.training.audit.table import render_text

    found = run_audit(
        read_logs(logs, success_threshold, skip_invalid),
        TierLadder.load(tiers),
        Path(out),
        Workloads.load(workloads_file) if workloads_file else None,
        cache=not no_cache,
        workload_column=workload_column,
        **({"quality_target": quality_target} if quality_target is not None else {}),
    )
    click.echo(render_text(found.report))
    click.echo(f"wrote {', '.join(str(path) for path in found.files)}")


@commands.command("score")
@needs(TRAIN)
@click.argument("logs", nargs=-1, required=True, type=click.Path())
@click.option(
    "--model",
    required=True,
    help="Bundle directory, or a registered version models:/NAME@ALIAS (or /V); --engine spark needs the latter.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="decisions.parquet (or .csv / .jsonl).")
@click.option(
    "--engine",
    type=click.Choice(["local", "spark"]),
    default="local",
    show_default=True,
    help="local: the router in this process; spark: the registered MLflow pyfunc as a Spark UDF.",
)
@click.option(
    "--spark-master", metavar="URL", help="Spark master for --engine spark. Default: local[*] (this machine)."
)
@click.option("--skip-invalid", is_flag=True, help="Drop rows that break the attempt-log format instead of stopping.")
@click.option("--tracking-uri", help=f"For models:/ URIs. {TRACKING_HELP}")
def score(
    logs: tuple[str, ...],
    model: str,
    out: str,
    engine: str,
    spark_master: str | None,
    skip_invalid: bool,
    tracking_uri: str | None,
) -> None:
    """Route every request of LOGS and write one decision per request to --out.

    Columns: request_id, tier, model, fallback_chain (tiers joined with ">") and p_<tier>, the P(success) of
    every tier; one row per request, in the order requests first appear in LOGS (attempt logs, as for
    `label`). An alias is resolved once, so every request is scored by the same version.
    """
    import time

    from tierwise.classifier.router import Router
    from tierwise.serving.sources import open_model_source
    from tierwise.training.labels import table_format, write_table
    from tierwise.training.scoring import (
        LOCAL_MASTER,
        check_master,
        pin,
        requests_of,
        score_local,
        score_spark,
        spark_session,
    )
    from tierwise.training.tracking.store import activate

    table_format(out)
    if engine == "spark":
        SPARK.require(f"{click.get_current_context().command_path} --engine spark")
        check_master(spark_master or LOCAL_MASTER)  # before any work: an unreachable cluster fails fast
    elif spark_master:
        raise click.BadParameter("applies to --engine spark only", param_hint="--spark-master")
    scored = pin(open_model_source(model, tracking_uri))
    if engine == "spark" and scored.registered is None:
        raise click.BadParameter("--engine spark scores a registered version: models:/NAME@ALIAS", param_hint="--model")
    router = Router.load(scored.bundle)
    requests = requests_of(read_logs(logs, 1.0, skip_invalid))
    started = time.perf_counter()
    if engine == "spark":
        activate(scored.registered.store)
        with spark_session(spark_master or LOCAL_MASTER) as spark:
            decisions = score_spark(spark, scored.registered.uri, router.ladder.names, requests)
    else:
        decisions = score_local(router, requests)
    elapsed = time.perf_counter() - started
    path = write_table(decisions, Path(out))
    click.echo(
        f"scored {decisions.height:,} requests with {scored.describe()} (version {router.version}) on {engine} "
        f"in {elapsed:.1f}s ({decisions.height / max(elapsed, 1e-9):,.0f}/s); wrote {path}"
    )


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
    from tierwise.training.tracking.compare import compare_versions, render_comparison

    registry = open_registry(tracking_uri)
    log = read_logs(logs, 1.0, False) if logs else None
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
@click.option("--tracking-uri", help=TRACKING_HELP)
def promote(name: str, version: int, tracking_uri: str | None) -> None:
    """Move the `champion` alias of NAME to VERSION (servers following models:/NAME@champion reload it)."""
    from tierwise.training.tracking.promotion import promote as promote_version

    previous = promote_version(
        open_registry(tracking_uri), name, str(version), "promoted by hand (`tierwise promote`)."
    )
    click.echo(f"{name}: champion is now version {version} (was {previous or 'none'})")


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
    from tierwise.training.tracking.retrain import retrain as run_retrain

    if out:
        check_bundle_out(Path(out))  # before any work: refused output directories cost nothing
    registry = open_registry(tracking_uri, create=True)
    decision = run_retrain(
        name,
        read_logs(logs, success_threshold, skip_invalid),
        registry,
        TierLadder.load(tiers),
        train_options(no_cache, options),
        window_days=window_days,
        out=Path(out) if out else None,
        experiment=experiment,
    )
    click.echo(decision.render())


@commands.command("demo")
@needs(TRAIN)
@click.option(
    "--workdir",
    default="tierwise-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the demo writes its logs, labels and models.",
)
@click.option("--requests", default=1500, show_default=True, type=click.IntRange(min=50))
def demo(workdir: str, requests: int) -> None:
    """Run the main job end to end on generated logs: the whole loop, in WORKDIR.

    Sample logs -> labels -> train and register a version (MLflow store WORKDIR/mlflow.db) -> serve the
    champion over gRPC and ask it -> retrain on more logs (promoted only if better; the server follows the
    alias) -> compare the versions on one evaluation set -> audit the workloads (WORKDIR/audit/report.html).
    """
    from tierwise.training.demo import run_demo

    run_demo(Path(workdir), requests)


@commands.command("replay")
@needs(TRAIN)
@log_options
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="NEW_ATTEMPTS.parquet to write.")
@click.option(
    "--grader",
    default="exact",
    show_default=True,
    help="exact (reference column), judge (a Claude model grades), or python:module:function.",
)
@click.option("--budget-usd", type=click.FloatRange(min=0), help="Send nothing that would take spending past this.")
@click.option("--max-requests", type=click.IntRange(min=1), help="Replay only the first N censored requests.")
@click.option("--dry-run", is_flag=True, help="Print replays per tier and the estimated cost; send nothing.")
@click.option("--state", type=click.Path(dir_okay=False), help="State file. Default: <out stem>.replay-state.json.")
@click.option("--judge-model", help="Model for --grader judge. Default: the top tier's model.")
@click.option("--reference-column", help="Reference answer column. Default: reference, else answer.")
@click.option("--response-column", help="Logged answer column the judge compares with. Default: response/output.")
@click.option(
    "--max-tokens", default=1024, show_default=True, type=click.IntRange(min=1), help="Output cap per replay."
)
@click.option("--temperature", type=click.FloatRange(0, 1), help="Sampling temperature. Default: the API's.")
@click.option(
    "--poll-interval", default=60.0, show_default=True, type=click.FloatRange(min=0), help="Seconds between checks."
)
@click.option("--max-retries", default=8, show_default=True, type=click.IntRange(min=0), help="SDK HTTP retries.")
@click.option(
    "--item-retries", default=2, show_default=True, type=click.IntRange(min=0), help="Resends of an errored item."
)
@click.option("--batch-size", default=10_000, show_default=True, type=click.IntRange(1, 100_000), help="Per batch.")
@click.option("--judge-concurrency", default=4, show_default=True, type=click.IntRange(min=1), help="Judge calls.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for batches, or submit and exit.")
@click.option(
    "--timeout", default=600.0, show_default=True, type=click.FloatRange(min=1), help="Seconds per HTTP call."
)
@click.option("--base-url", hidden=True, help="API base URL (tests); ANTHROPIC_BASE_URL works too.")
def replay(
    logs: tuple[str, ...],
    tiers: str | None,
    success_threshold: float,
    skip_invalid: bool,
    out: str,
    state: str | None,
    **options: Any,
) -> None:
    """Fill in censored requests: replay them on the tiers they never tried, via the Message Batches API.

    A request is censored when a tier cheaper than its cheapest success was never tried. Each missing
    (request, tier) goes to the tier's model in a batch (50% of list price), is graded, and becomes a new
    attempt row in --out; the source logs are not touched. Label ORIGINAL and --out together afterwards.
    The API key comes from ANTHROPIC_API_KEY. Rerun the same command to resume after a crash: nothing
    already submitted is sent or billed again.
    """
    from tierwise.classifier.tiers import TierLadder
    from tierwise.training.labels import table_format
    from tierwise.training.replay.batches import ReplayAPIError
    from tierwise.training.replay.run import ReplayConfig, run_replay

    table_format(out)
    config = ReplayConfig(out=Path(out), state=Path(state) if state else None, **options)
    log = read_logs(logs, success_threshold, skip_invalid)
    try:
        run_replay(config, log, TierLadder.load(tiers), echo=click.echo)
    except ReplayAPIError as exc:
        raise click.ClickException(str(exc)) from exc
