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


class InputError(click.ClickException):
    """A problem with what the user gave us (files, flags, data): reported plainly, exit code 2."""

    exit_code = 2


def reports_input_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's input errors (bad logs, ladders, bundles, arguments) into exit code 2 with the message."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from classifier.tiers import TierError
        from training.logs import LogError

        try:
            return command(*args, **kwargs)
        except (LogError, TierError, FileNotFoundError, ValueError) as exc:
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
    """Run the main job end to end on generated logs: sample logs, labels, and their summary."""
    from training.demo import run_demo

    run_demo(workdir, requests)


if __name__ == "__main__":
    sys.exit(main())
