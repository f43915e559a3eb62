"""Labelling throughput on a generated 1M-row attempt log: prints attempts/s for read, label and both.

Run: python benchmarks/label_throughput.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from tierwise.classifier.tiers import TierLadder
from tierwise.training.data.labels import label_requests
from tierwise.training.data.logs import read_attempts


def make_log(rows: int, path: Path, seed: int = 0) -> None:
    """A large attempt log with the default ladder's models, three attempts per request on average."""
    rng = np.random.default_rng(seed)
    models = [t.model for t in TierLadder.load().tiers]
    requests = rows // 3
    request_index = rng.integers(0, requests, rows)
    pl.DataFrame(
        {
            "request_id": [f"r{i}" for i in request_index],
            "prompt": [f"prompt number {i} about something" for i in request_index],
            "model": np.array(models)[rng.integers(0, len(models), rows)],
            "success": rng.random(rows) < 0.6,
            "input_tokens": rng.integers(10, 2000, rows),
            "output_tokens": rng.integers(10, 800, rows),
            "split": np.where(rng.random(rows) < 0.8, "train", "test"),
        }
    ).write_parquet(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ladder = TierLadder.load()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "attempts.parquet"
        make_log(args.rows, path)
        reads, labels = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            log = read_attempts([path])
            middle = time.perf_counter()
            label_requests(log, ladder)
            reads.append(middle - start)
            labels.append(time.perf_counter() - middle)
    totals = [r + lab for r, lab in zip(reads, labels, strict=True)]
    print(f"{args.rows:,} attempts, median of {args.repeats} runs")
    print(f"{'stage':<18}{'median s':>10}{'attempts/s':>16}")
    for name, times in (("read + validate", reads), ("label", labels), ("total", totals)):
        median = statistics.median(times)
        print(f"{name:<18}{median:>10.3f}{args.rows / median:>16,.0f}")


if __name__ == "__main__":
    main()
