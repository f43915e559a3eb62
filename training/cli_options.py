"""Click option kinds the tierwise commands need beyond click's own."""

from __future__ import annotations

from typing import Any

import click


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
