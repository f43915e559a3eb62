"""Labelled requests as traffic with known outcomes (`tierwise.serving.simulate`), for closing the loop in tests and
benchmarks: each tier's outcome and cost come from the labels (tiers never tried are left unknown)."""

from __future__ import annotations

import polars as pl

from tierwise.serving.simulate import KnownRequest
from tierwise.training.data.labels import Labels


def known_requests(labels: Labels, frame: pl.DataFrame | None = None) -> list[KnownRequest]:
    """One KnownRequest per labelled request (of `frame`, a subset of the labels' frame, when given)."""
    names = labels.ladder.names
    rows = (labels.frame if frame is None else frame).select(
        "request_id", "prompt", *(f"success_{n}" for n in names), *(f"cost_{n}" for n in names)
    )
    requests = []
    for row in rows.iter_rows(named=True):
        success = {n: bool(row[f"success_{n}"]) for n in names if row[f"success_{n}"] is not None}
        cost = {n: float(row[f"cost_{n}"]) for n in names if row[f"cost_{n}"] is not None}
        requests.append(KnownRequest(str(row["request_id"]), row["prompt"], success, cost))
    return requests
