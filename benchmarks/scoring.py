"""Batch scoring throughput: `tierwise score`'s two engines on generated prompts, with their decisions compared.

Trains a small static-encoder router on generated logs and registers it in a temporary SQLite store, makes N
distinct prompts (sample-log requests with random ticket context, so the tokenizer's cache does not flatter),
writes them as an attempt log (Parquet) and times what `tierwise score` does: reading the log into one row per
request, the local engine (the router in this process), starting a Spark session, and the spark engine (the
registered pyfunc as a Spark UDF). The two decision tables are then compared row by row: tier, model and chain
must be equal, probabilities within 1e-6.

Run: python benchmarks/scoring.py [--requests 1000000] [--spark-master 'local[*]']
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from tierwise.classifier.tiers import TierLadder
from tierwise.registry.models import Registry
from tierwise.registry.store import activate
from tierwise.training.data.logs import read_attempts
from tierwise.training.data.sample_logs import generate_attempts, write_sample_logs
from tierwise.training.evaluation.scoring import LOCAL_MASTER, requests_of, score_local, score_spark, spark_session
from tierwise.training.fit.train import TrainOptions, train_bundle
from tierwise.training.tracking.promotion import register_trained

NAME = "scoring-benchmark"
WORDS = (
    "invoice",
    "order",
    "account",
    "refund",
    "delivery",
    "contract",
    "report",
    "meeting",
    "budget",
    "server",
    "latency",
    "customer",
    "ticket",
    "schedule",
    "policy",
    "release",
    "migration",
    "forecast",
    "audit",
    "backlog",
    "warehouse",
    "supplier",
    "payroll",
    "roadmap",
)
TOLERANCE = 1e-6


def make_prompts(count: int, seed: int = 0) -> pl.DataFrame:
    """`count` distinct prompts: a generated request plus a random ticket number and context words."""
    rng = np.random.default_rng(seed)
    bases = generate_attempts(2000, seed=seed)["prompt"].unique().to_list()
    picks = rng.integers(len(bases), size=count)
    context = rng.integers(len(WORDS), size=(count, 6))
    prompts = [
        f"{bases[b]} (ticket {i}: {' '.join(WORDS[w] for w in row)})"
        for i, (b, row) in enumerate(zip(picks, context, strict=True))
    ]
    return pl.DataFrame(
        {
            "request_id": [f"req-{i:07d}" for i in range(count)],
            "prompt": prompts,
            "model": "claude-haiku-4-5",
            "success": True,
        }
    )


def timed(action):
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--spark-master", default=LOCAL_MASTER)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tierwise-scoring-") as scratch:
        work = Path(scratch)
        store = f"sqlite:///{work / 'mlflow.db'}"
        trained = train_bundle(
            read_attempts([write_sample_logs(work / "train", 1500, seed=0)]),
            work / "bundle",
            TierLadder.load(),
            TrainOptions(encoder="static"),
        )
        tracked = register_trained(trained, Registry(store, create=True), NAME)
        model_uri = f"models:/{NAME}/{tracked.version}"
        router = trained.router
        log_path = work / "requests.parquet"
        make_prompts(args.requests).write_parquet(log_path)

        requests, read_s = timed(lambda: requests_of(read_attempts([log_path])))
        local, local_s = timed(lambda: score_local(router, requests))
        activate(store)
        started = time.perf_counter()
        with spark_session(args.spark_master) as spark:
            start_s = time.perf_counter() - started
            cores = spark.sparkContext.defaultParallelism
            on_spark, spark_s = timed(lambda: score_spark(spark, model_uri, router.ladder.names, requests))

    n = requests.height
    print(f"{n:,} distinct prompts, model {model_uri} (static encoder, version {router.version})\n")
    print("| stage | requests | seconds | requests/s |")
    print("|---|---|---|---|")
    print(f"| read the log (Parquet -> one row per request) | {n:,} | {read_s:.1f} | {n / read_s:,.0f} |")
    print(f"| engine local (router in this process) | {n:,} | {local_s:.1f} | {n / local_s:,.0f} |")
    print(f"| start a Spark session ({args.spark_master}, {cores} cores) | | {start_s:.1f} | |")
    print(f"| engine spark (registered pyfunc as a Spark UDF) | {n:,} | {spark_s:.1f} | {n / spark_s:,.0f} |")

    keys = ["request_id", "tier", "model", "fallback_chain"]
    same = (local.select(keys) == on_spark.select(keys)).select(pl.all_horizontal(pl.all()).sum()).item()
    gaps = [float((local[c] - on_spark[c]).abs().max()) for c in local.columns if c.startswith("p_")]
    verdict = "same" if same == n and max(gaps) <= TOLERANCE else "DIFFERENT"
    print(
        f"\ndecisions: {verdict}: tier, model and chain equal on {same:,} of {n:,} requests; max |dp| {max(gaps):.1e}"
    )


if __name__ == "__main__":
    main()
