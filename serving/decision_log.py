"""The JSONL decision log: one row per routing decision, written off the request path.

Rows carry the request id and a hash of the prompt, so outcomes can be joined back later and the rows
turned into attempt logs for retraining. Requests only enqueue; a writer thread hashes, serialises and
writes in batches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from classifier.router import Prediction

log = logging.getLogger("tierwise.serving")


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


class DecisionLog:
    """Appends decisions to a JSONL file from a background thread; `close()` writes what is queued."""

    _STOP = object()

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One O_APPEND write() per batch: rows from several server workers sharing the file never interleave.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tierwise-decision-log", daemon=True)
        self._thread.start()

    def add(self, decision: Decision) -> None:
        """Queue one decision; never blocks on disk."""
        self._queue.put(decision)

    def close(self) -> None:
        self._queue.put(self._STOP)
        self._thread.join()
        os.close(self._fd)

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while not self._queue.empty() and len(items) < 1024:
                items.append(self._queue.get_nowait())
            stop = any(item is self._STOP for item in items)
            rows = [json.dumps(decision_row(item)) + "\n" for item in items if item is not self._STOP]
            try:
                _write_all(self._fd, "".join(rows).encode("utf-8"))
            except OSError as exc:
                log.error("decision log %s: cannot write %d rows: %s", self.path, len(rows), exc)
            if stop:
                return


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
