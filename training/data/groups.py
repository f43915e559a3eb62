"""Requests grouped by a per-request column (a workload, a category): the one grouping `tierwise audit`,
`tierwise eval --by` and the training manifest share. Requests without a value form the group `NONE`."""

from __future__ import annotations

import polars as pl
from tierwise.training.data.logs import LogError

NONE = "(none)"
OTHER = "(other)"


def group_keys(frame: pl.DataFrame, column: str) -> pl.Series:
    """Each request's group: the column's value as text, `NONE` where it has none (every request, without the
    column)."""
    if column not in frame.columns:
        return pl.Series(column, [NONE] * frame.height, dtype=pl.String)
    return frame[column].cast(pl.String).fill_null(NONE).alias(column)


def group_sizes(frame: pl.DataFrame, column: str, most: int) -> dict[str, int]:
    """Requests per group; past the `most` largest (ties by name), the rest counted together as `OTHER`."""
    sizes = group_keys(frame, column).value_counts(name="requests").sort(["requests", column], descending=[True, False])
    counted = dict(sizes.head(most).iter_rows())
    rest = int(sizes["requests"].slice(most).sum())
    return counted | ({OTHER: rest} if rest else {})


def require_column(frame: pl.DataFrame, column: str) -> None:
    """Refuse grouping by a column the labelled requests do not have, naming the ones they do."""
    if column not in frame.columns:
        given = [c for c in frame.columns if not c.startswith(("success_", "cost_", "latency_"))]
        raise LogError(f"the logs have no {column!r} column to group by (their requests have: {', '.join(given)})")
