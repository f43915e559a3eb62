"""Who may be champion: a version provably below the static mix, or missing its own quality target on the
held-out rows, is refused; a version with no evidence against it is not."""

from __future__ import annotations

import numpy as np
from tierwise.classifier.bundle import PolicySpec
from tierwise.training.evaluation.report import build_report
from tierwise.training.tracking.promotion import fitness_problems

TIERS = ["cheap", "dear"]


def outcomes(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two tiers at costs 1 and 4: the cheap one solves 30% of requests, the dear one 80% (nested)."""
    rng = np.random.default_rng(seed)
    draw = rng.random(n)
    success = np.column_stack([draw < 0.3, draw < 0.8]).astype(float)
    return success, np.tile([1.0, 4.0], (n, 1))


def test_a_router_that_never_leaves_the_cheap_tier_is_provably_below_the_static_mix():
    success, cost = outcomes()
    stuck = build_report(TIERS, success, cost, np.ones_like(success), threshold=0.5)
    (problem,) = fitness_problems(stuck, PolicySpec(threshold=0.5))
    assert problem.startswith("its gain over the static mix is below 0 on the held-out rows (-0.")


def informed_probs(success: np.ndarray, seed: int = 1) -> np.ndarray:
    """A router that knows who needs the dear tier (P low), who is hopeless (P middling) and who is easy (P high)."""
    noise = np.random.default_rng(seed).normal(0, 0.03, len(success))
    cheap = np.where(success[:, 0] == 1, 0.9, np.where(success[:, 1] == 1, 0.2, 0.5)) + noise
    return np.column_stack([np.clip(cheap, 0, 1), np.full(len(success), 0.95)])


def test_an_informed_router_is_fit_unless_it_misses_its_quality_target():
    success, cost = outcomes()
    informed = build_report(TIERS, success, cost, informed_probs(success), threshold=0.6)
    assert informed.intervals["gain_over_static"].lies_above(0.0)
    assert fitness_problems(informed, PolicySpec(threshold=0.6)) == []
    assert fitness_problems(informed, PolicySpec(threshold=0.6, guarantee={"quality_target": 0.95})) == []
    # at threshold 0 everything stays on the cheap tier: 0.3 / 0.8 of the top tier's quality
    cheap = build_report(TIERS, success, cost, informed_probs(success), threshold=0.0)
    problems = fitness_problems(cheap, PolicySpec(threshold=0.0, guarantee={"quality_target": 0.95}))
    share = success[:, 0].mean() / success[:, 1].mean()
    assert problems == [f"it misses its quality target on the held-out rows ({share:.3f} of always-top < 0.95)"]
    assert fitness_problems(cheap, PolicySpec(threshold=0.0)) == []  # no target promised, none missed
    assert fitness_problems(None, PolicySpec(threshold=0.0)) == []  # nothing measured, nothing against it
