"""The README's main job: the whole tierwise loop on generated logs, one step after another."""

from __future__ import annotations

from pathlib import Path

import click

from training.labels import label_logs, summarize, write_table
from training.sample_logs import write_sample_logs


def _step(title: str) -> None:
    click.secho(f"\n== {title}", bold=True)


def run_demo(workdir: str | Path, requests: int) -> None:
    """Generate logs, label them and print the summary, so a newcomer sees every stage work."""
    work = Path(workdir)
    _step(f"sample logs: {requests} requests")
    logs = write_sample_logs(work / "logs", requests, seed=1)
    click.echo(f"wrote {logs}")

    _step("labels: cheapest successful tier per request")
    log, labels = label_logs([str(logs)])
    labels_path = write_table(labels.frame, work / "labels.parquet")
    click.echo(summarize(log, labels).render())
    click.echo(f"wrote {labels_path}")
