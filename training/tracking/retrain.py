"""Retraining from new logs with a gate: a challenger replaces the champion only when it is really better.

Both are evaluated on the same held-out rows of the new logs, at their own default thresholds (what each
would serve). Quality is the success rate of the chosen tier; cost is the mean cost per request. The
challenger is promoted when it is
- as good on quality (at most QUALITY_TOLERANCE below the champion) at lower cost (at least COST_MARGIN
  cheaper, relative), or
- better on quality (at least QUALITY_MARGIN above) at no more cost (at most COST_TOLERANCE dearer, relative:
  the slack of measuring cost on a few hundred requests).
A test split of a few hundred requests moves the success rate by a third of a point per request, hence
margins of a point or two rather than zero.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import polars as pl

from classifier.router import Router
from classifier.tiers import TierLadder
from training.evaluation.evaluate import evaluate_router
from training.logs import read_attempts
from training.tracking.registry import CHAMPION, alias_version, bundle_for_version, client, promote
from training.tracking.run_logging import log_training_run
from training.train import train_bundle

QUALITY_TOLERANCE = 0.01
COST_MARGIN = 0.02
QUALITY_MARGIN = 0.02
COST_TOLERANCE = 0.01


@dataclass(frozen=True)
class Standing:
    """What a version does on the shared held-out rows at its default threshold."""

    version: str
    quality: float
    cost_usd: float
    cost_ratio: float
    apgr: float | None


@dataclass(frozen=True)
class RetrainDecision:
    """The gate's verdict, with both rows of numbers behind it."""

    challenger: Standing
    champion: Standing | None
    promoted: bool
    reason: str
    note: str | None = None

    def render(self) -> str:
        """The decision and both rows, as printed by `tierwise retrain`."""
        lines = [self.note] if self.note else []
        lines += [
            f"margins: promote if quality >= champion - {QUALITY_TOLERANCE} at cost <= champion x "
            f"{1 - COST_MARGIN:g}, or quality >= champion + {QUALITY_MARGIN} at cost <= champion x "
            f"{1 + COST_TOLERANCE:g}",
            f"{'':<12}{'version':>8}{'quality':>10}{'cost/req USD':>14}{'cost x top':>12}{'APGR':>8}",
        ]
        for role, row in (("challenger", self.challenger), ("champion", self.champion)):
            if row is not None:
                apgr = "-" if row.apgr is None else f"{row.apgr:.3f}"
                lines.append(
                    f"{role:<12}{row.version:>8}{row.quality:>10.4f}{row.cost_usd:>14.6f}{row.cost_ratio:>12.3f}"
                    f"{apgr:>8}"
                )
        verdict = "PROMOTED to champion" if self.promoted else "kept as challenger"
        lines.append(f"decision: v{self.challenger.version} {verdict}: {self.reason}")
        return "\n".join(lines)


def gate(challenger: Standing, champion: Standing) -> tuple[bool, str]:
    """Whether the challenger beats the champion by the margins, and why."""
    if challenger.quality >= champion.quality - QUALITY_TOLERANCE and challenger.cost_usd <= champion.cost_usd * (
        1 - COST_MARGIN
    ):
        return True, "as good on quality at lower cost"
    if challenger.quality >= champion.quality + QUALITY_MARGIN and challenger.cost_usd <= champion.cost_usd * (
        1 + COST_TOLERANCE
    ):
        return True, "better on quality at no more cost"
    if challenger.quality < champion.quality - QUALITY_TOLERANCE:
        return False, "lower quality than the champion"
    return False, "not cheaper, and not better on quality, by the margins"


def standing(version: str, router: Router, labels: pl.DataFrame, split: str, split_column: str = "split") -> Standing:
    """Evaluate one version on the held-out rows."""
    report = evaluate_router(router, labels, split=split, split_column=split_column).to_json()
    point = report["operating_point"]
    return Standing(version, point["quality"], point["cost_usd"], point["cost_ratio"], report.get("apgr"))


def recent_logs(
    logs: list[str], window_days: float, out_dir: Path, success_threshold: float = 1.0, skip_invalid: bool = False
) -> tuple[list[str], str]:
    """The requests last attempted within `window_days` of the newest timestamp, as one Parquet file.

    Whole requests are kept or dropped (by their latest attempt), so a request's label never loses the
    attempts that made it. The window ends at the newest timestamp in the logs, not at today, so the same
    logs always give the same window. Returns the file and a line saying what was kept.
    """
    frame = read_attempts(logs, success_threshold=success_threshold, skip_invalid=skip_invalid).frame
    if "timestamp" not in frame.columns:
        raise ValueError("--window needs a timestamp column in the logs")
    stamps = frame["timestamp"]
    if stamps.dtype == pl.String:
        stamps = stamps.str.to_datetime(time_zone="UTC", strict=False)
    newest = stamps.max()
    if newest is None:
        raise ValueError("--window: no attempt has a readable timestamp")
    latest = frame.select(stamps.alias("_stamp"), "request_id").select(pl.col("_stamp").max().over("request_id"))
    recent = frame.filter((latest["_stamp"] >= newest - timedelta(days=window_days)).fill_null(False))
    path = out_dir / "window.parquet"
    recent.drop([c for c in recent.columns if c.startswith("_")]).write_parquet(path)
    requests = (recent["request_id"].n_unique(), frame["request_id"].n_unique())
    note = f"window: {requests[0]} of {requests[1]} requests last tried within {window_days:g} days of {newest}"
    return [str(path)], note


def retrain(
    name: str,
    logs: list[str],
    *,
    ladder: TierLadder | None = None,
    window_days: float | None = None,
    out: str | Path | None = None,
    split: str = "test",
    experiment: str = "tierwise",
    tracking: str | None = None,
    **train_options: object,
) -> RetrainDecision:
    """Train a challenger on the logs, register it, and promote it only if it beats the champion."""
    read_options = {k: train_options[k] for k in ("success_threshold", "skip_invalid") if k in train_options}
    with tempfile.TemporaryDirectory() as tmp:
        paths, note = recent_logs(logs, window_days, Path(tmp), **read_options) if window_days else (logs, None)
        bundle = Path(out) if out else Path(tmp) / "challenger"
        result = train_bundle(paths, bundle, ladder=ladder, **train_options)
        tags = {"tierwise.retrain_of": name, "tierwise.source_logs": ",".join(logs)}
        if window_days:
            tags["tierwise.window_days"] = f"{window_days:g}"
        tracked = log_training_run(result, register=name, experiment=experiment, tracking=tracking, tags=tags)
        version = str(tracked.version)
        held_out = (result.labels.frame, split, str(result.params["split_column"]))
        challenger = standing(version, Router.load(result.bundle_dir), *held_out)
    if tracked.alias == CHAMPION:
        decision = RetrainDecision(challenger, None, True, "the registry had no champion yet", note)
        record_decision(name, decision, tracking)
        return decision
    champion_version = str(alias_version(name, CHAMPION, tracking))
    champion_router = Router.load(bundle_for_version(name, champion_version, tracking))
    if champion_router.ladder.names != result.manifest.tier_ladder.names:
        raise ValueError(
            f"champion v{champion_version} routes between {champion_router.ladder.names}, the challenger between "
            f"{result.manifest.tier_ladder.names}: they cannot be compared on the same rows"
        )
    champion = standing(champion_version, champion_router, *held_out)
    promoted, reason = gate(challenger, champion)
    if promoted:
        promote(name, version, tracking)
    decision = RetrainDecision(challenger, champion, promoted, reason, note)
    record_decision(name, decision, tracking)
    return decision


def record_decision(name: str, decision: RetrainDecision, tracking: str | None) -> None:
    """Tag the challenger's version with the gate's verdict and the champion it was measured against."""
    verdict = "promoted" if decision.promoted else "kept as challenger"
    against = f" against v{decision.champion.version}" if decision.champion else ""
    client(tracking).set_model_version_tag(
        name, decision.challenger.version, "retrain_decision", f"{verdict}{against}: {decision.reason}"
    )
