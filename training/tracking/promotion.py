"""Who holds the `champion` alias, and why: the only module that decides it, moves the aliases (through
`Registry`'s compare-and-sets) and writes each decision into the version's description.

A decision is a paragraph above the version's headline table (`headline.headline_table`, built from its run),
so a version's page says what it is, why, and the numbers behind it: a new version is placed (`place`), a
retrain's challenger is judged against the champion (`judge`), and `tierwise promote` moves the champion by hand
(`promote`); the version that loses the alias is described too.

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
On collected traffic each side's quality is its inverse-propensity estimate
(`tierwise.training.evaluation.traffic_eval`), resampled the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tierwise.registry.models import CHALLENGER, CHAMPION, DESCRIPTION, ModelRef, Registry
from tierwise.registry.store import DEFAULT_EXPERIMENT
from tierwise.training.evaluation.bootstrap import Interval, mean_interval, percentile_interval, resample_weights
from tierwise.training.tracking.headline import Facts, headline_table

if TYPE_CHECKING:  # the training stack: `tierwise promote` runs on the base install, without it
    from tierwise.classifier.bundle import PolicySpec
    from tierwise.training.evaluation.report import EvalReport
    from tierwise.training.evaluation.traffic_eval import TrafficEvaluation, TrafficPoint
    from tierwise.training.fit.train import TrainResult

QUALITY_TOLERANCE = 0.01
COST_TOLERANCE = 0.05
REFUSED_TAG = "champion_refused"


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


def _points(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def quality_text(difference: PairedDifference) -> str:
    """`+1.70 pp [+0.70, +2.80]`: challenger minus champion in success rate, in percentage points."""
    q = difference.quality_ci
    return f"{_points(difference.quality)} pp [{_points(q.lo)}, {_points(q.hi)}]"


def cost_text(difference: PairedDifference) -> str:
    """`+4.0% [+1.6%, +6.6%]`: the challenger's cost relative to the champion's."""
    c = difference.relative_cost_ci
    return f"{_percent(difference.relative_cost)} [{_percent(c.lo)}, {_percent(c.hi)}]"


def gate(difference: PairedDifference) -> tuple[bool, str]:
    """Whether the challenger beats the champion by the intervals (module doc), and why: the rule that held, or
    the one that failed, with the numbers that decided it."""
    quality, cost = difference.quality_ci, difference.relative_cost_ci
    q, c = f"quality {quality_text(difference)}", f"cost {cost_text(difference)}"
    tolerance = f"{100 * QUALITY_TOLERANCE:.2f} pp"
    if quality.lies_above(-QUALITY_TOLERANCE) and cost.lies_below(0.0):
        return True, f"as good on quality ({q}, lower bound above -{tolerance}) at lower cost ({c}, all below 0)"
    if quality.lies_above(0.0) and cost.lies_below(COST_TOLERANCE):
        return True, f"better on quality ({q}, all above 0) at no more than {COST_TOLERANCE:.0%} more cost ({c})"
    if quality.lies_above(0.0):
        moved = "rose" if difference.relative_cost >= 0 else "changed by"
        return False, (
            f"{q} is surely better, but cost {moved} {_percent(difference.relative_cost)} (upper bound "
            f"{_percent(cost.hi)} is over the +{COST_TOLERANCE:.0%} allowed)"
        )
    if quality.lies_below(0.0):
        return False, f"lower quality than the champion: {q} lies wholly below 0"
    if quality.lies_above(-QUALITY_TOLERANCE):
        return False, (
            f"not surely cheaper ({c}: upper bound {_percent(cost.hi)} is not below 0) nor surely better on "
            f"quality ({q}: lower bound {_points(quality.lo)} pp is not above 0)"
        )
    return False, (
        f"quality may be lower by more than the {tolerance} allowed ({q}: lower bound {_points(quality.lo)} pp)"
    )


def gate_rule() -> str:
    """The gate in one line, as `tierwise retrain` prints it."""
    return (
        f"promote if, per request on the same held-out rows (95% paired intervals): quality difference > "
        f"-{100 * QUALITY_TOLERANCE:.2f} pp and cost difference < 0, or quality difference > 0 and cost difference "
        f"< +{COST_TOLERANCE:.0%}"
    )


def gate_params() -> dict[str, float]:
    """The gate's margins, as a comparison run records them."""
    return {"gate_quality_tolerance_pp": 100 * QUALITY_TOLERANCE, "gate_cost_tolerance_pct": 100 * COST_TOLERANCE}


@dataclass(frozen=True)
class Placement:
    """Where a new version went: its alias, and why it may not be champion (empty when nothing speaks against it)."""

    version: str
    alias: str
    refused: list[str] = field(default_factory=list)


def describe(registry: Registry, name: str, version: str, decision: str) -> None:
    """A version's description: the decision about it, then the headline table of its run; and the model's
    description: who holds each alias, and why (each holder's decision)."""
    found = registry.version(ModelRef(name, version=str(version)))
    text = decision
    if found.run_id:
        run = registry.run(found.run_id)
        facts = Facts(run.data.metrics, run.data.params)
        text += "\n\n" + headline_table({f"v{version}": facts}, title=run.info.run_name)
    registry.describe(name, str(version), text)
    lines = [DESCRIPTION, ""]
    for alias in (CHAMPION, CHALLENGER):
        held = registry.alias_version(name, alias)
        if held is not None:
            said = registry.version(ModelRef(name, version=held)).description  # None: not registered by tierwise
            why = (said or "no decision recorded").split("\n")[0]
            lines.append(f"- **@{alias}: v{held}**: {why}")
    registry.describe_model(name, "\n".join(lines))


def place(registry: Registry, name: str, version: str, result: TrainResult) -> Placement:
    """Give a newly registered version its alias: `champion` when the model has none and nothing speaks against
    it (`fitness_problems`), else `challenger`, by one compare-and-set, so two registrations at once never both
    claim champion. A refusal is tagged on the version; the decision goes in its description."""
    refused = fitness_problems(result.evaluation, result.manifest.policy)
    if refused:
        registry.set_alias(name, CHALLENGER, version)
        registry.tag_version(name, version, REFUSED_TAG, "; ".join(refused))
        alias = CHALLENGER
        decision = "challenger, not made champion: " + "; ".join(refused) + "."
    else:
        alias = registry.claim(name, version)
        champion = registry.alias_version(name, CHAMPION)
        decision = (
            f"champion: the first version of {name} fit to serve (its gain over the static mix is not below 0"
            " on the held-out rows, and it keeps any quality target it was trained for)."
            if alias == CHAMPION
            else f"challenger: registered while v{champion} is champion; `tierwise retrain` promotes a "
            f"challenger that beats it, `tierwise promote {name} {version}` does by hand."
        )
    describe(registry, name, version, decision)
    return Placement(str(version), alias, refused)


def register_trained(
    result: TrainResult, registry: Registry, name: str, experiment: str = DEFAULT_EXPERIMENT
) -> Placement:
    """Record an already trained result as a new version of `name` and place it (tests, benchmarks, scripts
    that train first; `tierwise train` opens its run before training, so the run's duration covers it)."""
    from tierwise.training.tracking.run_logging import log_training_run  # the training stack (see above)

    tracked = log_training_run(result, registry, register=name, experiment=experiment)
    return place(registry, name, str(tracked.version), result)


def promote(registry: Registry, name: str, version: str, why: str) -> str | None:
    """Make `version` the champion, saying why in its description and in the description of the version it
    replaces; the version that was champion before (None if there was none)."""
    previous = registry.promote(name, str(version))
    replaced = f" (replacing v{previous})" if previous and previous != str(version) else ""
    describe(registry, name, version, f"champion{replaced}: {why}")
    if replaced:
        describe(registry, name, previous, f"no longer champion: v{version} replaced it: {why}")
    return previous


def judge(
    registry: Registry, name: str, challenger: str, champion: str, difference: PairedDifference, refused: list[str]
) -> tuple[bool, str]:
    """The retrain gate acted on: an unfit challenger is kept, else the gate decides; promoted or kept, the
    decision and its numbers go in the challenger's description. Whether it was promoted, and why."""
    promoted, reason = (False, "; ".join(refused)) if refused else gate(difference)
    how = f"by `tierwise retrain` on {difference.requests} held-out requests, against v{champion}: {reason}."
    if promoted:
        promote(registry, name, challenger, f"promoted {how}")
    else:
        describe(registry, name, challenger, f"kept as challenger {how}")
    return promoted, reason
