"""The data commands: `sample-logs`, `label` and `collect` (attempt logs in, labelled requests or attempt rows out).

Each command turns its strings into objects and hands them to the library; its body imports the implementation,
so `tierwise --help` stays light."""

from __future__ import annotations

from pathlib import Path

import click
from tierwise.training.extras import TRAIN
from tierwise.training.options import log_options, needs


@click.group()
def commands() -> None:
    """The data commands (assembled into `tierwise` by `tierwise.cli`)."""


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
    from tierwise.training.data.sample_logs import write_sample_logs

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
    from tierwise.training.data.labels import label_requests, summarize, table_format, write_table
    from tierwise.training.data.logs import read_attempts

    table_format(out)
    log = read_attempts(logs, success_threshold, skip_invalid)
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
    from tierwise.training.data.collect import Prompts
    from tierwise.training.data.collect import collect as run_collect

    prompts = Prompts.read(prompt_files, skip_invalid) if prompt_files else None
    summary = run_collect(logs, Path(out), TierLadder.load(tiers), prompts, skip_invalid)
    click.echo(summary.render())
    click.echo(f"wrote {summary.matched} attempt rows to {out}")
