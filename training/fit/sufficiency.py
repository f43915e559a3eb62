"""Whether the logs can teach a router: enough observed outcomes on every tier, and not mostly censored requests.

A tier's head learns only from the training requests that tried that tier. With none (the usual start: every
request ran on the top model), the head answers a constant and the router would send requests to the tier
blindly; training refuses instead, and says which `tierwise replay` would fill the gap.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import numpy as np
import polars as pl
from tierwise.classifier.tiers import TierLadder
from tierwise.training.data.attempts import REFERENCE_COLUMNS
from tierwise.training.data.labels import CENSORED, Labels
from tierwise.training.data.logs import AttemptLog, LogError

DEFAULT_MIN_OUTCOMES = 50
CENSORED_WARNING_SHARE = 0.5


class TooFewOutcomesError(LogError):
    """A tier with too few observed outcomes in the training requests to learn anything from."""


@dataclass(frozen=True)
class TierOutcomes:
    """Per tier: how many training requests tried it, and how many of them a replay could fill in."""

    observed: dict[str, int]
    replayable: dict[str, int]
    minimum: int

    @property
    def short(self) -> list[str]:
        """The tiers below the minimum, cheapest first."""
        return [tier for tier, count in self.observed.items() if count < self.minimum]


def tier_outcomes(labels: Labels, train: np.ndarray, minimum: int) -> TierOutcomes:
    """Count each tier's observed outcomes on the training rows, and the censored ones a replay would try there.

    A replay tries a censored request's untried tiers below its cheapest success (`tierwise.training.replay.censored`).
    """
    frame = labels.frame.filter(pl.Series(train))
    observed, replayable = {}, {}
    cheapest = pl.col("label").replace_strict(labels.ladder.names, list(range(len(labels.ladder))), default=None)
    for index, tier in enumerate(labels.ladder.names):
        untried = pl.col(f"success_{tier}").is_null()
        below_success = cheapest.is_null() | (cheapest > index)
        observed[tier] = frame.height - int(frame.select(untried.sum()).item())
        replayable[tier] = frame.filter((pl.col("status") == CENSORED) & untried & below_success).height
    return TierOutcomes(observed, replayable, minimum)


def replay_command(log: AttemptLog, ladder: TierLadder) -> str:
    """The `tierwise replay ... --dry-run` that shows what filling the censored requests of these logs would cost.

    Logs without a reference answer column are graded by a judge model (the exact grader needs a reference).
    """
    words = ["tierwise", "replay", *(str(path) for path in log.files)]
    if not ladder.source.startswith("<"):
        words += ["--tiers", ladder.source]
    if log.success_threshold != 1.0:
        words += ["--success-threshold", f"{log.success_threshold:g}"]
    if not set(REFERENCE_COLUMNS) & set(log.columns):
        words += ["--grader", "judge"]
    return shlex.join([*words, "--out", "replayed.parquet", "--dry-run"])


def refuse_short_tiers(outcomes: TierOutcomes, log: AttemptLog, ladder: TierLadder) -> None:
    """Raise `TooFewOutcomesError` naming every short tier, the counts, and what would fill them."""
    counts = ", ".join(f"{tier} {count}" for tier, count in outcomes.observed.items())
    lines = [
        f"too few observed outcomes to train tier(s) {', '.join(outcomes.short)}: a tier needs at least "
        f"{outcomes.minimum} training requests that tried it (--min-outcomes-per-tier); observed per tier: {counts}."
    ]
    fillable = {tier: outcomes.replayable[tier] for tier in outcomes.short if outcomes.replayable[tier]}
    if fillable:
        would = ", ".join(f"{count} on {tier}" for tier, count in fillable.items())
        lines.append(f"A replay would try {would}; see what it costs (nothing is sent) with:")
        lines.append(f"  {replay_command(log, ladder)}")
        lines.append("then train on the logs and replayed.parquet together.")
    unfillable = [tier for tier in outcomes.short if not outcomes.replayable[tier]]
    if unfillable:
        lines.append(
            f"A replay cannot fill {', '.join(unfillable)} (it tries only tiers below a request's cheapest success): "
            "log attempts on it."
        )
    lines.append("Or train without the short tiers: --drop-untrained-tiers.")
    if log.selection:
        lines.append(f"The logs were narrowed by --window to {log.selection}: a wider window keeps more.")
    raise TooFewOutcomesError("\n".join(lines))


def without_tiers(ladder: TierLadder, dropped: list[str]) -> TierLadder:
    """The ladder minus `dropped`, refusing to leave fewer than two tiers to route between."""
    kept = tuple(tier for tier in ladder.tiers if tier.name not in dropped)
    if len(kept) < 2:
        raise TooFewOutcomesError(
            f"dropping the tiers without enough outcomes ({', '.join(dropped)}) leaves "
            f"{[t.name for t in kept]}: nothing to route between"
        )
    return TierLadder(kept, source=ladder.source)


def censored_warning(labels: Labels, log: AttemptLog) -> str | None:
    """A warning line when more than half of the requests are censored, else None."""
    censored = labels.frame.filter(pl.col("status") == CENSORED).height
    total = labels.frame.height
    if total == 0 or censored <= CENSORED_WARNING_SHARE * total:
        return None
    return (
        f"warning: {censored} of {total} requests ({censored / total:.0%}) are censored (a cheaper tier than their "
        "cheapest success was never tried): they teach only the tiers they tried and no evaluation can score them; "
        f"see what settling them would cost with: {replay_command(log, labels.ladder)}"
    )
