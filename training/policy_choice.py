"""Choosing a bundle's default routing rule and threshold on the validation rows of its training data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from classifier.bundle import PolicySpec
from classifier.policy import RULES, rule_scores
from training.evaluation.curves import Curve, known_rows, threshold_curve
from training.evaluation.metrics import Anchors, apgr
from training.evaluation.off_policy import ips_anchors, ips_curve

# Thresholds tried on served traffic, where each point is an inverse-propensity estimate (no exact sweep).
TRAFFIC_THRESHOLDS = np.linspace(0.0, 1.0, 201)

DEFAULT_QUALITY_FLOOR = 0.95


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
    return _pick(curves, anchors, rules, quality_floor, f"{len(success)} validation requests")


def choose_policy_on_traffic(
    outcomes: np.ndarray,
    probability: np.ndarray,
    cost: np.ndarray,
    probs: np.ndarray,
    rules: tuple[str, ...],
    quality_floor: float,
) -> PolicyChoice:
    """`choose_policy` on validation rows of served traffic: what the traffic revealed and the probability it
    had of revealing it (`training.evaluation.off_policy`), every curve point estimated by inverse propensity."""
    anchors = ips_anchors(outcomes, probability, cost)
    curves = {
        rule: ips_curve(outcomes, probability, cost, rule_scores(probs, rule), TRAFFIC_THRESHOLDS) for rule in RULES
    }
    where = f"{len(outcomes)} validation requests of served traffic, weighted by inverse propensity"
    return _pick(curves, anchors, rules, quality_floor, where)


def _pick(
    curves: dict[str, Curve], anchors: Anchors, rules: tuple[str, ...], quality_floor: float, where: str
) -> PolicyChoice:
    """The rule with the best APGR among `rules`, and its cheapest threshold reaching the quality floor."""
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
    chosen_by = f"{how} on {where}; {picked} (validation APGR {versus})"
    spec = PolicySpec(threshold=float(curve.settings[best]), rule=rule, chosen_by=chosen_by)
    return PolicyChoice(spec, scores)
