"""The flat metrics a bundle manifest, an MLflow run and `tierwise compare` carry, from one evaluation."""

from __future__ import annotations

from typing import Any, Protocol

from tierwise.training.evaluation.report import EvalReport

OPERATING_KEYS = ("cost_ratio", "quality_ratio", "quality", "under_routing_rate", "over_routing_rate")


class Headlined(Protocol):
    """An evaluation with headline metrics (`EvalReport`, or `TrafficEvaluation` on collected traffic)."""

    def headline(self) -> dict[str, Any]: ...


def flat_headline(evaluation: Headlined) -> dict[str, float]:
    """The router's headline metrics as numbers: `<key>_ci: [lo, hi]` becomes `<key>_ci_lo` and `<key>_ci_hi`;
    undefined values and unreached interval ends are left out (MLflow takes only finite numbers)."""
    flat: dict[str, float] = {}
    for key, value in evaluation.headline().items():
        if isinstance(value, list):
            flat |= {f"{key}_{end}": float(v) for end, v in zip(("lo", "hi"), value, strict=True) if v is not None}
        elif value is not None:
            flat[key] = float(value)
    return flat


def summary_metrics(evaluation: EvalReport | None, latency: dict[str, float]) -> dict[str, float]:
    """Routing on held-out rows, calibration and latency as one flat name -> number map."""
    metrics: dict[str, float] = dict(latency)
    if evaluation is None:
        return metrics
    metrics |= flat_headline(evaluation)
    data = evaluation.to_json()
    op = data["operating_point"]
    for key in OPERATING_KEYS:
        if op.get(key) is not None:
            metrics[key] = float(op[key])
    metrics["exact_tier_accuracy"] = float(op["exact_tier_accuracy"])
    for tier, cal in data["calibration"].items():
        for key in ("ece", "accuracy"):
            if cal.get(key) is not None:
                metrics[f"{key}_{tier}"] = float(cal[key])
    for name in ("static_mix", "random"):
        baseline_apgr = data["baselines"][name].get("apgr")
        if baseline_apgr is not None:
            metrics[f"{name}_apgr"] = float(baseline_apgr)
    return metrics
