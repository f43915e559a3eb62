"""Logs larger than memory: wall time and peak RSS of `tierwise label` and `tierwise train` on generated logs.

The log is generated straight to Parquet, one chunk of requests at a time (never whole in memory): prompts of
English words from the static encoder's vocabulary, lengths like the shared datasets' (median ~480 characters,
a long tail), 15% of requests asking one of a pool of popular prompts (so distinct prompts < requests), and
about 3.4 attempts per request: most requests tried on every tier, the rest escalated cheapest-first, with
retries and attempts by a model outside the ladder. Whether an attempt succeeds depends on the prompt's topic
words and the tier, so the heads have something to learn.

Each command runs as a child process with one BLAS thread, a cold embedding cache and its own MLflow store;
its peak RSS is the kernel's count for that process alone (`tests.peak_memory`).

Run from the repository root:
    python -m benchmarks.big_logs [--label-attempts 1000000 20000000] [--train-attempts 1000000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from tierwise.classifier.tiers import TierLadder
from tierwise.training.embedding.encoders import static_model_dir

from tests.peak_memory import Measured, run_measured

REQUESTS_PER_CHUNK = 50_000
MEAN_ATTEMPTS = 3.35  # per request, as `_attempts` makes them
# The held-out share of the `holdout` column, for training runs on logs too large to hold out 20% (`split`): the
# held-out evaluation's k-NN baseline costs held-out x training requests.
HOLDOUT_SHARE = 0.01
POPULAR_PROMPTS = 20_000
POPULAR_SHARE = 0.15
TOPIC_WORDS = 300  # per difficulty level
LEVELS = 4
OUTSIDE_MODEL = "gpt-4o-mini"


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64 of uint64 values: a deterministic hash, so a prompt's words follow from its id alone."""
    z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniform(values: np.ndarray, salt: int) -> np.ndarray:
    return (_mix(values * np.uint64(1_000_003) + np.uint64(salt)) >> np.uint64(11)).astype(np.float64) / 2.0**53


@dataclass
class Vocabulary:
    """Common words (Zipf-like draws) and, per difficulty level, topic words that make a prompt easy or hard."""

    common: pl.Series
    topics: list[pl.Series]

    @classmethod
    def load(cls) -> Vocabulary:
        vocab = json.loads((static_model_dir() / "tokenizer.json").read_text())["model"]["vocab"]
        words = [w for w in vocab if w.isalpha() and w.isascii() and len(w) > 1]
        topic_words = words[2000 : 2000 + TOPIC_WORDS * LEVELS]
        topics = [pl.Series(topic_words[k * TOPIC_WORDS : (k + 1) * TOPIC_WORDS]) for k in range(LEVELS)]
        return cls(common=pl.Series(words), topics=topics)

    def prompts(self, text_ids: np.ndarray) -> tuple[pl.Series, np.ndarray]:
        """The prompt of each text id and its difficulty level (0 easy .. LEVELS-1 hard)."""
        level = np.minimum((_uniform(text_ids, 1) * LEVELS).astype(np.int64), LEVELS - 1)
        chars = np.exp(
            np.log(480.0)
            + 0.75 * np.sqrt(-2 * np.log(_uniform(text_ids, 2) + 1e-12)) * np.cos(2 * np.pi * _uniform(text_ids, 3))
        )
        words = np.clip((chars / 6.5).astype(np.int64), 6, 900)
        owner = np.repeat(np.arange(len(text_ids)), words)
        position = np.arange(len(owner)) - np.repeat(np.cumsum(words) - words, words)
        keys = text_ids[owner].astype(np.uint64) * np.uint64(4096) + position.astype(np.uint64)
        draw = _uniform(keys, 4)
        common = (np.exp(draw * np.log(len(self.common))) - 1).astype(np.int64)
        topical = _uniform(keys, 5) < 0.12
        topic_index = (_uniform(keys, 6) * TOPIC_WORDS).astype(np.int64)
        flat = self.common.gather(common).to_numpy().astype(object)
        owner_level = level[owner]
        for k in range(LEVELS):
            chosen = topical & (owner_level == k)
            flat[chosen] = self.topics[k].gather(topic_index[chosen]).to_numpy()
        frame = pl.DataFrame({"owner": owner, "word": pl.Series(flat, dtype=pl.String)})
        texts = frame.group_by("owner", maintain_order=True).agg(pl.col("word").str.join(" "))["word"]
        return texts, level


def _attempts(rng: np.random.Generator, chance: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each attempt's request, tier (-1: a model outside the ladder) and success, for requests whose tiers succeed
    with these chances: 70% tried on every tier, the rest escalated cheapest-first; 15% of attempts retried; a
    third of requests also tried on an outside model."""
    requests, tiers = chance.shape
    succeeds = rng.random((requests, tiers)) < chance
    every_tier = rng.random(requests) < 0.7
    tried = np.ones((requests, tiers), dtype=bool)
    for k in range(1, tiers):
        tried[:, k] = every_tier | (tried[:, k - 1] & ~succeeds[:, k - 1])
    first_request, first_tier = np.nonzero(tried)
    retry_request, retry_tier = np.nonzero(tried & (rng.random((requests, tiers)) < 0.15))
    outside = np.nonzero(rng.random(requests) < 0.35)[0]
    request = np.concatenate([first_request, retry_request, outside])
    tier = np.concatenate([first_tier, retry_tier, np.full(len(outside), -1)])
    success = np.concatenate(
        [
            succeeds[first_request, first_tier],
            rng.random(len(retry_request)) < chance[retry_request, retry_tier],
            rng.random(len(outside)) < 0.5,
        ]
    )
    return request, tier, success


def _chunk(vocabulary: Vocabulary, models: list[str], first: int, count: int, rng: np.random.Generator) -> pl.DataFrame:
    """The attempt rows of `count` requests from `first` on, shuffled (a request's attempts interleave with
    others'), with each row's prompt id in `_text`."""
    index = np.arange(first, first + count, dtype=np.uint64)
    popular = _uniform(index, 7) < POPULAR_SHARE
    text_ids = np.where(popular, (_uniform(index, 8) * POPULAR_PROMPTS).astype(np.uint64), index + POPULAR_PROMPTS)
    prompts, level = vocabulary.prompts(text_ids)
    # P(success) per tier falls with the topic's difficulty and rises with the tier.
    chance = 1 / (1 + np.exp(-(1.8 * np.arange(len(models))[None, :] - 1.6 * level[:, None] + 1.2)))
    request, tier, success = _attempts(rng, chance)
    rows = len(request)
    output_tokens = rng.integers(20, 900, rows)
    frame = pl.DataFrame(
        {
            "request_id": pl.Series(index[request]).cast(pl.String).str.pad_start(10, "0").str.pad_start(11, "r"),
            "prompt": prompts.gather(request),
            "model": np.array([OUTSIDE_MODEL, *models])[tier + 1],
            "success": success,
            "input_tokens": (prompts.str.len_chars().to_numpy()[request] / 4).astype(np.int64),
            "output_tokens": output_tokens,
            "latency_ms": 400.0 + output_tokens * (8.0 + 6.0 * np.maximum(tier, 0)) * rng.lognormal(0, 0.2, rows),
            "split": np.where(_uniform(index, 9) < 0.8, "train", "test")[request],
            "holdout": np.where(_uniform(index, 10) < HOLDOUT_SHARE, "test", "train")[request],
            "category": np.array(["easy", "medium", "hard", "expert"])[level][request],
            "_text": text_ids[request],
        }
    )
    return frame[rng.permutation(rows)]


def write_big_log(path: Path, attempts: int, seed: int = 0) -> dict[str, int]:
    """Write a generated attempt log of exactly `attempts` rows to one Parquet file, a chunk of requests at a time;
    returns its counts of attempts, requests and distinct prompts."""
    vocabulary = Vocabulary.load()
    models = [tier.model for tier in TierLadder.load().tiers]
    rng = np.random.default_rng(seed)
    written = requests = first = 0
    texts: set[int] = set()
    writer: pq.ParquetWriter | None = None
    try:
        while written < attempts:
            # The last chunk is sized to what is left, so few of its requests lose attempts to the cut.
            count = min(REQUESTS_PER_CHUNK, int((attempts - written) / MEAN_ATTEMPTS) + 100)
            chunk = _chunk(vocabulary, models, first, count, rng).head(attempts - written)
            first += count
            written += chunk.height
            requests += chunk["request_id"].n_unique()
            texts.update(chunk["_text"].unique().to_list())
            table = chunk.drop("_text").to_arrow()
            writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=131_072)
    finally:
        if writer is not None:
            writer.close()
    return {"attempts": written, "requests": requests, "prompts": len(texts)}


@dataclass(frozen=True)
class Run:
    """One command's wall time, peak resident memory (its own, from the kernel's accounting) and output."""

    command: str
    attempts: int
    measured: Measured

    def stages(self) -> str:
        """The `time:` line `tierwise train` prints (label, embed, fit, export), when there is one."""
        found = re.search(r"^time: (.*)$", self.measured.output, re.MULTILINE)
        return found.group(1) if found else ""


def measure(command: str, attempts: int, args: list[str], env: dict[str, str], cwd: Path) -> Run:
    """Run `tierwise <args>` as a child and measure its wall time and peak RSS."""
    measured = run_measured([sys.executable, "-m", "tierwise", *args], env=env, cwd=cwd)
    if measured.returncode != 0:
        raise SystemExit(f"tierwise {' '.join(args)} failed ({measured.returncode}):\n{measured.output[-3000:]}")
    print(f"{command} {attempts:,}: {measured.wall_s:.0f} s, {measured.peak_rss_mb / 1024:.2f} GiB", flush=True)
    return Run(command, attempts, measured)


def child_env(work: Path) -> dict[str, str]:
    """One BLAS thread, and a cache of its own (the distilled static encoder copied in): embeddings start cold."""
    cache = work / "cache"
    shutil.copytree(static_model_dir(), cache / static_model_dir().name, dirs_exist_ok=True)
    root = Path(__file__).resolve().parents[1]
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "TIERWISE_CACHE_DIR": str(cache),
        "PYTHONPATH": str(root),
    }


def table(runs: list[Run], sizes: dict[int, dict[str, int]]) -> str:
    lines = [
        "| command | attempts | requests | wall | peak RSS | train stages |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        requests = sizes[run.attempts]["requests"]
        lines.append(
            f"| `tierwise {run.command}` | {run.attempts:,} | {requests:,} | {run.measured.wall_s:,.0f} s "
            f"| {run.measured.peak_rss_mb / 1024:.2f} GiB | {run.stages()} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label-attempts", type=int, nargs="*", default=[1_000_000, 20_000_000])
    parser.add_argument("--train-attempts", type=int, nargs="*", default=[1_000_000])
    parser.add_argument(
        "--big-train-attempts",
        type=int,
        nargs="*",
        default=[],
        help="Also train on these, holding out the 1%% `holdout` column marks instead of the 20%% `split` does.",
    )
    parser.add_argument("--work", type=Path, help="Directory for the logs and outputs (default: a temporary one).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        env = child_env(work)
        sizes: dict[int, dict[str, int]] = {}
        logs: dict[int, Path] = {}
        for attempts in sorted({*args.label_attempts, *args.train_attempts, *args.big_train_attempts}):
            logs[attempts] = work / f"attempts-{attempts}.parquet"
            started = time.perf_counter()
            sizes[attempts] = write_big_log(logs[attempts], attempts)
            print(
                f"generated {attempts:,} attempts ({sizes[attempts]['requests']:,} requests, "
                f"{sizes[attempts]['prompts']:,} distinct prompts, {logs[attempts].stat().st_size / 1e9:.1f} GB "
                f"Parquet) in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
        runs = []
        for attempts in args.label_attempts:
            out = work / f"labels-{attempts}.parquet"
            runs.append(measure("label", attempts, ["label", str(logs[attempts]), "--out", str(out)], env, work))
        trainings = [(n, "split") for n in args.train_attempts] + [(n, "holdout") for n in args.big_train_attempts]
        for attempts, split in trainings:
            bundle = work / f"bundle-{attempts}-{split}"
            store = f"sqlite:///{work / 'mlflow.db'}"
            command = ["train", str(logs[attempts]), "--out", str(bundle), "--tracking-uri", store]
            runs.append(
                measure(f"train --split-column {split}", attempts, [*command, "--split-column", split], env, work)
            )
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    print(table(runs, sizes))


if __name__ == "__main__":
    main()
