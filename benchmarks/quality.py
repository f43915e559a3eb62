"""Routing quality on real data: train on the train split, evaluate the exported bundle on the test split.

For each dataset in ../shared/data it trains one bundle per encoder x head variant (C, threshold rule)
with `training.train.train_bundle` and scores it with `training.evaluation.evaluate.evaluate_router`,
the same code `tierwise train` and `tierwise eval` run, then prints markdown tables: the router variants
(APGR, CPT, cost at 95% and 100% of top quality, ECE, training time) and, from the same run, the
baselines (always each tier, random mix, prompt length, k-NN per encoder, oracle).

Each table is printed under two cost views:
- `reference`: the issue's reference costs, flat per tier (mmlu_pro 0.18 : 0.88 : 3.0; routerbench each
  tier's mean logged cost_usd), so the numbers compare with the issue's reference and targets;
- `product`: the cost rule of docs/architecture.md, what `tierwise eval` reports (mmlu_pro: tokens
  estimated from characters at the tier prices; routerbench: each request's logged cost_usd).

    python benchmarks/quality.py [--datasets mmlu_pro routerbench routerbench-claude]
        [--encoders static minilm] [--C 0.1 1.0] [--rules absolute relative] [--json OUT.json]

MiniLM embeddings of a dataset take minutes on 2 cores the first time; they are cached on disk after.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from classifier.router import Router
from classifier.tiers import TierLadder
from training.evaluation.evaluate import evaluate_router
from training.evaluation.report import EvalReport, SweptRouter, format_metric
from training.logs import read_attempts
from training.train import TrainOptions, train_bundle

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def flat_costs(*costs: float) -> Callable[[pl.DataFrame, list[str]], pl.DataFrame]:
    """The reference's cost view for logs without costs: one fixed cost per tier."""

    def apply(frame: pl.DataFrame, tiers: list[str]) -> pl.DataFrame:
        return frame.with_columns(
            pl.lit(c, dtype=pl.Float64).alias(f"cost_{t}") for t, c in zip(tiers, costs, strict=True)
        )

    return apply


def tier_mean_costs(frame: pl.DataFrame, tiers: list[str]) -> pl.DataFrame:
    """The reference's cost view for logs with costs: each tier's mean logged cost on every request."""
    return frame.with_columns(pl.col(f"cost_{t}").mean().alias(f"cost_{t}") for t in tiers)


@dataclass(frozen=True)
class Dataset:
    """One benchmark: a log directory, its tier ladder, the reference cost view and the issue's targets."""

    directory: str
    tiers_file: str
    reference_costs: Callable[[pl.DataFrame, list[str]], pl.DataFrame]
    targets: dict[str, float]

    @property
    def logs(self) -> Path:
        return DATA / self.directory / "attempts.parquet"

    @property
    def ladder(self) -> TierLadder:
        return TierLadder.load(DATA / self.directory / self.tiers_file)


DATASETS = {
    "mmlu_pro": Dataset(
        "mmlu_pro", "tiers.toml", flat_costs(0.18, 0.88, 3.0), {"apgr": 0.78, "cost@95": 0.50, "cost@100": 0.80}
    ),
    "routerbench": Dataset("routerbench", "tiers.toml", tier_mean_costs, {"apgr": 0.78, "cost@95": 0.40}),
    "routerbench-claude": Dataset("routerbench", "claude.tiers.toml", tier_mean_costs, {}),
}
COST_VIEWS = ("reference", "product")
METRIC_HEADERS = ("APGR", "CPT50", "CPT80", "cost@95", "cost@100", "AIQ", "best quality @ cost")


SCORED: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}


class ReusingRouter(Router):
    """A Router that reuses the graph's output for texts it has already scored with a byte-identical bundle.

    Two cost views, and two threshold rules over one head, need the same probabilities; MiniLM takes
    minutes to recompute them. The key is the bundle version (a hash of the graph and tokenizer files).
    """

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        key = (self.version, tuple(texts))
        if key not in SCORED:
            SCORED[key] = super().probabilities(texts)
        return SCORED[key]


@dataclass
class Variant:
    """One trained bundle: how it was made, how long training took, and its report per cost view."""

    encoder: str
    C: float
    rule: str
    fit_s: float
    total_s: float
    threshold: float
    reports: dict[str, EvalReport]

    @property
    def head(self) -> str:
        return f"LR C={self.C:g}, {self.rule}"


def run_dataset(name: str, encoders: list[str], Cs: list[float], rules: list[str], workdir: Path) -> list[Variant]:
    """Train and evaluate every variant on one dataset."""
    dataset = DATASETS[name]
    variants = []
    for encoder in encoders:
        for C in Cs:
            for rule in rules:
                out = workdir / f"{name}-{encoder}-{C:g}-{rule}"
                print(f"[{name}] training {encoder}, C={C:g}, {rule}", flush=True)
                options = TrainOptions(encoder=encoder, C=C, threshold_rule=rule)
                result = train_bundle(read_attempts([dataset.logs]), out, dataset.ladder, options)
                router = ReusingRouter.load(out)
                frame = result.labels.frame
                views = {"reference": dataset.reference_costs(frame, router.ladder.names), "product": frame}
                reports = {view: evaluate_router(router, views[view]) for view in COST_VIEWS}
                variants.append(
                    Variant(
                        encoder,
                        C,
                        rule,
                        result.timings["fit_s"],
                        result.timings["total_s"],
                        router.manifest.policy.threshold,
                        reports,
                    )
                )
    return variants


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def metrics_cells(report: EvalReport, sweep: SweptRouter) -> list[str]:
    """APGR, CPT50, CPT80, cost at 95% and 100% of top quality, AIQ, and the best quality with its cost."""
    keys = ("apgr", "cpt50", "cpt80", "cost_ratio_at_95", "cost_ratio_at_100", "aiq")
    curve = sweep.curve
    best = np.lexsort((curve.cost, -curve.quality))[0]
    peak = f"{curve.quality[best]:.3f} @ {format_metric(report.cost_ratio(float(curve.cost[best])))}"
    return [*(format_metric(sweep.metrics[k]) for k in keys), peak]


def variant_table(variants: list[Variant], view: str) -> list[str]:
    """Markdown rows: one per trained variant."""
    lines = [
        _row(["encoder", "head", *METRIC_HEADERS, "ECE mean", "ECE max", "fit s", "train s"]),
        _row(["---"] * 13),
    ]
    for v in variants:
        report = v.reports[view]
        eces = [c.ece for c in report.calibration if c.ece is not None]
        lines.append(
            _row(
                [
                    v.encoder,
                    v.head,
                    *metrics_cells(report, report.router),
                    f"{statistics.mean(eces):.3f}",
                    f"{max(eces):.3f}",
                    f"{v.fit_s:.1f}",
                    f"{v.total_s:.1f}",
                ]
            )
        )
    return lines


def baseline_table(variants: list[Variant], view: str) -> list[str]:
    """Markdown rows for the baselines on the same test rows: swept ones, then fixed points."""
    first = {}
    for v in variants:
        first.setdefault(v.encoder, v.reports[view])
    report = next(iter(first.values()))
    lines = [
        _row(["baseline", *METRIC_HEADERS, "cost", "quality"]),
        _row(["---"] * 10),
    ]
    swept = [("random mix", report.random), ("prompt length", report.length)]
    swept += [(f"k-NN ({encoder})", r.knn) for encoder, r in first.items()]
    for name, sweep in swept:
        if sweep is not None:
            lines.append(_row([name, *metrics_cells(report, sweep), "", ""]))
    points = [(f"always {tier}", point, None) for tier, point in report.always.items()]
    points.append(("oracle", report.oracle, report.oracle_apgr))
    for name, point, value in points:
        blanks = [format_metric(value)] + [""] * 6
        lines.append(_row([name, *blanks, format_metric(report.cost_ratio(point.cost)), f"{point.quality:.3f}"]))
    return lines


def target_lines(name: str, variants: list[Variant]) -> list[str]:
    """The best variant against the issue's targets (reference cost view)."""
    targets = DATASETS[name].targets
    if not targets:
        return []
    keys = {"apgr": "apgr", "cost@95": "cost_ratio_at_95", "cost@100": "cost_ratio_at_100"}
    lines = []
    for label, target in targets.items():
        values = [v.reports["reference"].router.metrics[keys[label]] for v in variants]
        values = [x for x in values if x is not None]
        if not values:
            continue
        best = max(values) if label == "apgr" else min(values)
        met = best >= target if label == "apgr" else best <= target
        verdict = "met" if met else f"missed by {abs(best - target):.3f}"
        lines.append(f"- {label}: best {best:.3f}, target {'>=' if label == 'apgr' else '<='} {target} ({verdict})")
    return lines


def render(name: str, variants: list[Variant]) -> str:
    report = variants[0].reports["reference"]
    lines = [f"## {name}: {report.evaluated} test requests scored ({report.requests - report.evaluated} excluded)"]
    for view in COST_VIEWS:
        lines += ["", f"### {view} costs", "", *variant_table(variants, view), "", *baseline_table(variants, view)]
    targets = target_lines(name, variants)
    if targets:
        lines += ["", "Targets (reference costs):", *targets]
    return "\n".join(lines)


def to_json(results: dict[str, list[Variant]]) -> dict:
    return {
        name: [
            {
                "encoder": v.encoder,
                "C": v.C,
                "rule": v.rule,
                "threshold": v.threshold,
                "fit_s": v.fit_s,
                "total_s": v.total_s,
                "reports": {
                    view: {k: val for k, val in r.to_json().items() if k != "curves"} for view, r in v.reports.items()
                },
            }
            for v in variants
        ]
        for name, variants in results.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--encoders", nargs="+", default=["static", "minilm"], choices=["static", "minilm"])
    parser.add_argument("--C", nargs="+", type=float, default=[0.1, 1.0], help="inverse L2 strengths of the head")
    parser.add_argument("--rules", nargs="+", default=["absolute", "relative"], choices=["absolute", "relative"])
    parser.add_argument("--json", type=Path, help="also write every variant's evaluation (without curves) here")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            results[name] = run_dataset(name, args.encoders, args.C, args.rules, Path(tmp))
            print(render(name, results[name]), "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(to_json(results), indent=1))


if __name__ == "__main__":
    main()
