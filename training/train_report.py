"""The short report `tierwise train` prints: data, policy, held-out routing and calibration, speed, time."""

from __future__ import annotations

from training.train import TrainResult


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
    elif result.traffic_evaluation is not None:
        lines += ["held-out test split:", result.traffic_evaluation.table()]
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
