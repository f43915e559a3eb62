"""`tierwise audit`: where each workload's spend goes, and what each lever would save on it.

The command's body imports the implementation, so `tierwise --help` stays light."""

from __future__ import annotations

from pathlib import Path

import click
from tierwise.training.extras import TRAIN
from tierwise.training.options import log_options, needs


@click.group()
def commands() -> None:
    """The audit command (assembled into `tierwise` by `tierwise.cli`)."""


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
    from tierwise.training.data.logs import read_attempts

    found = run_audit(
        read_attempts(logs, success_threshold, skip_invalid),
        TierLadder.load(tiers),
        Path(out),
        Workloads.load(workloads_file) if workloads_file else None,
        cache=not no_cache,
        workload_column=workload_column,
        **({"quality_target": quality_target} if quality_target is not None else {}),
    )
    click.echo(render_text(found.report))
    click.echo(f"wrote {', '.join(str(path) for path in found.files)}")
