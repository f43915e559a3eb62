"""When a registered version may hold the `champion` alias: its own fitness, and the gate against the champion.

Fitness (any version about to become champion: the first one registered, or a retrain's challenger):
- its gain over the static mix (the best fixed mix of tiers) must not be provably negative: a version whose
  95% interval of `gain_over_static` on the held-out rows lies wholly below 0 is refused;
- a version trained with a guarded quality target Q must reach Q x always-top quality on the held-out rows.

The gate (a challenger against the champion, both scored on the same held-out rows at their default thresholds):
per request, challenger minus champion in success and in cost; 95% intervals from a paired bootstrap (the same
resamples of the same requests for both). The challenger is promoted when it is
- as good on quality at lower cost: the quality difference's interval lies above -QUALITY_TOLERANCE and the
  cost difference's wholly below 0; or
- better on quality at no more than COST_TOLERANCE more cost: the quality difference's interval lies wholly
  above 0 and the relative cost difference's below +COST_TOLERANCE.
A test split of a few hundred requests puts a few points of quality and several percent of cost inside the
intervals, so a challenger that is only a little better stays challenger until more logs make it sure.
On collected traffic each side's quality is its inverse-propensity estimate (`tierwise.training.evaluation.traffic`),
resampled the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tierwise.classifier.bundle import PolicySpec
from tierwise.training.evaluation.bootstrap import Interval, mean_interval, percentile_interval, resample_weights
from tierwise.training.evaluation.report import EvalReport
from tierwise.training.evaluation.traffic import TrafficEvaluation, TrafficPoint

QUALITY_TOLERANCE = 0.01
COST_TOLERANCE = 0.05


def fitness_problems(evaluation: EvalReport | None, policy: PolicySpec) -> list[str]:
    """Why a version must not become champion (empty: nothing against it). Unevaluated versions have none."""
    if evaluation is None:
        return []
    problems = []
    gain = evaluation.intervals["gain_over_static"]
    if gain.lies_below(0.0):
        problems.append(
            f"its gain over the static mix is below 0 on the held-out rows "
            f"({evaluation.router.metrics['gain_over_static']:+.3f}, 95% interval [{gain.lo:+.3f}, {gain.hi:+.3f}]): "
            "a fixed mix of tiers does better"
        )
    target = (policy.guarantee or {}).get("quality_target")
    share = evaluation.to_json()["operating_point"]["quality_ratio"]
    if target is not None and share is not None and share < target:
        problems.append(f"it misses its quality target on the held-out rows ({share:.3f} of always-top < {target:g})")
    return problems


@dataclass(frozen=True)
class PairedDifference:
    """Challenger minus champion on the same requests: quality (success rate) and cost relative to the champion."""

    requests: int
    quality: float
    quality_ci: Interval
    relative_cost: float
    relative_cost_ci: Interval

    @classmethod
    def of(cls, challenger: EvalReport, champion: EvalReport) -> PairedDifference:
        """The paired difference of two evaluations of the same rows (refused when the rows differ)."""
        if challenger.scored_ids is None or challenger.scored_ids != champion.scored_ids:
            raise ValueError("challenger and champion were not scored on the same requests; they cannot be paired")
        ours, theirs = challenger.operating_point, champion.operating_point
        weights = resample_weights(len(ours.success))
        resampled_cost = (weights @ ours.cost) / (weights @ theirs.cost) - 1.0
        return cls(
            requests=len(ours.success),
            quality=float(np.mean(ours.success - theirs.success)),
            quality_ci=mean_interval(ours.success - theirs.success, weights),
            relative_cost=float(ours.cost.sum() / theirs.cost.sum() - 1.0),
            relative_cost_ci=percentile_interval(resampled_cost),
        )

    @classmethod
    def on_traffic(cls, challenger: TrafficEvaluation, champion: TrafficEvaluation) -> PairedDifference:
        """The paired difference of two evaluations of the same collected traffic: each side's quality is its
        self-normalised inverse-propensity estimate, recomputed on the same resamples of the requests."""
        if challenger.request_ids != champion.request_ids:
            raise ValueError("challenger and champion were not scored on the same requests; they cannot be paired")
        ours, theirs = challenger.operating_point, champion.operating_point
        resamples = resample_weights(len(ours.success))

        def quality(point: TrafficPoint, weights: np.ndarray) -> np.ndarray:
            return (weights @ (point.weights * point.success)) / (weights @ point.weights)

        everyone = np.ones((1, len(ours.success)))
        with np.errstate(invalid="ignore", divide="ignore"):
            difference = quality(ours, resamples) - quality(theirs, resamples)
            resampled_cost = (resamples @ ours.cost) / (resamples @ theirs.cost) - 1.0
        return cls(
            requests=len(ours.success),
            quality=float((quality(ours, everyone) - quality(theirs, everyone))[0]),
            quality_ci=percentile_interval(difference),
            relative_cost=float(ours.cost.sum() / theirs.cost.sum() - 1.0),
            relative_cost_ci=percentile_interval(resampled_cost),
        )


def gate(difference: PairedDifference) -> tuple[bool, str]:
    """Whether the challenger beats the champion by the intervals (module doc), and why."""
    quality, cost = difference.quality_ci, difference.relative_cost_ci
    if quality.lies_above(-QUALITY_TOLERANCE) and cost.lies_below(0.0):
        return True, "as good on quality at lower cost"
    if quality.lies_above(0.0) and cost.lies_below(COST_TOLERANCE):
        return True, f"better on quality at no more than {COST_TOLERANCE:.0%} more cost"
    if quality.lies_below(0.0):
        return False, "lower quality than the champion"
    return False, "not surely cheaper, nor surely better on quality"


def gate_rule() -> str:
    """The gate in one line, as `tierwise retrain` prints it."""
    return (
        f"promote if, per request on the same held-out rows (95% paired intervals): quality difference > "
        f"-{QUALITY_TOLERANCE} and cost difference < 0, or quality difference > 0 and cost difference < "
        f"+{COST_TOLERANCE:.0%}"
    )
