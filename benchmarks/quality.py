"""Routing quality on real data: does the router beat the best fixed mix of tiers, and does its quality target hold?

For each dataset in ../shared/data it trains bundles on the train split with
`tierwise.training.fit.train.train_bundle` (what
`tierwise train` runs) and scores them on the test split with `tierwise.training.evaluation.evaluate.evaluate_router`
(what `tierwise eval` runs), then prints markdown tables, every headline number with its 95% bootstrap interval:

1. variants (encoder x C x threshold rule): gain over the static mix, cost at top quality, cost at 95%, APGR,
   headroom captured, calibration, training time;
2. baselines on the same rows: static mix, random two-end mix, prompt length, k-NN; always each tier; oracle;
3. where the router stands against the static mix, prompt length and k-NN at every cost (paired intervals):
   its worst point, and at how many of 1,001 costs it is provably below;
4. two-tier views (routerbench's Claude ladder, every pair of mmlu_pro's tiers): RouteLLM's APGR and CPT;
5. the quality guarantee: across random calibration/test splits of the rows the head never saw, the share of
   splits where the certified threshold keeps the target on the test part (>= the confidence?), and what it
   costs against the unguarded threshold;
6. the issue's targets, met or missed and by how much;
7. with --workload-feature (issue 23): the head given each request's workload (mmlu_pro's `category`,
   routerbench's `benchmark`) as a one-hot input appended to its embedding, against the same head without it,
   both fitted as `tierwise train` fits them: validation APGR (what would decide keeping it) and the test split's
   headline metrics with intervals, and their paired difference.

Cost views: mmlu_pro logs no costs, so its targets use flat reference costs per tier (0.18 : 0.88 : 3.0);
routerbench uses each request's logged cost_usd (the product's own view). `--views` adds the other view.

    python benchmarks/quality.py [--datasets mmlu_pro routerbench] [--encoders static] [--C 0.1]
        [--rules absolute relative] [--splits 200] [--quality-targets 0.9 0.95] [--confidence 0.95] [--json OUT]
        [--workload-feature]

MiniLM embeddings of a dataset take minutes on 2 cores the first time; they are cached on disk after.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import polars as pl
from tierwise.classifier.policy import RULES, rule_scores
from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierLadder
from tierwise.training.data.logs import read_attempts
from tierwise.training.evaluation.bootstrap import Interval, percentile_interval
from tierwise.training.evaluation.curves import choose_tiers, known_rows
from tierwise.training.evaluation.evaluate import evaluate_router
from tierwise.training.evaluation.frames import outcome_arrays
from tierwise.training.evaluation.gaps import GapProfile, gap_profile
from tierwise.training.evaluation.report import BASELINES, EvalReport, build_report
from tierwise.training.evaluation.routellm import routellm_metrics
from tierwise.training.evaluation.table import format_metric, with_interval
from tierwise.training.fit.guarantee import QualityTarget
from tierwise.training.fit.policy_choice import choose_policy
from tierwise.training.fit.train import TrainOptions, TrainResult, train_bundle

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # next to the repository, as on the dev machines
ROUTELLM_BEST = 0.62  # RouteLLM's best published APGR on its benchmarks (arXiv 2406.18665)


def flat_costs(*costs: float) -> Callable[[pl.DataFrame, list[str]], pl.DataFrame]:
    """The reference's cost view for logs without costs: one fixed cost per tier."""

    def apply(frame: pl.DataFrame, tiers: list[str]) -> pl.DataFrame:
        return frame.with_columns(
            pl.lit(c, dtype=pl.Float64).alias(f"cost_{t}") for t, c in zip(tiers, costs, strict=True)
        )

    return apply


def logged_costs(frame: pl.DataFrame, tiers: list[str]) -> pl.DataFrame:
    """The product's own cost view (docs/architecture.md's cost rule): what `tierwise eval` reports."""
    return frame


@dataclass(frozen=True)
class Dataset:
    """One benchmark: a log file, its tier ladder, its cost views (the first one carries the targets), targets,
    and the column that names each request's workload."""

    directory: str
    tiers_file: str
    views: dict[str, Callable[[pl.DataFrame, list[str]], pl.DataFrame]]
    targets: dict[str, float]
    workload: str
    pairs: bool = True

    def logs(self, data: Path) -> Path:
        return data / self.directory / "attempts.parquet"

    def ladder(self, data: Path) -> TierLadder:
        return TierLadder.load(data / self.directory / self.tiers_file)


MMLU_FLAT = flat_costs(0.18, 0.88, 3.0)
DATASETS = {
    "mmlu_pro": Dataset(
        "mmlu_pro",
        "tiers.toml",
        {"reference (flat 0.18 : 0.88 : 3.0)": MMLU_FLAT, "product (estimated tokens)": logged_costs},
        {"gain_over_static": 0.03, "cost_at_top_quality": 0.80},
        "category",
    ),
    "routerbench": Dataset(
        "routerbench",
        "tiers.toml",
        {"real (logged cost_usd)": logged_costs},
        {"gain_over_static": 0.05, "cost_at_top_quality": 0.50},
        "benchmark",
        pairs=False,
    ),
}
CLAUDE_LADDER = ("routerbench", "claude.tiers.toml")
GAP_BASELINES = ("static_mix", "length", "knn")

SCORED: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}


class ReusingRouter(Router):
    """A Router that reuses the graph's output for texts it has already scored with a byte-identical bundle.

    Every cost view scores the same prompts; the key is the bundle version (a hash of its files).
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
    reports: dict[str, EvalReport] = field(default_factory=dict)

    @property
    def head(self) -> str:
        return f"LR C={self.C:g}, {self.rule}"


def train(logs: Path, ladder: TierLadder, out: Path, **options: object) -> tuple[TrainResult, ReusingRouter]:
    """A bundle trained like `tierwise train` would, and its router (reusing scores across cost views)."""
    print(f"[{logs.parent.name}] training {out.name}", flush=True)
    result = train_bundle(read_attempts([logs]), out, ladder, TrainOptions(**options))
    return result, ReusingRouter.load(out)


def run_variants(
    dataset: Dataset, data: Path, encoders: list[str], Cs: list[float], rules: list[str], work: Path
) -> list[Variant]:
    """Train and evaluate every variant on one dataset, in every cost view."""
    variants = []
    for encoder in encoders:
        for C in Cs:
            for rule in rules:
                result, router = train(
                    dataset.logs(data),
                    dataset.ladder(data),
                    work / f"{encoder}-{C:g}-{rule}",
                    encoder=encoder,
                    C=C,
                    threshold_rule=rule,
                )
                variant = Variant(encoder, C, rule, result.timings["fit_s"], result.timings["total_s"])
                for view, costs in dataset.views.items():
                    variant.reports[view] = evaluate_router(router, costs(result.labels.frame, router.ladder.names))
                variants.append(variant)
    return variants


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: list[Sequence[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


HEADLINE_HEADER = (
    "gain over static [95% CI]",
    "max gain",
    "cost at top quality [95% CI]",
    "cost@95 [95% CI]",
    "APGR [95% CI]",
    "headroom",
)


def headline_cells(metrics: dict[str, float | None], intervals: dict[str, Interval] | None) -> list[str]:
    """The headline metrics of a swept curve; with intervals for the router, bare for baselines."""

    def cell(key: str, signed: bool = False, never: str = "never") -> str:
        if intervals is None:
            value = metrics[key]
            return never if value is None and key.startswith("cost") else format_metric(value, signed)
        return with_interval(metrics[key], intervals[key], signed=signed, never=never)

    headroom = metrics["headroom_captured"]
    return [
        cell("gain_over_static", signed=True, never="-"),
        format_metric(metrics["max_gain_over_static"], signed=True),
        cell("cost_at_top_quality"),
        cell("cost_ratio_at_95"),
        cell("apgr", never="-"),
        "-" if headroom is None else f"{round(headroom, 3) or 0.0:.1%}",
    ]


def variant_table(variants: list[Variant], view: str) -> list[str]:
    """One row per trained variant."""
    rows = []
    for v in variants:
        report = v.reports[view]
        eces = [c.ece for c in report.calibration if c.ece is not None]
        cells = headline_cells(report.router.metrics, report.intervals)
        rows.append([v.encoder, v.head, *cells, f"{statistics.mean(eces):.3f}", f"{v.fit_s:.1f}", f"{v.total_s:.1f}"])
    return _table(["encoder", "head", *HEADLINE_HEADER, "ECE mean", "fit s", "train s"], rows)


def baseline_table(report: EvalReport) -> list[str]:
    """The swept baselines (point estimates), then the fixed points, on the same test rows."""
    rows = [
        [BASELINES[name].label, *headline_cells(swept.metrics, None), "", ""]
        for name, swept in report.baselines.items()
    ]
    for name, point in {
        **{f"always {t}": p for t, p in report.always.items()},
        "oracle (each request at its label)": report.oracle,
    }.items():
        rows.append(
            [name, *[""] * len(HEADLINE_HEADER), format_metric(report.cost_ratio(point.cost)), f"{point.quality:.3f}"]
        )
    return _table(["baseline", *HEADLINE_HEADER, "cost", "quality"], rows)


def gap_table(report: EvalReport) -> tuple[list[str], dict[str, GapProfile]]:
    """Router minus each baseline at every cost: the worst point with its paired interval, costs provably below."""
    profiles = {name: gap_profile(report, name) for name in GAP_BASELINES if name in report.baselines}
    rows = []
    for name, profile in profiles.items():
        i = profile.worst
        rows.append(
            [
                BASELINES[name].label,
                " ".join(
                    [
                        format_metric(profile.gap[i], signed=True),
                        f"[{format_metric(profile.lo[i], signed=True)}, {format_metric(profile.hi[i], signed=True)}]",
                    ]
                ),
                f"{profile.cost_ratio[i]:.3f}",
                f"{profile.provably_below} of {len(profile.gap)}",
                format_metric(profile.gap.mean(), signed=True),
            ]
        )
    header = ["router minus", "worst gap [95% CI]", "at cost ratio", "costs provably below", "mean gap"]
    return _table(header, rows), profiles


def two_tier_views(dataset_name: str, data: Path, work: Path) -> list[tuple[str, EvalReport, dict[str, Interval]]]:
    """Two-tier routers (routerbench's Claude ladder, every pair of mmlu_pro's tiers) with RouteLLM intervals."""
    views = []
    if dataset_name == "routerbench":
        directory, tiers_file = CLAUDE_LADDER
        ladders = {"claude-instant -> claude-2": TierLadder.load(data / directory / tiers_file)}
    else:
        full = DATASETS[dataset_name].ladder(data)
        ladders = {
            f"{a.name} -> {b.name}": TierLadder((a, b), source=full.source) for a, b in combinations(full.tiers, 2)
        }
    for name, ladder in ladders.items():
        result, router = train(DATASETS[dataset_name].logs(data), ladder, work / f"pair-{name.replace(' -> ', '-')}")
        report = evaluate_router(router, result.labels.frame)
        views.append((name, report, routellm_intervals(report, router.manifest.tier_costs_usd)))
    return views


def routellm_intervals(report: EvalReport, costs: list[float]) -> dict[str, Interval]:
    """Bootstrap intervals of RouteLLM's metrics (the deciles are recomputed on every resample, as RouteLLM would).

    `costs` are the bundle's tier costs, which the utility rule's scores need.
    """
    success = report.outcomes[report.scored]
    strong_score = 1.0 - rule_scores(report.probabilities[report.scored], report.operating_point.rule, costs)[:, 0]
    rng = np.random.default_rng(0)
    samples: dict[str, list[float]] = {}
    for _ in range(200):
        rows = rng.integers(0, len(success), len(success))
        for key, value in routellm_metrics(success[rows, 0], success[rows, 1], strong_score[rows]).items():
            samples.setdefault(key, []).append(np.nan if value is None else value)
    return {key: percentile_interval(np.array(values)) for key, values in samples.items()}


def two_tier_table(views: list[tuple[str, EvalReport, dict[str, Interval]]]) -> list[str]:
    rows = []
    for name, report, intervals in views:
        success = report.outcomes[report.scored]
        perfect = routellm_metrics(success[:, 0], success[:, 1], success[:, 1] - success[:, 0])["routellm_apgr"]
        m = report.routellm or {}
        rows.append(
            [
                name,
                f"{success[:, 0].mean():.3f} / {success[:, 1].mean():.3f}",
                with_interval(m.get("routellm_apgr"), intervals["routellm_apgr"], never="-"),
                with_interval(m.get("routellm_cpt50"), intervals["routellm_cpt50"], never="-"),
                with_interval(m.get("routellm_cpt80"), intervals["routellm_cpt80"], never="-"),
                format_metric(perfect),
                report.operating_point.rule,
            ]
        )
    header = [
        "two tiers",
        "quality cheap / dear",
        "routellm_apgr [95% CI]",
        "routellm_cpt50",
        "routellm_cpt80",
        "perfect router's APGR",
        "rule",
    ]
    return _table(header, rows)


@dataclass(frozen=True)
class Coverage:
    """How a quality target fared across random calibration/test splits of the rows the head never saw."""

    target: QualityTarget
    splits: int
    calibration: int
    test: int
    guarded_kept: float
    unguarded_kept: float
    certified: float
    guarded_cost: float
    unguarded_cost: float
    bound: float


def coverage_check(
    dataset: Dataset, data: Path, targets: list[float], confidence: float, splits: int, work: Path
) -> list[Coverage]:
    """Train with a guarded target (its head is fitted on the fit rows only), then split the rows the head never
    saw (validation and test) at random, many times: choose the policy on a calibration part the size of the
    validation rows exactly as training does (`choose_policy`), and measure it on the rest."""
    options = TrainOptions(quality_target=targets[0], confidence=confidence)
    result, router = train(
        dataset.logs(data), dataset.ladder(data), work / "guarded", quality_target=targets[0], confidence=confidence
    )
    frame = next(iter(dataset.views.values()))(result.labels.frame, router.ladder.names)
    unseen = options.split_rule.validation_mask(frame, options.seed) | options.split_rule.test_mask(frame)
    pool = frame.filter(pl.Series(unseen))
    success, cost = outcome_arrays(pool, router.ladder.names)
    keep = known_rows(success, cost)
    success, cost = success[keep], cost[keep]
    probs = router.probabilities(pool.filter(pl.Series(keep))["prompt"].to_list())
    size = result.manifest.policy.guarantee["calibration_requests"]
    rng = np.random.default_rng(0)
    found = []
    for share in targets:
        target = QualityTarget(share, confidence)
        runs: dict[str, list[tuple[bool, float]]] = {"guarded": [], "unguarded": []}
        certified, bounds = [], []
        for _ in range(splits):
            order = rng.permutation(len(success))
            cal, test = order[:size], order[size:]
            tier_costs = result.manifest.tier_costs_usd
            rules = tuple(RULES)
            guarded = choose_policy(success[cal], cost[cal], probs[cal], rules, tier_costs, target=target).spec
            unguarded = choose_policy(success[cal], cost[cal], probs[cal], rules, tier_costs, quality_floor=share).spec
            for kind, spec in (("guarded", guarded), ("unguarded", unguarded)):
                chosen = choose_tiers(rule_scores(probs[test], spec.rule, tier_costs), spec.threshold)
                picked = test, chosen
                kept = success[picked].mean() >= share * success[test, -1].mean()
                runs[kind].append((kept, cost[picked].mean() / cost[test, -1].mean()))
            certified.append(guarded.guarantee["certified"])
            bounds.append(guarded.guarantee["quality_lower_bound"])
        kept = {kind: float(np.mean([k for k, _ in r])) for kind, r in runs.items()}
        spent = {kind: float(np.mean([c for _, c in r])) for kind, r in runs.items()}
        found.append(
            Coverage(
                target=target,
                splits=splits,
                calibration=size,
                test=len(success) - size,
                guarded_kept=kept["guarded"],
                unguarded_kept=kept["unguarded"],
                certified=float(np.mean(certified)),
                guarded_cost=spent["guarded"],
                unguarded_cost=spent["unguarded"],
                bound=float(np.mean(bounds)),
            )
        )
    return found


def coverage_table(found: list[Coverage]) -> list[str]:
    rows = [
        [
            f"{c.target.share:g}",
            f"{c.target.confidence:g}",
            f"{c.splits}",
            f"{c.calibration} / {c.test}",
            f"**{c.guarded_kept:.3f}**" + (" (met)" if c.guarded_kept >= c.target.confidence else " (MISSED)"),
            f"{c.unguarded_kept:.3f}",
            f"{c.certified:.2f}",
            f"{c.bound:.3f}",
            f"{c.guarded_cost:.3f}",
            f"{c.unguarded_cost:.3f}",
            f"{c.guarded_cost - c.unguarded_cost:+.3f}",
        ]
        for c in found
    ]
    header = [
        "target Q",
        "confidence C",
        "splits",
        "calibration / test rows",
        "share of splits keeping Q (guarded)",
        "same, unguarded",
        "share certified",
        "mean lower bound",
        "test cost x top, guarded",
        "unguarded",
        "what the guarantee costs",
    ]
    return _table(header, rows)


def target_lines(dataset: Dataset, variants: list[Variant], profiles: dict[str, GapProfile]) -> list[str]:
    """The issue's targets in the dataset's first cost view: the best variant, met or missed and by how much."""
    view = next(iter(dataset.views))
    lines = []
    for key, target in dataset.targets.items():
        higher = key == "gain_over_static"
        values = [(v.reports[view].router.metrics[key], v) for v in variants]
        reached = [(x, v) for x, v in values if x is not None]
        if not reached:
            lines.append(f"- {key}: never reached by any variant, target {'>=' if higher else '<='} {target} (missed)")
            continue
        best, variant = max(reached, key=lambda p: p[0]) if higher else min(reached, key=lambda p: p[0])
        met = best >= target if higher else best <= target
        interval = variant.reports[view].intervals[key]
        lines.append(
            f"- {key}: best {with_interval(best, interval, signed=higher)} ({variant.head}), target "
            f"{'>=' if higher else '<='} {target:g}: {'met' if met else f'missed by {abs(best - target):.3f}'}"
        )
    for name, profile in profiles.items():
        verdict = (
            "met" if profile.provably_below == 0 else f"missed at {profile.provably_below} of {len(profile.gap)} costs"
        )
        lines.append(f"- nowhere below {BASELINES[name].label} by more than the interval: {verdict}")
    return lines


@dataclass(frozen=True)
class WorkloadFeature:
    """One head with the workload as an input and one without, fitted alike: validation APGR and test reports."""

    column: str
    workloads: int
    validation_apgr: dict[str, float | None]
    reports: dict[str, EvalReport]
    paired_gain: Interval
    paired_gain_value: float


def one_hot(values: pl.Series, known: list[str]) -> np.ndarray:
    """(n, len(known)) indicators of each value among `known` (a value not among them: all zeros)."""
    position = {name: i for i, name in enumerate(known)}
    hot = np.zeros((len(values), len(known)), dtype=np.float32)
    for row, value in enumerate(values.to_list()):
        if value in position:
            hot[row, position[value]] = 1.0
    return hot


def workload_feature_check(dataset: Dataset, data: Path, work: Path) -> WorkloadFeature:
    """Fit the head on the embedding alone and on the embedding plus the workload's one-hot, as training fits it
    (fit rows, policy on validation rows, refit on every training row), then score both on the test split."""
    from tierwise.training.embedding.embed import embed
    from tierwise.training.embedding.encoders import load_encoder
    from tierwise.training.evaluation.bootstrap import resample_weights
    from tierwise.training.evaluation.savings import SavingsScale
    from tierwise.training.fit.train import Masks, fit_head_and_policy

    result, router = train(dataset.logs(data), dataset.ladder(data), work / "workload-feature")
    tiers = router.ladder.names
    frame = next(iter(dataset.views.values()))(result.labels.frame, tiers)
    options = result.options
    masks = Masks.of(frame, options)
    success, cost = outcome_arrays(frame, tiers)
    tier_costs = [float(np.nanmean(cost[masks.train, k])) for k in range(len(tiers))]
    vectors = embed(frame["prompt"], load_encoder("static"))
    known = sorted(set(frame.filter(pl.Series(masks.train))[dataset.workload].cast(pl.String).drop_nulls()))
    inputs = {
        "embedding": vectors,
        f"embedding + {dataset.workload}": np.hstack(
            [vectors, one_hot(frame[dataset.workload].cast(pl.String), known)]
        ),
    }
    validation, reports = {}, {}
    for name, features in inputs.items():
        head, choice = fit_head_and_policy(features, success, cost, tier_costs, masks, options, None)
        validation[name] = choice.validation_apgr.get(choice.spec.rule)
        test = masks.test
        reports[name] = build_report(
            tiers,
            success[test],
            cost[test],
            head.predict_proba(features[test]),
            choice.spec.threshold,
            rule=choice.spec.rule,
            tier_costs=tier_costs,
        )
    plain, featured = reports.values()
    scored = plain.scored
    weights = resample_weights(int(scored.sum()))
    scale = SavingsScale.resampled(plain.outcomes[scored], plain.costs[scored], weights)
    gains = []
    for report in (plain, featured):
        steps = report.router.steps
        gains.append(scale.gain_over_static(*steps.points(steps.exact_thresholds(), weights)))
    difference = gains[1] - gains[0]
    value = (featured.router.metrics["gain_over_static"] or 0.0) - (plain.router.metrics["gain_over_static"] or 0.0)
    return WorkloadFeature(dataset.workload, len(known), validation, reports, percentile_interval(difference), value)


def workload_feature_table(found: WorkloadFeature) -> list[str]:
    rows = [
        [name, format_metric(found.validation_apgr[name]), *headline_cells(r.router.metrics, r.intervals)]
        for name, r in found.reports.items()
    ]
    return [
        *_table(["head input", "validation APGR", *HEADLINE_HEADER], rows),
        "",
        f"Paired difference in gain over the static mix (with minus without, test split, same resamples): "
        f"{with_interval(found.paired_gain_value, found.paired_gain, signed=True, never='-')}; "
        f"{found.workloads} workloads ({found.column}).",
    ]


def render(name: str, variants: list[Variant], views: list, coverage: list[Coverage]) -> str:
    dataset = DATASETS[name]
    first = variants[0].reports[next(iter(dataset.views))]
    lines = [f"## {name}: {first.evaluated} test requests scored ({first.requests - first.evaluated} excluded)"]
    profiles: dict[str, GapProfile] = {}
    for view in dataset.views:
        report = variants[0].reports[view]
        gaps, found = gap_table(best_variant(variants, view).reports[view])
        profiles = profiles or found
        lines += [
            "",
            f"### {view} costs",
            "",
            *variant_table(variants, view),
            "",
            *baseline_table(report),
            "",
            f"Router ({best_variant(variants, view).head}) against each baseline at every cost:",
            "",
            *gaps,
        ]
    if views:
        lines += [
            "",
            "### two-tier views (RouteLLM's metrics: x = share of calls to the dearer tier)",
            "",
            *two_tier_table(views),
        ]
    if coverage:
        lines += [
            "",
            "### quality guarantee: coverage across random calibration/test splits",
            "",
            *coverage_table(coverage),
        ]
    lines += ["", f"Targets ({next(iter(dataset.views))} costs):", *target_lines(dataset, variants, profiles)]
    for view_name, report, _ in views:
        value = (report.routellm or {}).get("routellm_apgr")
        verdict = (
            "met"
            if value is not None and value > ROUTELLM_BEST
            else f"missed{'' if value is None else f' by {ROUTELLM_BEST - value:.3f}'}"
        )
        lines.append(f"- routellm_apgr on {view_name}: {format_metric(value)}, target > {ROUTELLM_BEST}: {verdict}")
    return "\n".join(lines)


def best_variant(variants: list[Variant], view: str) -> Variant:
    """The variant with the highest gain over the static mix in a view."""
    return max(variants, key=lambda v: v.reports[view].router.metrics["gain_over_static"] or -1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data directory (default: %(default)s)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--encoders", nargs="+", default=["static"], choices=["static", "minilm"])
    parser.add_argument("--C", nargs="+", type=float, default=[0.1], help="inverse L2 strengths of the head")
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    parser.add_argument("--splits", type=int, default=200, help="random calibration/test splits for the coverage check")
    parser.add_argument("--quality-targets", nargs="+", type=float, default=[0.9, 0.95])
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--no-two-tier", action="store_true", help="skip the two-tier views")
    parser.add_argument("--json", type=Path, help="also write every variant's evaluation (without curves) here")
    parser.add_argument(
        "--workload-feature", action="store_true", help="also try the workload as an input of the head (issue 23)"
    )
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            work = Path(tmp) / name
            dataset = DATASETS[name]
            variants = run_variants(dataset, args.data, args.encoders, args.C, args.rules, work)
            views = [] if args.no_two_tier else two_tier_views(name, args.data, work)
            coverage = (
                coverage_check(dataset, args.data, args.quality_targets, args.confidence, args.splits, work)
                if args.splits
                else []
            )
            results[name] = variants
            print(render(name, variants, views, coverage), "\n", flush=True)
            if args.workload_feature:
                found = workload_feature_check(dataset, args.data, work)
                lines = [f"### {name}: the workload ({dataset.workload}) as an input of the head", ""]
                print("\n".join([*lines, *workload_feature_table(found)]), "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(to_json(results), indent=1))


def to_json(results: dict[str, list[Variant]]) -> dict:
    return {
        name: [
            {
                "encoder": v.encoder,
                "C": v.C,
                "rule": v.rule,
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


if __name__ == "__main__":
    main()
