"""A quality target that holds on new requests: the default threshold certified on calibration rows (issue 13).

The claim, for a target share Q and confidence C: with probability at least C over the draw of the
calibration rows, routing new requests like them at the chosen threshold keeps at least Q of the top tier's
success rate, i.e. E[success of the chosen tier] >= Q x E[success of the top tier].

How (Learn then Test, Angelopoulos et al. 2021, with binomial bounds). At threshold t, compare each calibration
request's chosen tier with the top tier: `both` succeed, `lost` (the top succeeds, the chosen tier fails),
`gained` (the chosen tier succeeds, the top fails). The quality share is (both + gained) / (both + lost) in
population means, and each of the three is the mean of a 0/1 variable, so one-sided Clopper-Pearson bounds at
level delta/3 each hold together with probability >= 1 - delta and give a lower bound on the share. Thresholds are
tested in a fixed order, from the most conservative (t = 1) down a fixed grid; each is certified while its
share bound is >= Q, and the first that is not ends the sequence (fixed-sequence testing: no correction for the
number of thresholds). The cheapest certified threshold on the calibration rows is chosen. delta = 1 - C is
divided by the number of rules the rule choice could have picked (Bonferroni), because that choice is made on
the same rows. When no threshold is certified, every request goes to the top tier (absolute rule, threshold 1),
which meets the target by construction.

A binomial bound on each part is tight because `lost` and `gained` are rare; a bound on the whole difference
(Hoeffding-Bentkus on a [0, 1] loss) would treat its small variance as the largest possible and certify almost
nothing on a few hundred rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta
from tierwise.training.evaluation.curves import check_outcomes, check_probs

THRESHOLD_GRID = np.linspace(1.0, 0.0, 1001)
METHOD = "Learn then Test (fixed sequence, t = 1 down to 0 by 0.001), Clopper-Pearson bounds on both/lost/gained"


@dataclass(frozen=True)
class QualityTarget:
    """Keep at least `share` of always-top quality on new requests, with probability at least `confidence`."""

    share: float
    confidence: float = 0.95


@dataclass(frozen=True)
class Certificate:
    """The certified choice on calibration rows: a threshold (None: none certified, send everything to the top
    tier), the lower confidence bound on its quality share, and what the bound was computed from."""

    target: QualityTarget
    threshold: float | None
    quality_bound: float
    calibration_requests: int
    level: float

    def to_json(self) -> dict[str, float | int | bool | str]:
        """The manifest's `policy.guarantee` record."""
        return {
            "quality_target": self.target.share,
            "confidence": self.target.confidence,
            "certified": self.threshold is not None,
            "quality_lower_bound": self.quality_bound,
            "calibration_requests": self.calibration_requests,
            "level_per_test": self.level,
            "method": METHOD,
        }


def _lower(successes: np.ndarray, trials: int, alpha: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound of a success probability (0 with no success)."""
    safe = np.maximum(successes, 1)
    return np.where(successes > 0, beta.ppf(alpha, safe, trials - safe + 1), 0.0)


def _upper(successes: np.ndarray, trials: int, alpha: float) -> np.ndarray:
    """One-sided Clopper-Pearson upper bound of a success probability (1 when every trial succeeded)."""
    safe = np.minimum(successes, trials - 1)
    return np.where(successes < trials, beta.ppf(1.0 - alpha, safe + 1, trials - safe), 1.0)


def share_lower_bound(both: np.ndarray, lost: np.ndarray, gained: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Lower confidence bound of (both + gained) / (both + lost) from counts on n rows, each part at `alpha`.

    The share is monotone in `both`, so its smallest value over the box of the three bounds sits at one end.
    """
    both_lo, both_hi = _lower(both, n, alpha), _upper(both, n, alpha)
    lost_hi, gained_lo = _upper(lost, n, alpha), _lower(gained, n, alpha)
    return np.minimum((both_lo + gained_lo) / (both_lo + lost_hi), (both_hi + gained_lo) / (both_hi + lost_hi))


def certify(
    success: np.ndarray, cost: np.ndarray, scores: np.ndarray, target: QualityTarget, families: int = 1
) -> Certificate:
    """Certify the cheapest threshold of a rule's `scores` on fully known calibration rows (see the module doc).

    `families` is how many rules the rule was chosen among on these same rows.
    """
    success, cost = check_outcomes(success, cost)
    scores = check_probs(scores, success.shape)
    n = success.shape[0]
    level = (1.0 - target.confidence) / families
    leave_at = np.maximum.accumulate(scores, axis=1)[:, :-1]
    chosen = (leave_at[None, :, :] < THRESHOLD_GRID[:, None, None]).sum(axis=2)
    rows = np.arange(n)[None, :]
    chosen_success, top = success[rows, chosen].astype(bool), success[:, -1].astype(bool)[None, :]
    counts = [(chosen_success & top).sum(1), (~chosen_success & top).sum(1), (chosen_success & ~top).sum(1)]
    bound = share_lower_bound(*counts, n=n, alpha=level / 3.0)
    failed = np.flatnonzero(bound < target.share)
    certified = failed[0] if failed.size else len(THRESHOLD_GRID)
    if certified == 0:
        return nothing_certified(target, n, families)
    mean_cost = cost[rows, chosen[:certified]].mean(axis=1)
    best = int(np.argmin(mean_cost))
    return Certificate(target, float(THRESHOLD_GRID[best]), float(bound[best]), n, level)


def nothing_certified(target: QualityTarget, calibration_requests: int, families: int = 1) -> Certificate:
    """The certificate of the fallback, every request to the top tier: its share is 1 by construction."""
    return Certificate(target, None, 1.0, calibration_requests, (1.0 - target.confidence) / families)
