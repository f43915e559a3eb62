"""Choosing a bundle's default routing rule and threshold on the validation rows of its training data.

The rule is the one with the best validation APGR. The threshold is either
- unguarded (`--quality-floor F`, the default with F = 0.95): the cheapest one keeping F of always-top quality
  on the validation rows themselves, which new requests miss about half the time; or
- guarded (`--quality-target Q --confidence C`): certified on the validation rows, used as calibration rows,
  to keep Q of always-top quality on new requests with probability at least C (`tierwise.training.fit.guarantee`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tierwise.classifier.bundle import PolicySpec
from tierwise.classifier.policy import RULES, rule_scores
from tierwise.training.evaluation.curves import Curve, known_rows, threshold_curve
from tierwise.training.evaluation.metrics import Anchors, apgr
from tierwise.training.evaluation.off_policy import ips_anchors, ips_curve
from tierwise.training.fit.guarantee import Certificate, QualityTarget, certify, nothing_certified

# Thresholds tried on served traffic, where each point is an inverse-propensity estimate (no exact sweep).
TRAFFIC_THRESHOLDS = np.linspace(0.0, 1.0, 201)

DEFAULT_QUALITY_FLOOR = 0.95


@dataclass(frozen=True)
class PolicyChoice:
    """The rule and threshold chosen on validation rows, with the numbers behind the choice."""

    spec: PolicySpec
    validation_apgr: dict[str, float | None]


def choose_policy(
    success: np.ndarray,
    cost: np.ndarray,
    probs: np.ndarray,
    rules: tuple[str, ...],
    tier_costs: Sequence[float],
    quality_floor: float = DEFAULT_QUALITY_FLOOR,
    target: QualityTarget | None = None,
) -> PolicyChoice:
    """Pick among `rules` the one with the best validation APGR, then its threshold (see the module doc).

    `tier_costs` are the bundle's per-tier costs (what the `utility` rule weighs when it serves). Every
    rule's validation APGR is recorded, so a bundle trained with one rule still says how the others would
    have done.
    """
    keep = known_rows(success, cost)
    success, cost, probs = success[keep], cost[keep], probs[keep]
    if len(success) == 0:
        return PolicyChoice(_no_validation_rows(rules[0], target), {})
    anchors = Anchors.from_outcomes(success, cost)
    scored = {rule: rule_scores(probs, rule, tier_costs) for rule in RULES}
    curves = {rule: threshold_curve(success, cost, scored[rule]) for rule in RULES}
    rule, scores, why_rule = _best_rule(curves, anchors, rules)
    if target is not None:
        guarded = _guarded(success, cost, scored[rule], rule, target, len(rules), why_rule)
        return PolicyChoice(guarded, scores)
    spec = _unguarded(curves[rule], anchors, rule, quality_floor, f"{len(success)} validation requests", why_rule)
    return PolicyChoice(spec, scores)


def choose_policy_on_traffic(
    outcomes: np.ndarray,
    probability: np.ndarray,
    cost: np.ndarray,
    probs: np.ndarray,
    rules: tuple[str, ...],
    tier_costs: Sequence[float],
    quality_floor: float = DEFAULT_QUALITY_FLOOR,
) -> PolicyChoice:
    """`choose_policy` (unguarded) on validation rows of served traffic: what the traffic revealed and the
    probability it had of revealing it (`tierwise.training.evaluation.off_policy`), each curve point an
    inverse-propensity estimate."""
    anchors = ips_anchors(outcomes, probability, cost)
    curves = {
        rule: ips_curve(outcomes, probability, cost, rule_scores(probs, rule, tier_costs), TRAFFIC_THRESHOLDS)
        for rule in RULES
    }
    rule, scores, why_rule = _best_rule(curves, anchors, rules)
    where = f"{len(outcomes)} validation requests of served traffic, weighted by inverse propensity"
    return PolicyChoice(_unguarded(curves[rule], anchors, rule, quality_floor, where, why_rule), scores)


def _best_rule(
    curves: dict[str, Curve], anchors: Anchors, rules: tuple[str, ...]
) -> tuple[str, dict[str, float | None], str]:
    """The rule with the best validation APGR among `rules`, every rule's APGR, and the reason in words."""
    scores = {rule: apgr(curve, anchors) for rule, curve in curves.items()}
    rule = max(rules, key=lambda r: scores[r] if scores[r] is not None else -1.0)
    versus = ", ".join(f"{r} {scores[r]:.3f}" for r in RULES if scores[r] is not None)
    picked = "rule by validation APGR" if len(rules) > 1 else f"rule {rule} as asked"
    return rule, scores, f"{picked} (validation APGR {versus})"


def _unguarded(
    curve: Curve, anchors: Anchors, rule: str, quality_floor: float, where: str, why_rule: str
) -> PolicySpec:
    """The cheapest threshold of `rule` keeping `quality_floor` of always-top quality on the validation rows."""
    reaching = np.flatnonzero(curve.quality >= quality_floor * anchors.top_quality - 1e-12)
    if reaching.size:
        best = reaching[np.argmin(curve.cost[reaching])]
        how = f"lowest validation cost reaching {quality_floor:.0%} of always-top quality"
    else:
        best = int(np.argmax(curve.quality))
        how = f"best validation quality (none reached {quality_floor:.0%} of always-top)"
    chosen_by = f"unguarded: {how} on {where}; {why_rule}"
    return PolicySpec(threshold=float(curve.settings[best]), rule=rule, chosen_by=chosen_by)


def _guarded(
    success: np.ndarray,
    cost: np.ndarray,
    scores: np.ndarray,
    rule: str,
    target: QualityTarget,
    families: int,
    why_rule: str,
) -> PolicySpec:
    """The certified threshold of `rule`, or every request to the top tier when none is certified."""
    found = certify(success, cost, scores, target, families)
    claim = f"{target.share:.0%} of always-top quality with probability {target.confidence:.0%}"
    if found.threshold is None:
        why = f"no threshold certified to keep {claim} on {found.calibration_requests} calibration requests"
        return _everything_to_top(found, why)
    how = (
        f"cheapest threshold certified to keep {claim} on {found.calibration_requests} calibration requests "
        f"(lower bound {found.quality_bound:.3f}); {why_rule}"
    )
    return PolicySpec(threshold=found.threshold, rule=rule, chosen_by=how, guarantee=found.to_json())


def _everything_to_top(found: Certificate, why: str) -> PolicySpec:
    """The guarded fallback: the absolute rule at threshold 1 sends every request to the top tier."""
    return PolicySpec(
        threshold=1.0, rule="absolute", chosen_by=f"{why}: every request to the top tier", guarantee=found.to_json()
    )


def _no_validation_rows(rule: str, target: QualityTarget | None) -> PolicySpec:
    """With no validation row known on every tier nothing can be chosen: 0.5, or the top tier when guarded."""
    if target is None:
        return PolicySpec(threshold=0.5, rule=rule, chosen_by="default: no validation rows")
    return _everything_to_top(nothing_certified(target, calibration_requests=0), "no validation rows to certify on")
