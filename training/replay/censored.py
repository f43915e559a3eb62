"""Which (request, tier) pairs to replay, and the Messages API request that replays each one.

A request is censored when a tier below its cheapest success was never tried (or, with no success at all,
some tier was never tried): its true label is unknown. Replaying exactly those untried tiers makes every
such request solved or unsolved; tiers above the cheapest success cannot change the label and are skipped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import polars as pl
from tierwise.classifier.tiers import TierLadder
from tierwise.training.data.attempts import REFERENCE_COLUMNS, is_attempt_column
from tierwise.training.data.costs import CHARS_PER_TOKEN, DEFAULT_OUTPUT_TOKENS
from tierwise.training.data.labels import CENSORED, Labels
from tierwise.training.data.logs import AttemptLog, LogError
from tierwise.training.replay.state import RequestInfo

RESPONSE_COLUMNS = ("response", "output", "completion")


@dataclass(frozen=True)
class ReplayItem:
    """One request to send to one tier, with the token estimates its cost is budgeted on."""

    request_id: str
    tier: str
    tier_index: int
    model: str
    est_input_tokens: float
    est_output_tokens: float

    @property
    def key(self) -> str:
        """Deterministic id of this (request, model): the stem of every custom_id it is sent under."""
        return replay_key(self.request_id, self.model)


def replay_key(request_id: str, model: str) -> str:
    """`tw-` + 40 hex chars: within the API's custom_id rule (^[a-zA-Z0-9_-]{1,64}$) with room for `-<attempt>`."""
    return "tw-" + hashlib.sha256(f"{request_id}\x1f{model}".encode()).hexdigest()[:40]


def custom_id(key: str, attempt: int) -> str:
    """The custom_id of the n-th submission of a (request, model); a retry never reuses an earlier one."""
    return f"{key}-{attempt}"


def pick_column(columns: list[str], wanted: str | None, defaults: tuple[str, ...], flag: str) -> str | None:
    """The column named by a flag (it must exist), else the first default present, else None."""
    if wanted is not None:
        if wanted not in columns:
            raise LogError(f"{flag} {wanted!r}: no such column in the logs (columns: {', '.join(columns)})")
        return wanted
    return next((c for c in defaults if c in columns), None)


def find_censored(
    log: AttemptLog,
    labels: Labels,
    max_requests: int | None = None,
    max_tokens: int = 1024,
    reference_column: str | None = None,
    response_column: str | None = None,
) -> tuple[list[ReplayItem], dict[str, RequestInfo]]:
    """The replays that would settle every censored request (cheapest tier first), and those requests' info.

    max_requests keeps the first N censored requests in log order.
    """
    ladder = labels.ladder
    censored = labels.frame.filter(pl.col("status") == CENSORED)
    if max_requests is not None:
        censored = censored.head(max_requests)
    attempts = log.frame.filter(pl.col("request_id").is_in(censored["request_id"].implode()))
    columns = log.frame.columns
    reference = pick_column(columns, reference_column, REFERENCE_COLUMNS, "--reference-column")
    response = pick_column(columns, response_column, RESPONSE_COLUMNS, "--response-column")
    estimates = _token_estimates(attempts, max_tokens)
    successful = _cheapest_successful_answers(attempts, ladder, response) if response else {}
    first_rows = attempts.group_by("request_id", maintain_order=True).first()
    extras = [c for c in columns if not is_attempt_column(c) and not c.startswith("_") and c != response]

    infos: dict[str, RequestInfo] = {}
    for row in first_rows.iter_rows(named=True):
        ref = row.get(reference) if reference else None
        infos[row["request_id"]] = RequestInfo(
            prompt=row["prompt"],
            messages=row.get("messages"),
            reference=None if ref is None else str(ref),
            successful_answer=successful.get(row["request_id"]),
            extras={c: row[c] for c in extras if row.get(c) is not None and _is_scalar(row[c])},
        )

    items = []
    for row in censored.iter_rows(named=True):
        tried = [row[f"success_{name}"] for name in ladder.names]
        cheapest = next((i for i, ok in enumerate(tried) if ok), len(tried))
        in_tokens, out_tokens = estimates[row["request_id"]]
        for index in range(cheapest):
            if tried[index] is None:
                tier = ladder.tiers[index]
                items.append(ReplayItem(row["request_id"], tier.name, index, tier.model, in_tokens, out_tokens))
    items.sort(key=lambda item: item.tier_index)
    return items, infos


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _token_estimates(attempts: pl.DataFrame, max_tokens: int) -> dict[str, tuple[float, float]]:
    """Per request: input tokens (logged, else prompt chars / 4) and output tokens (logged on the request's
    other attempts, else their output_chars / 4, else the cost rule's default), capped at max_tokens."""
    columns = set(attempts.columns)
    aggregations = [pl.col("prompt").first().str.len_chars().alias("chars")]
    for column in ("input_tokens", "output_tokens", "output_chars"):
        if column in columns:
            aggregations.append(pl.col(column).cast(pl.Float64).mean().alias(column))
    per_request = attempts.group_by("request_id").agg(aggregations)
    estimates = {}
    for row in per_request.iter_rows(named=True):
        input_tokens = row.get("input_tokens") or row["chars"] / CHARS_PER_TOKEN
        output_tokens = row.get("output_tokens")
        if output_tokens is None and row.get("output_chars") is not None:
            output_tokens = row["output_chars"] / CHARS_PER_TOKEN
        output_tokens = min(output_tokens or DEFAULT_OUTPUT_TOKENS, max_tokens)
        estimates[row["request_id"]] = (max(1.0, float(input_tokens)), float(output_tokens))
    return estimates


def _cheapest_successful_answers(attempts: pl.DataFrame, ladder: TierLadder, response: str) -> dict[str, str]:
    """The answer of each request's cheapest successful attempt: what the judge compares a replay with."""
    tiers = pl.col("model").replace_strict(ladder.model_to_tier(), default=None, return_dtype=pl.Int64)
    rows = (
        attempts.filter(pl.col("success") & pl.col(response).is_not_null())
        .with_columns(tiers.alias("_tier"))
        .filter(pl.col("_tier").is_not_null())
        .sort("_tier")
        .group_by("request_id", maintain_order=True)
        .first()
    )
    return {r["request_id"]: str(r[response]) for r in rows.select("request_id", response).iter_rows(named=True)}


def message_params(info: RequestInfo, model: str, max_tokens: int, temperature: float | None) -> dict[str, Any]:
    """The Messages API params that replay a request: the logged chat when there is one, else the prompt.

    System turns in a logged chat become the `system` parameter, as the API requires.
    """
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    chat = json.loads(info.messages) if info.messages else [{"role": "user", "content": info.prompt}]
    for turn in chat:
        content = turn.get("content", "")
        if isinstance(content, list):
            content = [
                part if isinstance(part, dict) and part.get("type") else {"type": "text", "text": str(part)}
                for part in content
            ]
        if turn.get("role") == "system":
            system.append(content if isinstance(content, str) else "\n".join(p.get("text", "") for p in content))
        else:
            messages.append({"role": turn.get("role", "user"), "content": content})
    params: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system:
        params["system"] = "\n\n".join(system)
    if temperature is not None:
        params["temperature"] = temperature
    return params
