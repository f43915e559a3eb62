"""Small builders the tests share: hand-made attempt logs in every supported format."""

from __future__ import annotations

from pathlib import Path

import polars as pl

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_rows(rows: list[dict], path: Path) -> Path:
    """Write attempt rows to `path` in the format its extension names."""
    frame = pl.DataFrame(rows)
    if path.suffix == ".jsonl":
        frame.write_ndjson(path)
    elif path.suffix == ".csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    return path
