"""The evaluation commands: `eval` (a router against trivial routing on labelled logs) and `score` (one decision per
request, by the router here or the registered pyfunc on Spark).

Each command turns its strings into objects and hands them to the library; its body imports the implementation,
so `tierwise --help` stays light."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from tierwise.classifier.request import BANDS
from tierwise.training.extras import SPARK, TRAIN
from tierwise.training.options import log_options, needs, tracking_uri_option

if TYPE_CHECKING:
    from tierwise.classifier.router import Router


@click.group()
def commands() -> None:
    """The evaluation commands (assembled into `tierwise` by `tierwise.cli`)."""


def load_router(model: str, tracking_uri: str | None) -> Router:
    """The router a --model argument names (bundle directory or models:/ URI), as it would serve now."""
    from tierwise.classifier.router import Router
    from tierwise.registry.sources import open_model_source

    return Router.load(open_model_source(model, tracking_uri).resolve().path)


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
@tracking_uri_option
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
    from tierwise.training.data.logs import read_attempts
    from tierwise.training.evaluation.evaluate import run_eval
    from tierwise.training.evaluation.table import render_table
    from tierwise.training.evaluation.traffic_eval import run_traffic_eval

    if band is None and (max_latency_ms, value_of_time_usd_per_s, time_plot_out) != (None, None, None):
        raise click.UsageError("--max-latency-ms, --value-of-time-usd-per-s and --time-plot need --band")
    router = load_router(model, tracking_uri)
    log = read_attempts(logs, success_threshold, skip_invalid)
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
@tracking_uri_option
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
    from tierwise.registry.sources import open_model_source
    from tierwise.registry.store import activate
    from tierwise.training.data.labels import table_format, write_table
    from tierwise.training.data.logs import read_attempts
    from tierwise.training.evaluation.scoring import (
        LOCAL_MASTER,
        check_master,
        pin,
        requests_of,
        score_local,
        score_spark,
        spark_session,
    )

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
    requests = requests_of(read_attempts(logs, 1.0, skip_invalid))
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
