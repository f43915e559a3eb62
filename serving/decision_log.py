"""The JSONL decision log: one row per routing decision, written off the request path.

Rows carry the request id and a hash of the prompt, so outcomes can be joined back later and the rows
turned into attempt logs for retraining. Requests only enqueue; the appender's writer thread hashes,
serialises and writes in batches, and reopens the file on SIGHUP (log rotation).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from classifier.router import Prediction
from serving.jsonl_log import JsonlAppender


@dataclass(frozen=True)
class Decision:
    """What the request path hands to the log: cheap references, no formatting."""

    request_id: str
    text: str
    prediction: Prediction
    model_version: str
    latency_band: str
    unix_time: float


def decision_row(decision: Decision) -> dict[str, object]:
    """The JSONL row for one decision."""
    prediction = decision.prediction
    return {
        "request_id": decision.request_id,
        "prompt_sha256": hashlib.sha256(decision.text.encode("utf-8")).hexdigest(),
        "tier": prediction.tier,
        "model": prediction.model,
        "probabilities": prediction.probabilities,
        "fallback_chain": list(prediction.fallback_chain),
        "quality_target": prediction.quality_target,
        "mode": prediction.mode,
        "latency_band": decision.latency_band,
        "model_version": decision.model_version,
        "time": datetime.fromtimestamp(decision.unix_time, UTC).isoformat(),
    }


class DecisionLog(JsonlAppender[Decision]):
    """The decision log file: `add(Decision)`, `reopen()` after rotation, `close()` writes what is queued."""

    def __init__(self, path: str | Path, on_dropped: Callable[[int], None] = lambda rows: None):
        super().__init__(path, decision_row, on_dropped)
