"""The training pipeline: logs -> labels -> embeddings -> calibrated head -> policy -> ONNX bundle -> report.

Rows whose split column says `test` are held out from fitting and threshold choice and only evaluated.
Without a split column, a deterministic 20% of requests (by request_id hash) is held out instead.
A further 20% of the training requests is the validation part the policy's rule and threshold are chosen on.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from classifier.bundle import Manifest, PolicySpec, sha256_file, write_manifest
from classifier.policy import RULES, rule_scores
from classifier.router import Router
from classifier.tiers import TierLadder
from training.encoders import embed, load_encoder
from training.evaluation.curves import known_rows, threshold_curve
from training.evaluation.evaluate import evaluate_router
from training.evaluation.frames import outcome_arrays
from training.evaluation.metrics import Anchors, apgr
from training.evaluation.report import EvalReport
from training.export import export_bundle
from training.head import TierHead
from training.labels import Labels, label_requests
from training.logs import AttemptLog, read_attempts

HOLDOUT_SHARE = 0.2
VALIDATION_SHARE = 0.2
DEFAULT_QUALITY_FLOOR = 0.95
LATENCY_CALLS = 300


def hashed_share(ids: pl.Series, share: float, salt: str) -> np.ndarray:
    """A deterministic pseudo-random `share` of ids, stable across runs and machines."""
    buckets = (ids.cast(pl.String) + salt).hash(seed=0).to_numpy() % 10_000
    return buckets < share * 10_000


def split_masks(frame: pl.DataFrame, split_column: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) masks: the split column's `test` rows, or a hashed 20% when the column is absent."""
    if split_column in frame.columns:
        test = (frame[split_column].cast(pl.String) == "test").fill_null(False).to_numpy()
    else:
        test = hashed_share(frame["request_id"], HOLDOUT_SHARE, "holdout")
    return ~test, test


def data_fingerprint(files: list[Path]) -> dict[str, Any]:
    """Content fingerprint of the training logs, so a model can be traced to the exact data."""
    entries = [{"path": str(p), "sha256": sha256_file(p)} for p in files]
    combined = hashlib.sha256("".join(e["sha256"] for e in entries).encode()).hexdigest()
    return {"fingerprint": combined[:16], "files": entries}


@dataclass(frozen=True)
class PolicyChoice:
    """The rule and threshold chosen on validation rows, with the numbers behind the choice."""

    spec: PolicySpec
    validation_apgr: dict[str, float | None]


def choose_policy(
    success: np.ndarray, cost: np.ndarray, probs: np.ndarray, rules: tuple[str, ...], quality_floor: float
) -> PolicyChoice:
    """Pick among `rules` the one with the best validation APGR, then its cheapest threshold reaching the floor.

    The floor is a share of always-top quality on the validation rows; if no threshold reaches it, the
    threshold with the best validation quality is taken. Every rule's validation APGR is recorded, so a
    bundle trained with one rule still says how the other would have done.
    """
    keep = known_rows(success, cost)
    success, cost, probs = success[keep], cost[keep], probs[keep]
    if len(success) == 0:
        return PolicyChoice(PolicySpec(threshold=0.5, rule=rules[0], chosen_by="default: no validation rows"), {})
    anchors = Anchors.from_outcomes(success, cost)
    curves = {rule: threshold_curve(success, cost, rule_scores(probs, rule)) for rule in RULES}
    scores = {rule: apgr(curve, anchors) for rule, curve in curves.items()}
    rule = max(rules, key=lambda r: scores[r] if scores[r] is not None else -1.0)
    curve = curves[rule]
    needed = quality_floor * anchors.top_quality
    reaching = np.flatnonzero(curve.quality >= needed - 1e-12)
    if reaching.size:
        best = reaching[np.argmin(curve.cost[reaching])]
        how = f"lowest validation cost reaching {quality_floor:.0%} of always-top quality"
    else:
        best = int(np.argmax(curve.quality))
        how = f"best validation quality (none reached {quality_floor:.0%} of always-top)"
    versus = ", ".join(f"{r} {scores[r]:.3f}" for r in RULES if scores[r] is not None)
    picked = "rule by validation APGR" if len(rules) > 1 else f"rule {rule} as asked"
    chosen_by = f"{how} on {len(success)} validation requests; {picked} (validation APGR {versus})"
    spec = PolicySpec(threshold=float(curve.settings[best]), rule=rule, chosen_by=chosen_by)
    return PolicyChoice(spec, scores)


def measure_latency(router: Router, prompts: list[str], calls: int = LATENCY_CALLS) -> dict[str, float]:
    """p50 and p99 of single `router.predict` calls in microseconds, on the given prompts."""
    if not prompts:
        return {}
    times = []
    for i in range(calls):
        start = time.perf_counter_ns()
        router.predict(prompts[i % len(prompts)])
        times.append((time.perf_counter_ns() - start) / 1000)
    return {"latency_p50_us": float(np.percentile(times, 50)), "latency_p99_us": float(np.percentile(times, 99))}


@dataclass
class TrainResult:
    """What a training run produced: the bundle, its manifest, the held-out evaluation and the run's facts."""

    bundle_dir: Path
    manifest: Manifest
    report: dict[str, Any]
    evaluation: EvalReport | None
    params: dict[str, Any]
    log: AttemptLog
    labels: Labels
    timings: dict[str, float] = field(default_factory=dict)


def summary_metrics(evaluation: EvalReport | None, latency: dict[str, float]) -> dict[str, float]:
    """The flat metrics a bundle and an MLflow run carry: routing on held-out rows, calibration, latency."""
    metrics: dict[str, float] = dict(latency)
    if evaluation is None:
        return metrics
    data = evaluation.to_json()
    for key in ("apgr", "cpt50", "cpt80", "cost_ratio_at_90", "cost_ratio_at_95", "cost_ratio_at_99", "aiq"):
        if data.get(key) is not None:
            metrics[key] = float(data[key])
    op = data["operating_point"]
    for key in ("cost_ratio", "quality_ratio", "quality", "under_routing_rate", "over_routing_rate"):
        if op.get(key) is not None:
            metrics[key] = float(op[key])
    metrics["exact_tier_accuracy"] = float(op["exact_tier_accuracy"])
    for tier, cal in data["calibration"].items():
        for key in ("ece", "accuracy"):
            if cal.get(key) is not None:
                metrics[f"{key}_{tier}"] = float(cal[key])
    random_apgr = data["baselines"]["random"].get("apgr")
    if random_apgr is not None:
        metrics["random_apgr"] = float(random_apgr)
    return metrics


def train_bundle(
    log_paths: list[str | Path],
    out_dir: str | Path,
    *,
    ladder: TierLadder | None = None,
    encoder: str = "static",
    split_column: str = "split",
    seed: int = 0,
    C: float = 0.1,
    threshold_rule: str = "auto",
    quality_floor: float = DEFAULT_QUALITY_FLOOR,
    success_threshold: float = 1.0,
    skip_invalid: bool = False,
    cache: bool = True,
) -> TrainResult:
    """Train a router on attempt logs and export it as a verified bundle directory."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    ladder = ladder or TierLadder.load()
    log = read_attempts(log_paths, success_threshold=success_threshold, skip_invalid=skip_invalid)
    labels = label_requests(log, ladder)
    frame = labels.frame
    train_mask, test_mask = split_masks(frame, split_column)
    if not train_mask.any():
        raise ValueError("no training requests: every request is in the test split")
    valid_mask = train_mask & hashed_share(frame["request_id"], VALIDATION_SHARE, f"validation-{seed}")
    fit_mask = train_mask & ~valid_mask
    success, cost = outcome_arrays(frame, ladder.names)
    timings["label_s"] = time.perf_counter() - started

    step = time.perf_counter()
    encoder_model = load_encoder(encoder)
    vectors = embed(frame["prompt"].to_list(), encoder_model, cache=cache)
    timings["embed_s"] = time.perf_counter() - step

    step = time.perf_counter()
    rules = RULES if threshold_rule == "auto" else (threshold_rule,)
    head = TierHead(C=C, random_state=seed).fit(vectors[fit_mask], success[fit_mask])
    choice = choose_policy(
        success[valid_mask], cost[valid_mask], head.predict_proba(vectors[valid_mask]), rules, quality_floor
    )
    head = TierHead(C=C, random_state=seed).fit(vectors[train_mask], success[train_mask])
    timings["fit_s"] = time.perf_counter() - step

    params = {
        "encoder": encoder,
        "head": "per-tier logistic regression + Platt scaling",
        "C": C,
        "calibration_folds": head.calibration_folds,
        "threshold_rule": threshold_rule,
        "quality_floor": quality_floor,
        "seed": seed,
        "split_column": split_column,
        "success_threshold": success_threshold,
        "tiers": ladder.names,
    }
    tier_costs = [float(np.nanmean(cost[train_mask, k])) for k in range(len(ladder))]
    manifest = Manifest(
        ladder=ladder.to_dict(),
        tier_costs_usd=tier_costs,
        policy=choice.spec,
        encoder=encoder_model.spec,
        data={
            **data_fingerprint(log.files),
            "requests": {
                "train": int(train_mask.sum()),
                "validation": int(valid_mask.sum()),
                "test": int(test_mask.sum()),
            },
            "statuses": dict(frame.group_by("status").len().iter_rows()),
        },
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    step = time.perf_counter()
    stamped = export_bundle(out_dir, encoder_model, head, manifest)
    router = Router.load(out_dir)
    evaluation = None
    if known_rows(success[test_mask], cost[test_mask]).any():
        train_rows = frame.filter(pl.Series(train_mask))
        evaluation = evaluate_router(router, frame, train_rows, split="test", split_column=split_column, cache=cache)
    latency = measure_latency(router, frame["prompt"].head(200).to_list())
    stamped = write_manifest(Path(out_dir), replace(stamped, metrics=summary_metrics(evaluation, latency)))
    timings["export_s"] = time.perf_counter() - step
    timings["total_s"] = time.perf_counter() - started
    return TrainResult(
        bundle_dir=Path(out_dir),
        manifest=stamped,
        report=evaluation.to_json() if evaluation else {},
        evaluation=evaluation,
        params=params,
        log=log,
        labels=labels,
        timings={**timings, **latency},
    )


def render_report(result: TrainResult) -> str:
    """The short report `tierwise train` prints: data, policy, held-out routing and calibration, speed."""
    manifest = result.manifest
    counts = manifest.data["requests"]
    lines = [
        f"bundle {result.bundle_dir} (version {manifest.version}, encoder {manifest.encoder.name})",
        f"requests: {counts['train']} train ({counts['validation']} of them validation), {counts['test']} test; "
        f"statuses {manifest.data['statuses']}",
        f"policy: rule {manifest.policy.rule}, threshold {manifest.policy.threshold:.3f} ({manifest.policy.chosen_by})",
    ]
    if result.evaluation is not None:
        lines += ["held-out test split:", result.evaluation.table()]
        lines.append(
            "per tier: "
            + ", ".join(
                f"{c.tier} accuracy {c.accuracy:.3f} ECE {c.ece:.3f}"
                for c in result.evaluation.calibration
                if c.accuracy is not None and c.ece is not None
            )
        )
    else:
        lines.append("no held-out requests with every tier known: no test metrics")
    metrics = manifest.metrics
    if "latency_p50_us" in metrics:
        lines.append(
            f"bundle latency (router.predict): p50 {metrics['latency_p50_us']:.0f} us, "
            f"p99 {metrics['latency_p99_us']:.0f} us"
        )
    timings = result.timings
    lines.append("time: " + ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in timings.items() if k.endswith("_s")))
    return "\n".join(lines)
