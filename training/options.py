"""The command-line pieces the training command groups share: the options every group spells the same way, the
extra check, and the option kinds click lacks. Each group's own options live in its `cli.py`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click
from tierwise.classifier.extras import Extra
from tierwise.registry.store import TRACKING_HELP


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


def log_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that reads attempt logs shares (`tierwise.training.data.logs.read_attempts`)."""
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


def tracking_uri_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--tracking-uri`: the MLflow store of a command that records runs or reads `models:/` URIs."""
    return click.option("--tracking-uri", default=None, help=TRACKING_HELP)(command)


class ManyValuesOption(click.Option):
    """A repeatable option that also takes every value after it up to the next option.

    `--versions 3 5 7` and `--versions 3 --versions 5 --versions 7` both give (3, 5, 7), as MLflow-style
    CLIs expect; click alone only supports the second spelling.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["multiple"] = True
        super().__init__(*args, **kwargs)

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            option = parser._long_opt.get(name) or parser._short_opt.get(name)
            if option is None:
                continue
            take_one = option.process

            def take_many(value: Any, state: Any, take_one: Any = take_one) -> None:
                take_one(value, state)
                while state.rargs and not state.rargs[0].startswith("-"):
                    take_one(state.rargs.pop(0), state)

            option.process = take_many
