"""Small builders the tests share: hand-made attempt logs in every supported format, and server runs."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from serving.process import SERVE

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


def run_serve(args: Sequence[str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `tierwise serve` until it exits, capturing its output: for starts that must fail."""
    return subprocess.run([*SERVE, *args], capture_output=True, text=True, timeout=timeout_s)


@contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port something already listens on, for as long as the block runs."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]
