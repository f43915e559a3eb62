"""The JSONL decision log: one row per routing decision, written off the request path.

A row holds what the next retrain needs from the decision: the prompt (or the chat messages), unless
`--redact-prompts` keeps only its hash; the tier served and its fallback chain; the router's probabilities
and model version; the latency band applied and the request's workload; whether the tier was an exploration
draw, the propensity of the served choice and the whole first-attempt distribution. `tierwise collect` joins
these rows with the outcome log into attempt logs. Requests only enqueue; the appender's writer thread hashes,
serialises and writes in batches, and reopens the file on SIGHUP (log rotation).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from tierwise.classifier.decider import Decision
from tierwise.serving.jsonl_log import JsonlAppender


def decision_row(decision: Decision, redact_prompts: bool = False) -> dict[str, object]:
    """The JSONL row for one decision (the prompt left out when redacting: only its hash is kept)."""
    prediction, request = decision.prediction, decision.request
    row: dict[str, object] = {"request_id": decision.request_id}
    if not redact_prompts:
        if request.messages:
            row["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        else:
            row["prompt"] = request.prompt
    return row | {
        "prompt_sha256": hashlib.sha256(request.text.encode("utf-8")).hexdigest(),
        "tier": prediction.tier,
        "model": prediction.model,
        "probabilities": prediction.probabilities,
        "fallback_chain": list(prediction.fallback_chain),
        "quality_target": prediction.quality_target,
        "mode": prediction.mode,
        "latency_band": decision.options.band,
        "workload": decision.options.workload,
        "model_version": decision.model_version,
        "explored": decision.explored,
        "propensity": decision.propensity,
        "propensities": dict(decision.propensities or {prediction.tier: 1.0}),
        "kept_warm": prediction.kept_warm,
        "time": datetime.fromtimestamp(decision.unix_time, UTC).isoformat(),
    }


class DecisionLog(JsonlAppender[Decision]):
    """The decision log file: `add(Decision)`, `reopen()` after rotation, `close()` writes what is queued."""

    def __init__(
        self, path: str | Path, on_dropped: Callable[[int], None] = lambda rows: None, redact_prompts: bool = False
    ):
        super().__init__(path, lambda decision: decision_row(decision, redact_prompts), on_dropped)
