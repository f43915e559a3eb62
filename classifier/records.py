"""The rows serving writes and `tierwise collect` reads: the decision log's and the outcome log's columns.

Serving writes them (`tierwise.serving.decision_log`, `tierwise.serving.outcomes`) and training reads them
(`tierwise.training.data.collect`): the schema lives here, the layer below both, so neither imports the other, and
tests/test_collect.py holds the writers' rows to these columns.
"""

from __future__ import annotations

# An outcome's optional measurements, each a non-negative number where reported, in the order of the
# `tierwise.v1.Outcome` message (tests hold the proto to this list).
OUTCOME_MEASURES = (
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "latency_ms",
    "ttft_ms",
)
# One decision-log row per routing decision; `prompt` or `messages` (neither when prompts are redacted).
DECISION_COLUMNS = (
    "request_id",
    "prompt",
    "messages",
    "prompt_sha256",
    "tier",
    "model",
    "probabilities",
    "fallback_chain",
    "quality_target",
    "mode",
    "latency_band",
    "workload",
    "model_version",
    "explored",
    "propensity",
    "propensities",
    "kept_warm",
    "time",
)
# The column only decision rows carry: how collect tells a decision log from an outcome log.
DECISION_MARKER = "fallback_chain"
# One outcome-log row per reported attempt.
OUTCOME_COLUMNS = (
    "request_id",
    "model",
    "attempt",
    "success",
    "score",
    *OUTCOME_MEASURES,
    "error",
    "workload",
    "known_request",
    "time",
)
