"""Router.predict latency: median and p99 per prompt size, per encoder, against the in-Python path.

For each encoder it trains a small bundle on generated logs, then times single-threaded calls of
`router.predict` (tokenise + ONNX + policy, one ONNX thread) and, as the baseline in the same run, the in-Python path
(the training encoder's embedding + the scikit-learn head + the same policy, torch on one thread).
Rows: fixed prompts of each size (warm tokenizer cache), distinct prompts of made-up words (every word
new: the tokenizer's worst case), and, when ../shared/data is present, distinct real prompts timed after
the tokenizer has seen 5,000 other real ones (a server some minutes into real traffic).

Run: python benchmarks/predict_latency.py [--calls 2000] [--encoders static minilm]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierLadder
from tierwise.training.data.logs import read_attempts
from tierwise.training.data.sample_logs import write_sample_logs
from tierwise.training.embedding.encoders import Encoder, load_encoder
from tierwise.training.evaluation.frames import outcome_arrays
from tierwise.training.fit.head import TierHead
from tierwise.training.fit.train import TrainOptions, train_bundle

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_WARM_UP = 5000
SENTENCE = "Explain step by step why the integral of x e^x equals (x - 1) e^x + C, and justify each move. "


def prompts() -> dict[str, str]:
    """Prompts of about 20, 80 and 330 tokens, and one of about 2,000 characters."""
    words = SENTENCE.split()
    return {
        "~20 tokens": " ".join(words[:16]),
        "~80 tokens": " ".join((words * 4)[:64]),
        "~330 tokens": " ".join((words * 15)[:260]),
        "~2,000 chars": (SENTENCE * 30)[:2000],
    }


def unseen_prompts(count: int, chars: int = 2000, seed: int = 0) -> list[str]:
    """Distinct prompts of made-up words, so every word misses the tokenizer's chunk cache (worst case)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    out = []
    for _ in range(count):
        words = ["".join(rng.choice(letters, int(rng.integers(3, 10)))) for _ in range(chars // 6)]
        out.append(" ".join(words)[:chars])
    return out


def real_prompts(count: int, warm: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(warm-up, timed) distinct real prompts from both shared datasets, or two empty lists without them."""
    paths = [SHARED_DATA / name / "attempts.parquet" for name in ("mmlu_pro", "routerbench")]
    if not all(p.exists() for p in paths):
        return [], []
    frame = pl.concat([pl.scan_parquet(p).select("prompt") for p in paths]).unique().sort("prompt").collect()
    texts = frame["prompt"].sample(fraction=1.0, shuffle=True, seed=seed).to_list()
    return texts[:warm], texts[warm : warm + count]


@dataclass
class Case:
    """One row of the table: texts timed on each path (distinct when the case is about new text)."""

    name: str
    onnx_texts: list[str]
    python_texts: list[str]
    warm_texts: list[str] = field(default_factory=list)


def cases(calls: int) -> list[Case]:
    """Fixed prompts per size, fresh made-up words, and new real prompts after a warm-up on other real ones."""
    out = [Case(size, [text], [text]) for size, text in prompts().items()]
    unseen = unseen_prompts(2 * calls + 100)
    out.append(Case("~2,000 chars, unseen words", unseen[: calls + 50], unseen[calls + 50 :]))
    warm, real = real_prompts(2 * calls + 100, REAL_WARM_UP)
    if real:
        out.append(Case("real prompts, each new", real[: calls + 50], real[calls + 50 :], warm))
    return out


def timed(call: Callable[[str], object], texts: list[str], calls: int) -> tuple[float, float]:
    """Median and p99 in microseconds of `calls` sequential calls cycling through texts, after a warm-up.

    The warm-up uses the first texts, so with enough distinct texts every timed call sees a new one.
    """
    warm_up = min(50, len(texts) - 1) if len(texts) > 1 else 1
    for text in texts[:warm_up]:
        call(text)
    pool = texts[warm_up:] or texts
    times = np.empty(calls)
    for i in range(calls):
        text = pool[i % len(pool)]
        start = time.perf_counter_ns()
        call(text)
        times[i] = (time.perf_counter_ns() - start) / 1000
    return float(np.median(times)), float(np.percentile(times, 99))


def python_path(router: Router, encoder: Encoder, head: TierHead, text: str) -> object:
    """The baseline: training-time embedding, scikit-learn head, then the same policy."""
    return router.policy.choose(head.predict_proba(encoder.encode([text]))[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--encoders", nargs="+", default=["static", "minilm"], choices=["static", "minilm"])
    args = parser.parse_args()
    if "minilm" in args.encoders:
        import torch

        torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        logs = write_sample_logs(Path(tmp) / "logs", 400, seed=0)
        table_cases = cases(args.calls)
        for kind in args.encoders:
            result = train_bundle(
                read_attempts([logs]), Path(tmp) / kind, TierLadder.load(), TrainOptions(encoder=kind)
            )
            router = result.router
            encoder = load_encoder(kind)
            frame = result.labels.frame
            success, _ = outcome_arrays(frame, router.ladder.names)
            head = TierHead().fit(encoder.encode(frame["prompt"].to_list()), success)
            for case in table_cases:
                for text in case.warm_texts:  # a server that has already seen this much traffic
                    router.token_ids(text)
                    encoder.tokenizer.ids(text)
                tokens = int(np.median([len(router.token_ids(t)) for t in case.onnx_texts[:500]]))
                onnx_p50, onnx_p99 = timed(router.predict, case.onnx_texts, args.calls)
                py_p50, py_p99 = timed(partial(python_path, router, encoder, head), case.python_texts, args.calls)
                rows.append((kind, case.name, tokens, onnx_p50, onnx_p99, py_p50, py_p99))
    print(
        f"router.predict vs in-Python (encoder + sklearn head + policy); {args.calls} calls per cell, "
        f"single thread, us; tokens = median tokens the graph sees; load average {os.getloadavg()[0]:.1f}"
    )
    header = (
        f"{'encoder':<8}{'prompt':<28}{'tokens':>7}{'p50':>9}{'p99':>9}{'py p50':>10}{'py p99':>10}{'speed-up':>10}"
    )
    print(header)
    for kind, size, tokens, p50, p99, py50, py99 in rows:
        print(f"{kind:<8}{size:<28}{tokens:>7}{p50:>9.0f}{p99:>9.0f}{py50:>10.0f}{py99:>10.0f}{py50 / p50:>9.1f}x")


if __name__ == "__main__":
    main()
