"""The `tierwise` command line: one entry point assembling the commands each package owns.

`tierwise.training.cli` owns sample-logs, label, collect, train, predict, eval, audit, score, compare, promote,
retrain, demo and replay;
`tierwise.serving.cli` owns serve and client. A command that meets input it cannot use (`InputError`) ends with its
message on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import click

from tierwise.classifier.errors import InputError
from tierwise.classifier.uris import masked, masked_record
from tierwise.serving.cli import commands as serving_commands
from tierwise.training.cli import commands as training_commands


class InputProblem(click.ClickException):
    """An input error, reported plainly with exit code 2."""

    exit_code = 2


class Tierwise(click.Group):
    """The root group: turns the project's input errors into one-line reports with exit code 2 (any URI in them
    with its credentials masked)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as exc:
            raise InputProblem(masked(str(exc))) from exc


@click.group(cls=Tierwise, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="tierwise")
def main() -> None:
    """tierwise: route each LLM request to the cheapest tier that will answer it acceptably.

    Attempt logs (JSONL, CSV or Parquet; one row per model attempt on a request) go in; labels,
    a trained router bundle, a gRPC service and MLflow-tracked model versions come out.
    """
    # A library's warning with no handler configured (every command but serve and proxy) is masked too.
    if masked_record not in logging.lastResort.filters:
        logging.lastResort.addFilter(masked_record)


for group in (training_commands, serving_commands):
    for command in group.commands.values():
        main.add_command(command)
