"""The `tierwise` command line: one entry point assembling the commands each package owns.

Each package owns its click group (`tierwise.training.data.cli`: sample-logs, label, collect;
`tierwise.training.evaluation.cli`: eval, score; `tierwise.training.audit.cli`: audit; `tierwise.training.replay.cli`:
replay; `tierwise.training.tracking.cli`: train, retrain, compare, promote; `tierwise.serving.cli`: predict, serve,
client, proxy, stand-in); `demo`, which runs both sides, is `tierwise.demo`. A command that meets input it cannot
use (`InputError`) ends with its message on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import click

from tierwise.classifier.errors import InputError
from tierwise.classifier.uris import masked, masked_record
from tierwise.demo import demo
from tierwise.serving.cli import commands as serving_commands
from tierwise.training.audit.cli import commands as audit_commands
from tierwise.training.data.cli import commands as data_commands
from tierwise.training.evaluation.cli import commands as evaluation_commands
from tierwise.training.replay.cli import commands as replay_commands
from tierwise.training.tracking.cli import commands as tracking_commands


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


GROUPS = (data_commands, evaluation_commands, audit_commands, replay_commands, tracking_commands, serving_commands)
for group in GROUPS:
    for command in group.commands.values():
        main.add_command(command)
main.add_command(demo)
