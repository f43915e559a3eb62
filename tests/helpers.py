"""Small builders the tests share: hand-made attempt logs in every supported format, and server runs."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from classifier.tiers import TierLadder
from serving.process import SERVE
from training.labels import Labels, label_requests
from training.logs import AttemptLog, read_attempts
from training.train import TrainOptions, TrainResult, train_bundle

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


def closed_port() -> int:
    """A loopback port nothing listens on (a server that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def label_files(
    paths: Sequence[str | Path], tiers: str | Path | None = None, **read: object
) -> tuple[AttemptLog, Labels]:
    """Read attempt log files and label them with a ladder file (default: the shipped Claude ladder)."""
    log = read_attempts(paths, **read)
    return log, label_requests(log, TierLadder.load(tiers))


def train_files(paths: Sequence[str | Path], out: Path, **options: object) -> TrainResult:
    """Train a bundle on attempt log files with the shipped ladder and these TrainOptions."""
    return train_bundle(read_attempts(paths), out, TierLadder.load(), TrainOptions(**options))
