"""Latency bands on the shared datasets: what INTERACTIVE (two budgets), TOLERANT and ASYNC routing save against
always-top at equal quality.

The datasets log no timings, so each attempt gets a modelled latency (docs/benchmarks.md cites every figure):
    latency_ms = first_token_ms(model) + 1000 x output_tokens / output_tokens_per_s(model)
with output tokens from the attempt's own output length: mmlu_pro logs `output_chars` (tokens = chars / 4);
routerbench logs the real cost, so tokens = (cost_usd - prompt chars / 4 x input price) / output price, at
least 1 (ARC and Winogrande answers are a token or two, MBPP code a few hundred). The model is deterministic.

For each dataset: train one static-encoder router on the train split (`train_bundle`, which fits each tier's
time model from these latencies), then replay the test split's chains per band (`tierwise eval --band`'s
code). "At equal quality": the cheapest quality target (swept over 0, 0.02, ..., 1) whose router quality is at
least always-top's, judged within the budget for INTERACTIVE (always-top is held to the same budget). The two
budgets are the top tier's modelled p90 and p50 attempt latency (fitted from the train split).
TOLERANT has no quality knob (it minimises expected cost plus the value of time): shown as it routes.
Savings are against always-top at list price, the status quo.

    python benchmarks/latency_bands.py [--data /work/shared/data] [--datasets mmlu_pro routerbench]
        [--value-of-time-usd-per-s 0.0005] [--out table.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierLadder
from tierwise.training.data.costs import CHARS_PER_TOKEN
from tierwise.training.data.logs import AttemptLog, read_attempts
from tierwise.training.data.splits import SplitRule
from tierwise.training.evaluation.bands import BandReport
from tierwise.training.evaluation.evaluate import band_evaluation
from tierwise.training.fit.train import TrainOptions, train_bundle

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGETS = np.round(np.linspace(0.0, 1.0, 51), 2)
DEFAULT_VALUE_OF_TIME = 0.0005  # USD per second of waiting: $1.80 an hour, an automated pipeline's time


@dataclass(frozen=True)
class Speed:
    """A model's published speed: time to the first token and output rate, with where the figures come from."""

    first_token_ms: float
    tokens_per_s: float
    source: str


# docs/benchmarks.md cites each source; TTFT 500 ms where no published figure was found (marked "assumed").
SPEEDS = {
    "Meta-Llama-3_1-8B-Instruct": Speed(90, 280, "kickllm.com table from Artificial Analysis (Fireworks)"),
    "Meta-Llama-3_1-70B-Instruct": Speed(200, 160, "kickllm.com table (Llama 3.3 70B, Fireworks)"),
    "gemini-1.5-pro-002": Speed(1340, 40, "s-anand.net production 30-50 t/s; TTFT of AA's Gemini 1.5 Flash"),
    "mistralai/mistral-7b-chat": Speed(220, 87.4, "Artificial Analysis, Mistral 7B Instruct on Together.ai"),
    "mistralai/mixtral-8x7b-chat": Speed(500, 107, "Artificial Analysis early-2024 snapshot; TTFT assumed"),
    "gpt-3.5-turbo-1106": Speed(500, 78, "Artificial Analysis early-2024 snapshot; TTFT assumed"),
    "gpt-4-1106-preview": Speed(500, 20, "Artificial Analysis early-2024 snapshot (GPT-4 Turbo); TTFT assumed"),
}


def output_tokens(frame: pl.DataFrame, ladder: TierLadder) -> pl.Expr:
    """Each attempt's output tokens from its output length: output_chars / 4, else backed out of its cost."""
    if "output_chars" in frame.columns:
        return pl.col("output_chars") / CHARS_PER_TOKEN
    tiers = {m: t for t in ladder.tiers for m in t.models}
    models = list(tiers)
    price_in = pl.col("model").replace_strict(models, [tiers[m].input_usd_per_mtok for m in models], default=None)
    price_out = pl.col("model").replace_strict(models, [tiers[m].output_usd_per_mtok for m in models], default=None)
    prompt = pl.col("prompt").str.len_chars() / CHARS_PER_TOKEN
    return ((pl.col("cost_usd") * 1e6 - prompt * price_in) / price_out).clip(lower_bound=1.0)


def with_modelled_latency(log: AttemptLog, ladder: TierLadder) -> AttemptLog:
    """The log with `latency_ms` and `ttft_ms` from the latency model, for the ladder's models."""
    models = [m for t in ladder.tiers for m in t.models]
    first = pl.col("model").replace_strict(models, [SPEEDS[m].first_token_ms for m in models], default=None)
    rate = pl.col("model").replace_strict(models, [SPEEDS[m].tokens_per_s for m in models], default=None)
    frame = log.frame.with_columns(
        ttft_ms=first.cast(pl.Float64),
        latency_ms=(first + 1000.0 * output_tokens(log.frame, ladder) / rate).cast(pl.Float64),
    )
    return dataclasses.replace(log, attempts=frame.lazy())


@dataclass(frozen=True)
class Row:
    """One band setting at equal quality (or the best it reaches) against always-top."""

    dataset: str
    setting: str
    target: float | None
    report: BandReport
    top_list_cost: float = float("nan")


def equal_quality(router: Router, test: pl.DataFrame, probs: np.ndarray, options: RouteOptions) -> Row | None:
    """The cheapest quality target whose router quality reaches always-top's (in the band's budget)."""
    best = None
    for target in TARGETS:
        report = band_evaluation(router, test, probs, dataclasses.replace(options, quality_target=float(target)))
        budget = options.budget_ms
        top = report.always[router.ladder.names[-1]]
        if report.router.quality(budget) >= top.quality(budget) and (
            best is None or report.router.mean_cost() < best[1].router.mean_cost()
        ):
            best = (float(target), report)
    return None if best is None else Row("", "", *best)


def dataset_rows(name: str, data: Path, value_of_time: float) -> tuple[list[Row], dict[str, str], str]:
    ladder = TierLadder.load(data / name / "tiers.toml")
    log = with_modelled_latency(read_attempts([data / name / "attempts.parquet"]), ladder)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = train_bundle(log, Path(tmp) / "bundle", ladder, TrainOptions(encoder="static"))
    train_s = time.perf_counter() - started
    router, probs = result.router, result.evaluation.probabilities
    test, _ = SplitRule().select(result.labels.frame, "test")
    times = router.policy.times
    loose, tight = times.tiers[-1].quantile(0.9), times.tiers[-1].quantile(0.5)
    settings = {
        "interactive, no budget": RouteOptions(latency_band="interactive"),
        f"interactive, {loose / 1000:.2f} s (top tier's p90)": RouteOptions(
            latency_band="interactive", max_latency_ms=loose
        ),
        f"interactive, {tight / 1000:.2f} s (top tier's p50)": RouteOptions(
            latency_band="interactive", max_latency_ms=tight
        ),
        "async (Batch API)": RouteOptions(latency_band="async"),
    }
    top_list_cost = band_evaluation(router, test, probs, RouteOptions()).always[ladder.names[-1]].mean_cost()
    rows = []
    for setting, options in settings.items():
        row = equal_quality(router, test, probs, options)
        if row is None:
            row = Row("", "", None, band_evaluation(router, test, probs, options))
        rows.append(dataclasses.replace(row, dataset=name, setting=setting, top_list_cost=top_list_cost))
    tolerant = band_evaluation(
        router, test, probs, RouteOptions(latency_band="tolerant", value_of_time_usd_per_s=value_of_time)
    )
    rows.append(Row(name, f"tolerant, {value_of_time:g} USD/s", None, tolerant, top_list_cost))
    speeds = {
        t.name: f"{t.models[0]}: {SPEEDS[t.models[0]].first_token_ms:g} ms + {SPEEDS[t.models[0]].tokens_per_s:g} t/s"
        for t in ladder.tiers
    }
    rule = router.manifest.policy.rule
    return rows, speeds, f"trained in {train_s:.0f} s, rule {rule}"


def seconds(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f}"


def render(rows: list[Row]) -> str:
    """The markdown table of docs/benchmarks.md."""
    lines = [
        "| dataset | band | target | quality (router / top) | cost/req USD (router / top) | saving vs top "
        "| time to acceptable p50 / p95 s (router) | (always-top) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        report, budget = row.report, row.report.options.budget_ms
        top_name = report.tiers[-1]
        router, top = report.router.summary(budget), report.always[top_name].summary(budget)
        quality_key = "quality" if budget is None else "quality_within_budget"
        saving = 1 - router["cost_usd"] / row.top_list_cost
        times = [router["time_to_acceptable_ms"], top["time_to_acceptable_ms"]]
        router_time, top_time = (f"{seconds(t['p50'])} / {seconds(t['p95'])}" for t in times)
        target = "-" if row.target is None else f"{row.target:.2f}"
        reached = "" if row.target is not None or report.options.band == "tolerant" else " (not reached)"
        lines.append(
            f"| {row.dataset} | {row.setting} | {target} | {router[quality_key]:.3f} / {top[quality_key]:.3f}{reached} "
            f"| {router['cost_usd']:.6f} / {row.top_list_cost:.6f} | {saving:.1%} | {router_time} | {top_time} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--datasets", nargs="+", default=["mmlu_pro", "routerbench"])
    parser.add_argument("--value-of-time-usd-per-s", type=float, default=DEFAULT_VALUE_OF_TIME)
    parser.add_argument("--out", type=Path, help="Also write the markdown table here.")
    args = parser.parse_args(argv)
    rows = []
    for name in args.datasets:
        found, speeds, trained = dataset_rows(name, args.data, args.value_of_time_usd_per_s)
        print(f"{name}: {trained}; latency model {speeds}", flush=True)
        rows += found
    table = render(rows)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
