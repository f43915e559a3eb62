"""Router.predict latency: median and p99 per prompt size, per encoder, against the in-Python path.

For each encoder it trains a small bundle on generated logs, then times single-threaded calls of
`router.predict` (tokenise + ONNX + policy) and, as the baseline in the same run, the in-Python path
(the training encoder's embedding + the scikit-learn head + the same policy).

Run: python benchmarks/predict_latency.py [--calls 2000] [--encoders static minilm]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from classifier.router import Router
from training.encoders import Encoder, load_encoder
from training.evaluation.frames import outcome_arrays
from training.head import TierHead
from training.sample_logs import write_sample_logs
from training.train import train_bundle

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


def timed(call: Callable[[str], object], texts: list[str], calls: int) -> tuple[float, float]:
    """Median and p99 in microseconds of `calls` sequential calls cycling through texts, after a warm-up."""
    for text in texts[: min(50, calls)]:
        call(text)
    times = np.empty(calls)
    for i in range(calls):
        text = texts[i % len(texts)]
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
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        logs = write_sample_logs(Path(tmp) / "logs", 400, seed=0)
        for kind in args.encoders:
            result = train_bundle([logs], Path(tmp) / kind, encoder=kind)
            router = Router.load(result.bundle_dir)
            encoder = load_encoder(kind)
            frame = result.labels.frame
            success, _ = outcome_arrays(frame, router.ladder.names)
            head = TierHead().fit(encoder.encode(frame["prompt"].to_list()), success)
            cases = {size: [text] for size, text in prompts().items()}
            cases["~2,000 chars, unseen words"] = unseen_prompts(2 * args.calls + 100)
            for size, texts in cases.items():
                tokens = len(router.token_ids(texts[0]))
                calls = args.calls if kind == "static" else max(200, args.calls // 10)
                half = len(texts) // 2
                onnx_texts, python_texts = (texts, texts) if half == 0 else (texts[:half], texts[half:])
                onnx_p50, onnx_p99 = timed(router.predict, onnx_texts, calls)
                py_p50, py_p99 = timed(partial(python_path, router, encoder, head), python_texts, calls)
                rows.append((kind, size, tokens, onnx_p50, onnx_p99, py_p50, py_p99))
    print(f"router.predict vs in-Python (encoder + sklearn head + policy); {args.calls} calls, single thread, us")
    header = (
        f"{'encoder':<8}{'prompt':<14}{'tokens':>7}{'p50':>9}{'p99':>9}{'py p50':>10}{'py p99':>10}{'speed-up':>10}"
    )
    print(header)
    for kind, size, tokens, p50, p99, py50, py99 in rows:
        print(f"{kind:<8}{size:<28}{tokens:>7}{p50:>9.0f}{p99:>9.0f}{py50:>10.0f}{py99:>10.0f}{py50 / p50:>9.1f}x")


if __name__ == "__main__":
    main()
