"""An optional part of tierwise (an extra of the distribution) and the check a command makes before it starts.

A command looks the extra's modules up without importing them, so a missing extra is one line naming the install
command instead of an ImportError from deep inside. The extras themselves are declared next to the commands that
need them: `tierwise.training.extras` (train, spark), `tierwise.serving.cli` (anthropic).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from .errors import InputError


class MissingExtra(InputError):
    """A command needs an optional part of tierwise that is not installed."""


@dataclass(frozen=True)
class Extra:
    """An optional dependency group of the `tierwise` distribution (pyproject.toml) and the modules it brings."""

    name: str
    purpose: str
    modules: tuple[str, ...]

    def missing(self) -> list[str]:
        """The extra's modules that cannot be imported here."""
        return [module for module in self.modules if importlib.util.find_spec(module) is None]

    def require(self, command: str) -> None:
        """Raise MissingExtra, naming the command and the install line, unless the extra is installed."""
        if self.missing():
            raise MissingExtra(f"{command} needs the {self.purpose} extra: pip install '.[{self.name}]' from a clone")
