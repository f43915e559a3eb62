"""The short report `tierwise train` prints: data, policy, held-out routing and calibration, speed, time."""

from __future__ import annotations

from tierwise.training.evaluation.table import render_table
from tierwise.training.fit.sufficiency import censored_warning
from tierwise.training.fit.train import TrainResult


def data_lines(result: TrainResult) -> list[str]:
    """What the router learned from: request counts and statuses, dropped tiers, and a censoring warning."""
    manifest = result.manifest
    counts = manifest.data["requests"]
    sample = (
        f", a hashed sample of the {counts['sampled_from'] - counts['test']} training requests (--max-train-requests)"
        if "sampled_from" in counts
        else ""
    )
    lines = [
        f"requests: {counts['train']} train ({counts['validation']} of them validation{sample}), "
        f"{counts['test']} test; statuses {manifest.data['statuses']}"
    ]
    if result.dropped_tiers:
        dropped = ", ".join(f"{tier} ({count} outcomes)" for tier, count in result.dropped_tiers.items())
        lines.append(f"dropped tiers without enough outcomes: {dropped}; routing between {result.labels.ladder.names}")
    warning = censored_warning(result.labels, result.log)
    return lines + ([warning] if warning else [])


def target_lines(result: TrainResult) -> list[str]:
    """How the held-out rows bear out a guarded quality target."""
    guarantee = result.manifest.policy.guarantee
    share = result.evaluation.to_json()["operating_point"]["quality_ratio"] if result.evaluation else None
    if not guarantee or share is None:
        return []
    target = guarantee["quality_target"]
    verdict = "kept" if share >= target else "MISSED"
    return [f"quality target {target:g}: {verdict} on the held-out rows ({share:.3f} of always-top)"]


def render_report(result: TrainResult) -> str:
    """The short report `tierwise train` prints: data, policy, held-out routing and calibration, speed."""
    manifest = result.manifest
    lines = [
        f"bundle {result.bundle_dir} (version {manifest.version}, encoder {manifest.encoder.name})",
        *data_lines(result),
        f"policy: rule {manifest.policy.rule}, threshold {manifest.policy.threshold:.3f} ({manifest.policy.chosen_by})",
    ]
    if result.evaluation is not None:
        lines += ["held-out test split:", render_table(result.evaluation), *target_lines(result)]
        lines.append(
            "per tier: "
            + ", ".join(
                f"{c.tier} accuracy {c.accuracy:.3f} ECE {c.ece:.3f}"
                for c in result.evaluation.calibration
                if c.accuracy is not None and c.ece is not None
            )
        )
    elif result.traffic_evaluation is not None:
        lines += ["held-out test split:", result.traffic_evaluation.table()]
    else:
        lines.append("no held-out requests with every tier known: no test metrics")
    lines += _time_lines(result)
    metrics = manifest.metrics
    if "latency_p50_us" in metrics:
        lines.append(
            f"bundle latency (router.predict): p50 {metrics['latency_p50_us']:.0f} us, "
            f"p99 {metrics['latency_p99_us']:.0f} us"
        )
    timings = result.timings
    lines.append("time: " + ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in timings.items() if k.endswith("_s")))
    return "\n".join(lines)


def _time_lines(result: TrainResult) -> list[str]:
    """Each tier's time model (p50/p90 and where it comes from), or which tiers have no timings."""
    times = result.manifest.tier_time_models()
    if times is None:
        return [
            f"time model: none (no latency_ms in the logs and no speed figures in the ladder for "
            f"{', '.join(result.untimed_tiers)}): latency budgets cannot be used with this bundle"
        ]
    names = result.labels.ladder.names
    return ["time model per attempt:"] + [
        f"  {name:<10} p50 {t.quantile(0.5) / 1000:.2f}s  p90 {t.quantile(0.9) / 1000:.2f}s  ({t.source})"
        for name, t in zip(names, times, strict=True)
    ]
