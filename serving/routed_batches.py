"""Routed requests through the Message Batches API (half price): one batch per chosen model.

`RoutedAnthropic.batches.run(requests)` routes every request at once (`PredictBatch`, in the ASYNC band unless
the options say otherwise), submits one Message Batch per chosen model, waits for them, judges and prices each
answer at the batch rate, reports every attempt, and resubmits the rejected or failed ones to their next tier,
until every request is settled. `submit`, `collect` and `escalate` are the same steps one at a time, for a
caller that does not want to block. A job lives in memory: keep its `batch_ids` to find the batches again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anthropic
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.usage import Usage
from tierwise.serving.call_defaults import CallDefaults
from tierwise.serving.escalation import Accept, CallResult, Escalation, Reply
from tierwise.serving.router_link import RouterLink
from tierwise.serving.sdk_calls import with_routing

# Batch item results that another tier may still answer (an invalid request will not be answered anywhere).
_RETRYABLE_RESULTS = frozenset({"expired", "canceled"})
_NOT_RETRYABLE_ERRORS = frozenset({"invalid_request_error", "authentication_error", "permission_error"})


@dataclass
class RoutedBatchJob:
    """Batches in flight for routed requests: the batch id per model, and each request's walk along its chain."""

    batch_ids: dict[str, str]
    walks: dict[str, Escalation]
    params: dict[str, dict[str, Any]]

    @property
    def answers(self) -> dict[str, Any]:
        """The latest answer of each request that has one, by custom_id."""
        return {custom_id: walk.answered for custom_id, walk in self.walks.items() if walk.answered is not None}


def _batch_requests(walks: Mapping[str, Escalation], params: Mapping[str, dict[str, Any]]) -> dict[str, list[dict]]:
    """The walks that have a next step, grouped by the model of that step as Message Batch request lists."""
    groups: dict[str, list[dict]] = {}
    for custom_id, walk in walks.items():
        step = walk.next_step()
        if step is not None:
            groups.setdefault(step.model, []).append(
                {"custom_id": custom_id, "params": {**params[custom_id], "model": step.model}}
            )
    return groups


def _batch_latency_ms(batch: Any) -> float:
    created, ended = batch.created_at, batch.ended_at or batch.created_at
    if isinstance(created, datetime) and isinstance(ended, datetime):
        return (ended - created).total_seconds() * 1000
    return 0.0


def _item_reply(result: Any, latency_ms: float) -> Reply:
    """One batch item's result as a step's reply: its message when it succeeded."""
    kind = result.type
    if kind == "succeeded":
        message = result.message
        usage = Usage.from_mapping(message.usage)
        return Reply(CallResult(latency_ms=latency_ms, usage=usage, stop_reason=message.stop_reason), message, message)
    if kind == "errored":
        error = getattr(getattr(result.error, "error", None), "type", None) or "api_error"
        return Reply(CallResult(latency_ms=latency_ms, error=error, retryable=error not in _NOT_RETRYABLE_ERRORS))
    return Reply(CallResult(latency_ms=latency_ms, error=kind, retryable=kind in _RETRYABLE_RESULTS))


class RoutedBatches:
    """`RoutedAnthropic.batches`: routed requests as Message Batches, grouped by the model each was sent to."""

    def __init__(self, client: anthropic.Anthropic, router: RouterLink, defaults: CallDefaults):
        self._client = client
        self._router = router
        self._defaults = defaults

    def run(
        self,
        requests: Sequence[Mapping[str, Any]],
        *,
        routing: RouteOptions | None = None,
        accept: Accept | None = None,
        poll_s: float = 10.0,
    ) -> dict[str, Any]:
        """Submit, wait, escalate until every request is settled; its final Message by custom_id (None if none).

        Each message carries `.tierwise` as `messages.create` does; a request that never got an answer maps to None.
        """
        first = self.submit(requests, routing=routing, accept=accept)
        job: RoutedBatchJob | None = first
        while job is not None:
            self.collect(job, poll_s=poll_s)
            job = self.escalate(job)
        return {
            custom_id: None if walk.answered is None else with_routing(walk.answered, walk.routing())
            for custom_id, walk in first.walks.items()
        }

    def submit(
        self,
        requests: Sequence[Mapping[str, Any]],
        *,
        routing: RouteOptions | None = None,
        accept: Accept | None = None,
    ) -> RoutedBatchJob:
        """Route `[{"custom_id": ..., "params": {...}}]` (params without `model`) and submit a batch per model."""
        options = routing or self._defaults.options.updated(latency_band="async")
        params = {request["custom_id"]: dict(request["params"]) for request in requests}
        decisions = self._router.decide_many([(p, options) for p in params.values()])
        walks = {
            custom_id: self._defaults.escalation(decision, accept, batch=True)
            for custom_id, decision in zip(params, decisions, strict=True)
        }
        return self._send(walks, params)

    def collect(self, job: RoutedBatchJob, *, poll_s: float = 10.0) -> None:
        """Wait for the job's batches to end, then judge, price and report every item."""
        for model, batch_id in job.batch_ids.items():
            batch = self._client.messages.batches.retrieve(batch_id)
            while batch.processing_status != "ended":
                time.sleep(poll_s)
                batch = self._client.messages.batches.retrieve(batch_id)
            latency_ms = _batch_latency_ms(batch)
            for item in self._client.messages.batches.results(batch_id):
                walk = job.walks[item.custom_id]
                if walk.next_step() is None or walk.next_step().model != model:
                    continue
                walk.record(_item_reply(item.result, latency_ms))

    def escalate(self, job: RoutedBatchJob) -> RoutedBatchJob | None:
        """Resubmit the requests whose answers were rejected (or failed retryably) to their next tier, if any."""
        walks = {custom_id: walk for custom_id, walk in job.walks.items() if walk.next_step() is not None}
        return self._send(walks, job.params) if walks else None

    def _send(self, walks: dict[str, Escalation], params: dict[str, dict[str, Any]]) -> RoutedBatchJob:
        groups = _batch_requests(walks, params)
        batch_ids = {model: self._client.messages.batches.create(requests=items).id for model, items in groups.items()}
        return RoutedBatchJob(batch_ids, walks, {custom_id: params[custom_id] for custom_id in walks})
