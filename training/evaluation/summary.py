"""The flat metrics a bundle manifest, an MLflow run and `tierwise compare` carry, from one evaluation."""

from __future__ import annotations

from training.evaluation.report import EvalReport

CURVE_KEYS = ("apgr", "cpt50", "cpt80", "cost_ratio_at_90", "cost_ratio_at_95", "cost_ratio_at_99", "aiq")
OPERATING_KEYS = ("cost_ratio", "quality_ratio", "quality", "under_routing_rate", "over_routing_rate")


def summary_metrics(evaluation: EvalReport | None, latency: dict[str, float]) -> dict[str, float]:
    """Routing on held-out rows, calibration and latency as one flat name -> number map."""
    metrics: dict[str, float] = dict(latency)
    if evaluation is None:
        return metrics
    data = evaluation.to_json()
    for key in CURVE_KEYS:
        if data.get(key) is not None:
            metrics[key] = float(data[key])
    op = data["operating_point"]
    for key in OPERATING_KEYS:
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
