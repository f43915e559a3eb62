"""`tierwise replay`: censored requests filled in through the Message Batches API.

The command's body imports the implementation, so `tierwise --help` stays light."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from tierwise.training.extras import TRAIN
from tierwise.training.options import log_options, needs
from tierwise.training.replay.graders import GRADERS, PYTHON_GRADER


@click.group()
def commands() -> None:
    """The replay command (assembled into `tierwise` by `tierwise.cli`)."""


@commands.command("replay")
@needs(TRAIN)
@log_options
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="NEW_ATTEMPTS.parquet to write.")
@click.option(
    "--grader",
    default="exact",
    show_default=True,
    help=", ".join(f"{name} ({grader.ABOUT})" for name, grader in GRADERS.items())
    + f", or {PYTHON_GRADER}module:function (a function of yours).",
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
    from tierwise.training.data.labels import table_format
    from tierwise.training.data.logs import read_attempts
    from tierwise.training.replay.batches import ReplayAPIError
    from tierwise.training.replay.run import ReplayConfig, run_replay

    table_format(out)
    config = ReplayConfig(out=Path(out), state=Path(state) if state else None, **options)
    log = read_attempts(logs, success_threshold, skip_invalid)
    try:
        run_replay(config, log, TierLadder.load(tiers), echo=click.echo)
    except ReplayAPIError as exc:
        raise click.ClickException(str(exc)) from exc
