"""Live calibration: reported outcomes per tier, and over the last N graded ones, the share that succeeded
next to the mean P(success) the router gave those same requests.

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


class _Window:
    """The last `size` (succeeded, predicted P) pairs of one tier, with running sums."""

    def __init__(self, size: int):
        self.pairs: deque[tuple[bool, float]] = deque(maxlen=size)
        self.successes = 0
        self.predicted = 0.0

    def add(self, succeeded: bool, predicted: float) -> None:
        if len(self.pairs) == self.pairs.maxlen:
            old_success, old_predicted = self.pairs[0]
            self.successes -= old_success
            self.predicted -= old_predicted
        self.pairs.append((succeeded, predicted))
        self.successes += succeeded
        self.predicted += predicted


class OutcomeStats(Collector):
    """Counts of reported outcomes by tier and result, and each tier's rolling calibration window."""

    def __init__(self, window: int = DEFAULT_WINDOW):
        if window < 1:
            raise ValueError(f"the calibration window must hold at least 1 outcome, got {window}")
        self.window = window
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._windows: dict[str, _Window] = {}

    def record(self, tier: str, result: str, predicted: float | None) -> None:
        """Count one outcome; a graded one with the router's P(success) for it also enters the tier's window."""
        key = (tier, result)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            if predicted is None or result not in GRADED:
                return
            window = self._windows.get(tier)
            if window is None:
                window = self._windows[tier] = _Window(self.window)
            window.add(result == SUCCESS, predicted)

    def calibration(self) -> list[TierCalibration]:
        """Every tier's rolling figures, in the order tiers first reported."""
        with self._lock:
            return [
                TierCalibration(tier, len(w.pairs), w.successes / len(w.pairs), max(0.0, w.predicted) / len(w.pairs))
                for tier, w in self._windows.items()
                if w.pairs
            ]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = dict(self._counts)
        outcomes = CounterMetricFamily(
            "tierwise_outcomes", "Outcomes reported (ReportOutcome/ReportOutcomes), by tier and result.",
            labels=["tier", "result"],
        )  # fmt: skip
        for (tier, result), count in counts.items():
            outcomes.add_metric([tier, result], count)
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
        yield from (outcomes, realized, predicted)
