"""The `tierwise` command line: one entry point, one subcommand per job.

Each command imports its implementation inside its body, so `tierwise --help` and `tierwise serve`
never pay for the training stack.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from training.cli_options import ManyValuesOption


class InputError(click.ClickException):
    """A problem with what the user gave us (files, flags, data): reported plainly, exit code 2."""

    exit_code = 2


def reports_input_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's input errors (bad logs, ladders, bundles, arguments) into exit code 2 with the message."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from classifier.bundle import BundleError
        from classifier.tiers import TierError
        from training.logs import LogError

        try:
            return command(*args, **kwargs)
        except (LogError, TierError, BundleError, FileNotFoundError, ValueError) as exc:
            raise InputError(str(exc)) from exc

    return wrapper


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
        "--experiment", default="tierwise", show_default=True, help="MLflow experiment for the training runs."
    )(command)
    return click.option(
        "--tracking-uri",
        default=None,
        help="MLflow tracking/registry store. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here.",
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
            type=click.Choice(["auto", "absolute", "relative"]),
            default="auto",
            show_default=True,
            help="absolute: cheapest tier with P >= threshold, else the top; relative: P >= threshold x best P; "
            "auto: whichever has the better validation APGR (recorded in the manifest).",
        ),
        click.option(
            "--quality-floor",
            default=0.95,
            show_default=True,
            type=click.FloatRange(0, 1),
            help="Default threshold = the cheapest one keeping this share of always-top quality on validation.",
        ),
        click.option("--no-cache", is_flag=True, help="Recompute embeddings instead of reusing the on-disk cache."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="tierwise")
def main() -> None:
    """tierwise: route each LLM request to the cheapest tier that will answer it acceptably.

    Attempt logs (JSONL, CSV or Parquet; one row per model attempt on a request) go in; labels,
    a trained router bundle, a gRPC service and MLflow-tracked model versions come out.
    """


@main.command("sample-logs")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory to write into.")
@click.option("--requests", default=1000, show_default=True, type=click.IntRange(min=1), help="Requests to make.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (same seed, same logs).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]), default="jsonl", show_default=True)
@click.option("--tiers", type=click.Path(dir_okay=False), default=None, help="Tier ladder whose models to use.")
@reports_input_errors
def sample_logs(out_dir: str, requests: int, seed: int, fmt: str, tiers: str | None) -> None:
    """Write realistic synthetic attempt logs (several tiers, censored and unsolved requests) for demos and tests."""
    from classifier.tiers import TierLadder
    from training.sample_logs import write_sample_logs

    path = write_sample_logs(out_dir, requests, seed=seed, fmt=fmt, ladder=TierLadder.load(tiers))
    click.echo(f"wrote {path}")


@main.command("label")
@log_options
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="labels.parquet (or .csv / .jsonl).")
@reports_input_errors
def label(logs: tuple[str, ...], tiers: str | None, success_threshold: float, skip_invalid: bool, out: str) -> None:
    """Label each request with the cheapest tier that succeeded, and print what the logs hold.

    LOGS are files or directories of attempt logs. Status is `solved`, `unsolved` (every tier tried, none
    succeeded; labelled with the top tier) or `censored` (a cheaper tier was never tried, so the true
    label is unknown and is not guessed).
    """
    from training.labels import label_logs, summarize, write_table

    log, labels = label_logs(list(logs), tiers, success_threshold, skip_invalid)
    path = write_table(labels.frame, out)
    click.echo(summarize(log, labels).render())
    click.echo(f"wrote {labels.frame.height} labelled requests to {path}")


@main.command("train")
@log_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle directory to write.")
@model_options
@click.option("--register", metavar="NAME", help="Register the model as a new version of NAME in the MLflow registry.")
@tracking_options
@reports_input_errors
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
    from classifier.tiers import TierLadder
    from training.tracking.run_logging import log_training_run
    from training.train import render_report, train_bundle

    result = train_bundle(
        list(logs),
        out,
        ladder=TierLadder.load(tiers),
        success_threshold=success_threshold,
        skip_invalid=skip_invalid,
        cache=not no_cache,
        **options,
    )
    click.echo(render_report(result))
    tracked = log_training_run(result, register=register, experiment=experiment, tracking=tracking_uri)
    click.echo(f"mlflow run {tracked.run_id}")
    if tracked.version:
        click.echo(f"registered {register} version {tracked.version} as {tracked.alias}")


@main.command("predict")
@click.argument("text")
@click.option("--model", required=True, type=click.Path(), help="Bundle directory.")
@click.option("--quality-target", type=click.FloatRange(0, 1), help="Override the bundle's quality threshold.")
@click.option("--allowed-tier", "allowed_tiers", multiple=True, help="Restrict to this tier (repeatable).")
@click.option("--mode", type=click.Choice(["threshold", "cost"]), default="threshold", show_default=True)
@reports_input_errors
def predict(text: str, model: str, quality_target: float | None, allowed_tiers: tuple[str, ...], mode: str) -> None:
    """Print the routing decision for TEXT as JSON: tier, model, per-tier probabilities, fallback chain."""
    import dataclasses
    import json

    from classifier.router import Router

    router = Router.load(model)
    prediction = router.predict(text, quality_target=quality_target, allowed_tiers=allowed_tiers or None, mode=mode)
    click.echo(json.dumps({**dataclasses.asdict(prediction), "model_version": router.version}, indent=2))


@main.command("eval")
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
@click.option("--tracking-uri", help="MLflow store for models:/ URIs. Default: $MLFLOW_TRACKING_URI, else ./mlflow.db.")
@reports_input_errors
def evaluate(model: str, logs: tuple[str, ...], split: str, tiers: str | None, **options: Any) -> None:
    """Score a router against trivial routing on labelled logs: APGR, CPT, cost at quality, calibration.

    Sweeps the router's quality threshold over [0, 1] on the requests of --split whose outcome is known on
    every tier, and compares it on the same requests with always-each-tier, a random mix of cheapest and
    top, a prompt-length heuristic, k-NN over the other rows, and the oracle. --tiers defaults to the
    model's own ladder (give one with the same tier names to re-price). Definitions: docs/evaluation.md.
    """
    from training.evaluation.evaluate import run_eval

    router, report = run_eval(model, logs, tiers=tiers, split=None if split == "all" else split, **options)
    click.echo(f"model {model} (version {router.version}, encoder {router.manifest.encoder.name}), split {split}")
    click.echo(report.table())
    for kind in ("json_out", "plot_out"):
        if options[kind]:
            click.echo(f"wrote {options[kind]}")


@main.command("compare")
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
@click.option("--tracking-uri", help="MLflow store. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here.")
@reports_input_errors
def compare(
    name: str, versions: tuple[int, ...], logs: tuple[str, ...], tiers: str | None, split: str, tracking_uri: str | None
) -> None:
    """Compare registered versions of NAME side by side: metrics, data, encoder, and aliases held.

    Without --logs each version shows the metrics it recorded on its own held-out rows; with --logs all
    versions are re-evaluated on the same rows.
    """
    from training.logs import read_attempts
    from training.tracking.compare import render_comparison, version_rows

    log = read_attempts(list(logs)) if logs else None
    rows = version_rows(name, [str(v) for v in versions], log, tiers, None if split == "all" else split, tracking_uri)
    where = f"re-evaluated on {split} rows of {', '.join(logs)}" if logs else "as recorded at training time"
    click.echo(render_comparison(rows, where))


@main.command("promote")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--tracking-uri", help="MLflow store. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here.")
@reports_input_errors
def promote(name: str, version: int, tracking_uri: str | None) -> None:
    """Move the `champion` alias of NAME to VERSION (servers following models:/NAME@champion reload it)."""
    from training.tracking.registry import promote as promote_version

    previous = promote_version(name, str(version), tracking_uri)
    click.echo(f"{name}: champion is now version {version} (was {previous or 'none'})")


@main.command("retrain")
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
@reports_input_errors
def retrain(
    name: str,
    logs: tuple[str, ...],
    tiers: str | None,
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
    from classifier.tiers import TierLadder
    from training.tracking.retrain import retrain as run_retrain

    decision = run_retrain(
        name,
        list(logs),
        ladder=TierLadder.load(tiers),
        window_days=window_days,
        out=out,
        experiment=experiment,
        tracking=tracking_uri,
        cache=not no_cache,
        **options,
    )
    click.echo(decision.render())


@main.command("demo")
@click.option(
    "--workdir",
    default="tierwise-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the demo writes its logs, labels and models.",
)
@click.option("--requests", default=1500, show_default=True, type=click.IntRange(min=50))
@reports_input_errors
def demo(workdir: str, requests: int) -> None:
    """Run the main job end to end on generated logs: the whole loop, in WORKDIR.

    Sample logs -> labels -> train and register a version (MLflow store WORKDIR/mlflow.db) -> serve the
    champion over gRPC and ask it -> retrain on more logs (promoted only if better; the server follows the
    alias) -> compare the versions on one evaluation set.
    """
    from training.demo import run_demo

    run_demo(workdir, requests)


@main.command("replay")
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
@reports_input_errors
def replay(logs: tuple[str, ...], out: str, state: str | None, **options: Any) -> None:
    """Fill in censored requests: replay them on the tiers they never tried, via the Message Batches API.

    A request is censored when a tier cheaper than its cheapest success was never tried. Each missing
    (request, tier) goes to the tier's model in a batch (50% of list price), is graded, and becomes a new
    attempt row in --out; the source logs are not touched. Label ORIGINAL and --out together afterwards.
    The API key comes from ANTHROPIC_API_KEY. Rerun the same command to resume after a crash: nothing
    already submitted is sent or billed again.
    """
    from pathlib import Path

    from training.replay.batches import ReplayAPIError
    from training.replay.run import ReplayConfig, run_replay

    config = ReplayConfig(logs=list(logs), out=Path(out), state=Path(state) if state else None, **options)
    try:
        run_replay(config, echo=click.echo)
    except ReplayAPIError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("serve")
@click.option(
    "--model",
    required=True,
    help="Bundle directory, or models:/NAME@ALIAS from the MLflow registry; reloaded when it changes "
    "(files, or the alias moving; polled every --reload-interval) or on SIGHUP.",
)
@click.option("--tracking-uri", help="MLflow store for models:/ URIs. Default: $MLFLOW_TRACKING_URI, else ./mlflow.db.")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on (gRPC and metrics).")
@click.option("--port", default=50051, show_default=True, type=click.IntRange(0, 65535), help="gRPC port; 0 = any.")
@click.option("--metrics-port", default=9464, show_default=True, type=click.IntRange(0, 65535), help="0 = any.")
@click.option("--no-metrics", is_flag=True, help="Do not expose Prometheus metrics over HTTP.")
@click.option(
    "--server-mode",
    type=click.Choice(["sync", "aio"]),
    help="grpcio server kind. Default: the fastest measured (docs/benchmarks.md): aio for one process, sync "
    "(a thread pool) with --workers.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Threads of the sync server (default 4); an open PredictStream holds one: many streams, use aio.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Server processes sharing the port (SO_REUSEPORT), each with its own copy of the model: one per CPU "
    "core for throughput (a process runs its handlers under one GIL). Metrics gain a `worker` label.",
)
@click.option("--reload-interval", default=2.0, show_default=True, type=click.FloatRange(min=0), help="0: SIGHUP only.")
@click.option("--max-prompt-bytes", default=1 << 20, show_default=True, type=click.IntRange(min=1))
@click.option("--max-batch", default=1024, show_default=True, type=click.IntRange(min=1), help="PredictBatch items.")
@click.option("--grace", default=10.0, show_default=True, type=click.FloatRange(min=0), help="Drain seconds on stop.")
@click.option(
    "--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate chain (with --tls-key)."
)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key (with --tls-cert).")
@click.option("--auth-token-file", type=click.Path(exists=True, dir_okay=False), help="Require this bearer token.")
@click.option("--decision-log", type=click.Path(dir_okay=False), help="Append every decision to this JSONL file.")
@reports_input_errors
def serve(no_metrics: bool, tracking_uri: str | None, **options: Any) -> None:
    """Serve a router bundle over gRPC (tierwise.v1.Router, health, reflection) until SIGTERM.

    A new bundle (SIGHUP, or its files change) is verified before it replaces the serving one; a bundle
    that fails is refused and the old one keeps serving. SIGTERM drains in-flight calls, then exits 0.
    """
    import dataclasses
    import os

    from serving.server import ServeConfig, serve

    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    config = ServeConfig(**{key: value for key, value in options.items() if value is not None})
    serve(dataclasses.replace(config, metrics_port=None) if no_metrics else config)


@main.group("client")
def client() -> None:
    """Talk to a running `tierwise serve`."""


@client.command("predict")
@click.argument("text")
@click.option("--target", default="localhost:50051", show_default=True, help="host:port of the server.")
@click.option("--quality-target", type=click.FloatRange(0, 1), help="Override the model's quality threshold.")
@click.option("--allowed-tier", "allowed_tiers", multiple=True, help="Restrict to this tier (repeatable).")
@click.option("--mode", type=click.Choice(["threshold", "cost"]), default="threshold", show_default=True)
@click.option(
    "--latency-band", type=click.Choice(["INTERACTIVE", "TOLERANT", "ASYNC"]), default="INTERACTIVE", show_default=True
)
@click.option("--request-id", default="", help="Echoed back and written to the server's decision log.")
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(min=0), help="Deadline in seconds.")
@click.option("--ca-cert", type=click.Path(exists=True, dir_okay=False), help="Use TLS, trusting this PEM CA.")
@click.option("--auth-token-file", type=click.Path(exists=True, dir_okay=False), help="Send this bearer token.")
@reports_input_errors
def client_predict(text: str, target: str, timeout: float, ca_cert: str | None, auth_token_file: str | None, **request):
    """Ask the server which tier TEXT needs; prints the response as JSON."""
    import json

    import grpc

    from serving.client import predict_once, predict_request

    try:
        response = predict_once(
            target, predict_request(text, **request), timeout_s=timeout, ca_cert=ca_cert, token_file=auth_token_file
        )
    except grpc.RpcError as exc:
        raise InputError(f"{exc.code().name}: {exc.details()}") from exc
    click.echo(json.dumps(response, indent=2))


if __name__ == "__main__":
    sys.exit(main())
