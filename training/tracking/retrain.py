"""Retraining from new logs with a gate: a challenger replaces the champion only when it is really better.

Both are evaluated on the same held-out rows of the new logs, at their own default thresholds (what each
would serve). The challenger is promoted when it keeps quality (no more than QUALITY_TOLERANCE below) at
a cost at least COST_MARGIN lower, or gains at least QUALITY_MARGIN of quality at no more cost.
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
from training.tracking.registry import CHAMPION, alias_version, bundle_for_version, promote
from training.tracking.run_logging import log_training_run
from training.train import train_bundle

QUALITY_TOLERANCE = 0.005
COST_MARGIN = 0.01
QUALITY_MARGIN = 0.005


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

    def render(self) -> str:
        """The decision and both rows, as printed by `tierwise retrain`."""
        lines = [
            f"margins: promote if quality >= champion - {QUALITY_TOLERANCE} at cost <= champion x "
            f"(1 - {COST_MARGIN}), or quality >= champion + {QUALITY_MARGIN} at cost <= champion",
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
    if challenger.quality >= champion.quality + QUALITY_MARGIN and challenger.cost_usd <= champion.cost_usd:
        return True, "better on quality at no more cost"
    if challenger.quality < champion.quality - QUALITY_TOLERANCE:
        return False, "lower quality than the champion"
    return False, "not cheaper, and not better on quality, by the margins"


def standing(version: str, router: Router, labels: pl.DataFrame, split: str) -> Standing:
    """Evaluate one version on the held-out rows."""
    report = evaluate_router(router, labels, split=split).to_json()
    point = report["operating_point"]
    return Standing(version, point["quality"], point["cost_usd"], point["cost_ratio"], report.get("apgr"))


def recent_logs(logs: list[str], window_days: float, out_dir: Path) -> list[str]:
    """Keep only attempts within `window_days` of the newest timestamp, written to one Parquet file."""
    frame = read_attempts(logs).frame
    if "timestamp" not in frame.columns:
        raise ValueError("--window needs a timestamp column in the logs")
    stamps = frame["timestamp"]
    if stamps.dtype == pl.String:
        stamps = stamps.str.to_datetime(time_zone="UTC", strict=False)
    newest = stamps.max()
    if newest is None:
        raise ValueError("--window: no attempt has a readable timestamp")
    recent = frame.filter((stamps >= newest - timedelta(days=window_days)).fill_null(False))
    path = out_dir / "window.parquet"
    recent.drop([c for c in recent.columns if c.startswith("_")]).write_parquet(path)
    print(f"window: {recent.height} of {frame.height} attempts within {window_days:g} days of {newest}")
    return [str(path)]


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
    with tempfile.TemporaryDirectory() as tmp:
        paths = recent_logs(logs, window_days, Path(tmp)) if window_days else logs
        bundle = Path(out) if out else Path(tmp) / "challenger"
        result = train_bundle(paths, bundle, ladder=ladder, **train_options)
        tracked = log_training_run(result, register=name, experiment=experiment, tracking=tracking)
        version = str(tracked.version)
        challenger = standing(version, Router.load(result.bundle_dir), result.labels.frame, split)
    if tracked.alias == CHAMPION:
        return RetrainDecision(challenger, None, True, "the registry had no champion yet")
    champion_version = str(alias_version(name, CHAMPION, tracking))
    champion_router = Router.load(bundle_for_version(name, champion_version, tracking))
    if champion_router.ladder.names != result.manifest.tier_ladder.names:
        raise ValueError(
            f"champion v{champion_version} routes between {champion_router.ladder.names}, the challenger between "
            f"{result.manifest.tier_ladder.names}: they cannot be compared on the same rows"
        )
    champion = standing(champion_version, champion_router, result.labels.frame, split)
    promoted, reason = gate(challenger, champion)
    if promoted:
        promote(name, version, tracking)
    return RetrainDecision(challenger, champion, promoted, reason)
