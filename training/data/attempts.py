"""The attempt-log row: one model's attempt at one request. Its columns and their types, in one place.

Readers validate against it (`tierwise.training.data.logs`), labelling tells per-attempt columns from per-request ones
by it (`tierwise.training.data.labels`), and writers of new attempt rows (`tierwise replay`, `tierwise collect`) use its
types, so every producer and consumer of attempt logs agrees on one format. Columns not listed in `SCHEMA`
describe the request (`split`, `category`, the routing decision of collected traffic, ...) and are carried
through untouched.
"""

from __future__ import annotations

import polars as pl

SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"

# What identifies the attempt and says whether it was acceptable.
CORE: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "prompt": pl.String(),
    "messages": pl.String(),  # a JSON chat list, rendered to `prompt` when no prompt is given
    "model": pl.String(),
    "success": pl.Boolean(),
    "score": pl.Float64(),  # success = score >= --success-threshold when `success` is absent
}
# Measurements of the attempt: non-negative numbers where present.
MEASURES: dict[str, pl.DataType] = {
    "cost_usd": pl.Float64(),
    "input_tokens": pl.Float64(),
    "output_tokens": pl.Float64(),
    "latency_ms": pl.Float64(),
    "ttft_ms": pl.Float64(),  # time to the first output token, for streamed answers
    "cache_read_input_tokens": pl.Float64(),  # prompt tokens read from the prompt cache
    "cache_creation_input_tokens": pl.Float64(),  # prompt tokens written to the prompt cache
    "output_chars": pl.Float64(),
}
# Where the attempt sits in its escalation and how the call ended (written by `tierwise collect`).
ESCALATION: dict[str, pl.DataType] = {
    "attempt": pl.Int64(),  # 0-based position in the fallback chain
    "error": pl.String(),  # the API error class when the call failed
}
# When and how the attempt was made and graded (written by `tierwise replay`).
PROVENANCE: dict[str, pl.DataType] = {
    "timestamp": pl.String(),
    "grader": pl.String(),
    "grader_version": pl.String(),
    "grade_reason": pl.String(),
    "grader_cost_usd": pl.Float64(),
    "response": pl.String(),
    "stop_reason": pl.String(),
    "custom_id": pl.String(),
    "batch_id": pl.String(),
    "source": pl.String(),
}
SCHEMA: dict[str, pl.DataType] = {**CORE, **MEASURES, **ESCALATION, **PROVENANCE}
# The routing decision behind a request of collected traffic (`tierwise collect`): the same on every attempt
# row of a request, so labelling keeps it per request, where evaluation weights outcomes by it
# (`tierwise.training.evaluation.off_policy`).
DECISION: dict[str, pl.DataType] = {
    "served_tier": pl.String(),  # the tier of the first attempt
    "fallback_chain": pl.String(),  # JSON list of tier names, the served tier first
    "probabilities": pl.String(),  # JSON map tier -> P(success) the router gave
    "explored": pl.Boolean(),  # the served tier was an exploration draw
    "propensity": pl.Float64(),  # probability the served tier had of being served first
    "propensities": pl.String(),  # JSON map tier -> probability of being served first, for every possible tier
    "model_version": pl.String(),
    "latency_band": pl.String(),
    "prompt_sha256": pl.String(),
    "decided_at": pl.String(),
    "workload": pl.String(),  # the named stream of requests it belongs to (optional in every attempt log)
}
# Names a caller picks, bounded like every identifier (`tierwise.classifier.limits.IDENTIFIER`): a longer value is a
# bad row naming its column.
IDENTIFIERS = ("workload",)
WORKLOAD = "workload"
REQUIRED = ("request_id", "model")
# The per-request columns a grader may read the reference answer from, in order of preference (`tierwise replay`).
REFERENCE_COLUMNS = ("reference", "answer")
# Columns labelling adds to each attempt row on its way to per-request labels.
DERIVED = ("tier", "_cost", SOURCE_FILE, SOURCE_ROW)


def is_attempt_column(name: str) -> bool:
    """Whether a column describes one attempt (else it describes the request and is kept per request)."""
    return name in SCHEMA or name in DERIVED


def empty_frame() -> pl.DataFrame:
    """An attempt log with every schema column and no rows, for writers that have nothing to write."""
    return pl.DataFrame(schema=SCHEMA)
