"""Live calibration: reported outcomes per tier, and over the last N graded attempts, the share that succeeded
next to the mean P(success) the router gave those same requests.

Each attempt counts once in its tier's window: a later report of the same attempt (a grade) replaces what the
attempt contributed instead of adding to it, so repeating a report cannot move the figures.

A router whose predicted success drifts away from the realized one is due for a retrain; this is where
that shows first. Kept as plain numbers under one lock (outcome reports are off the Predict hot path) and
turned into Prometheus families only when scraped.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

SUCCESS, FAILURE, ERROR, UNGRADED = "success", "failure", "error", "ungraded"
GRADED = (SUCCESS, FAILURE)
DEFAULT_WINDOW = 1000


@dataclass(frozen=True)
class TierCalibration:
    """One tier's rolling figures over its last `outcomes` graded outcomes of routed requests."""

    tier: str
    outcomes: int
    realized_success: float
    predicted_success: float


@dataclass(slots=True)
class Contribution:
    """What one graded attempt adds to its tier's window: whether it succeeded and the router's P(success) for it.
    A later report of the attempt changes it in place (None: no longer graded, an error); once it has left the
    window (`live` false) it changes nothing."""

    tier: str
    succeeded: bool | None
    predicted: float
    live: bool = True


class _Window:
    """The last `size` graded attempts of one tier, each counted once, with running sums over those still graded."""

    def __init__(self, size: int):
        self.entries: deque[Contribution] = deque(maxlen=size)
        self.graded = 0
        self.successes = 0
        self.predicted = 0.0

    def add(self, entry: Contribution) -> None:
        if len(self.entries) == self.entries.maxlen:
            old = self.entries[0]
            self._count(old, -1)
            old.live = False
        self.entries.append(entry)
        self._count(entry, 1)

    def replace(self, entry: Contribution, succeeded: bool | None) -> None:
        """The attempt's grade is now `succeeded`: its earlier contribution is taken out, the new one put in."""
        if entry.live:
            self._count(entry, -1)
            entry.succeeded = succeeded
            self._count(entry, 1)

    def _count(self, entry: Contribution, sign: int) -> None:
        if entry.succeeded is not None:
            self.graded += sign
            self.successes += sign * entry.succeeded
            self.predicted += sign * entry.predicted


class OutcomeStats(Collector):
    """Counts of reported outcomes by tier and result, duplicates, and each tier's rolling calibration window."""

    def __init__(self, window: int = DEFAULT_WINDOW):
        if window < 1:
            raise ValueError(f"the calibration window must hold at least 1 outcome, got {window}")
        self.window = window
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._duplicates = 0
        self._windows: dict[str, _Window] = {}

    def record(
        self, tier: str, result: str, predicted: float | None, earlier: Contribution | None = None
    ) -> Contribution | None:
        """Count one report that changed what is known of an attempt. With the router's P(success) for it, the
        attempt is in the tier's window once: `earlier` (what this attempt contributed before) is replaced, not
        added to. Returns the attempt's contribution now, for its next report."""
        succeeded = result == SUCCESS if result in GRADED else None
        with self._lock:
            self._counts[(tier, result)] = self._counts.get((tier, result), 0) + 1
            if earlier is not None:
                self._windows[earlier.tier].replace(earlier, succeeded)
                return earlier
            if predicted is None or succeeded is None:
                return None
            window = self._windows.get(tier)
            if window is None:
                window = self._windows[tier] = _Window(self.window)
            entry = Contribution(tier, succeeded, predicted)
            window.add(entry)
            return entry

    def duplicate(self) -> None:
        """Count a report that repeated what was already known of its attempt (it changed nothing)."""
        with self._lock:
            self._duplicates += 1

    def calibration(self) -> list[TierCalibration]:
        """Every tier's rolling figures, in the order tiers first reported."""
        with self._lock:
            return [
                TierCalibration(tier, w.graded, w.successes / w.graded, max(0.0, w.predicted) / w.graded)
                for tier, w in self._windows.items()
                if w.graded
            ]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, duplicates = dict(self._counts), self._duplicates
        outcomes = CounterMetricFamily(
            "tierwise_outcomes",
            "Outcome reports (ReportOutcome/ReportOutcomes) that changed what is known of an attempt, by tier and "
            "the result they gave it.",
            labels=["tier", "result"],
        )
        for (tier, result), count in counts.items():
            outcomes.add_metric([tier, result], count)
        repeated = CounterMetricFamily(
            "tierwise_outcome_duplicates",
            "Outcome reports that repeated what was already known of their attempt: acknowledged, not counted again.",
            value=duplicates,
        )
        realized = GaugeMetricFamily(
            "tierwise_realized_success",
            "Share of the tier's last graded outcomes (of routed requests) that succeeded.",
            labels=["tier"],
        )
        predicted = GaugeMetricFamily(
            "tierwise_predicted_success",
            "Mean P(success) the router gave the same requests as tierwise_realized_success.",
            labels=["tier"],
        )
        for row in self.calibration():
            realized.add_metric([row.tier], row.realized_success)
            predicted.add_metric([row.tier], row.predicted_success)
        yield from (outcomes, repeated, realized, predicted)
