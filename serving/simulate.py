"""Served traffic with known outcomes: route prompts through a real server and report what each attempt did.

For requests whose outcome on each tier is known (generated logs, a benchmark data set), this plays the
application: it asks the router, calls "the model" by looking up the known outcome, and reports every
attempt, escalating along the fallback chain until one succeeds. The end-to-end test and
benchmarks/feedback_loop.py close the learning loop with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

AttemptKey = tuple[str, str, int]


@dataclass(frozen=True)
class KnownRequest:
    """A prompt and what each tier does with it (tiers left out were never observed)."""

    request_id: str
    prompt: str
    success: Mapping[str, bool]
    cost_usd: Mapping[str, float]


@dataclass
class TrafficReport:
    """What was sent: requests routed, how many were explored, and every attempt the server acknowledged."""

    routed: int = 0
    explored: int = 0
    acknowledged: list[AttemptKey] = field(default_factory=list)
    unknown_outcomes: int = 0  # chains that reached a tier whose outcome is not known (reporting stopped there)

    def add(self, other: TrafficReport) -> None:
        self.routed += other.routed
        self.explored += other.explored
        self.acknowledged += other.acknowledged
        self.unknown_outcomes += other.unknown_outcomes


def tier_models(stub: pb_grpc.RouterStub, timeout_s: float = 10.0) -> dict[str, str]:
    """The model the server recommends for each tier."""
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=timeout_s)
    return {tier.name: tier.model for tier in info.tiers}


def attempts_along(request: KnownRequest, chain: Sequence[str], models: Mapping[str, str]) -> list[pb.Outcome]:
    """The outcomes an application reports for one request: one per attempt, until one succeeds."""
    outcomes = []
    for attempt, tier in enumerate(chain):
        if tier not in request.success:
            break
        succeeded = request.success[tier]
        outcome = pb.Outcome(request_id=request.request_id, model=models[tier], attempt=attempt, success=succeeded)
        if tier in request.cost_usd:
            outcome.cost_usd = request.cost_usd[tier]
        outcomes.append(outcome)
        if succeeded:
            break
    return outcomes


def send_one(stub: pb_grpc.RouterStub, request: KnownRequest, models: Mapping[str, str]) -> TrafficReport:
    """Predict, then report each attempt with ReportOutcome: the unary path an application takes."""
    response = stub.Predict(pb.PredictRequest(prompt=request.prompt, request_id=request.request_id), timeout=10)
    outcomes = attempts_along(request, response.fallback_chain, models)
    report = TrafficReport(routed=1, explored=int(response.explored))
    report.unknown_outcomes = int(_stopped_early(request, response.fallback_chain, outcomes))
    for outcome in outcomes:
        stub.ReportOutcome(outcome, timeout=10)
        report.acknowledged.append((outcome.request_id, outcome.model, outcome.attempt))
    return report


def send_batch(stub: pb_grpc.RouterStub, requests: Sequence[KnownRequest], models: Mapping[str, str]) -> TrafficReport:
    """PredictBatch, then every attempt on one ReportOutcomes stream: the same traffic, fewer round trips."""
    batch = pb.PredictBatchRequest(
        requests=[pb.PredictRequest(prompt=r.prompt, request_id=r.request_id) for r in requests]
    )
    responses = stub.PredictBatch(batch, timeout=60).responses
    report = TrafficReport(routed=len(requests), explored=sum(r.explored for r in responses))
    outcomes = []
    for request, response in zip(requests, responses, strict=True):
        attempts = attempts_along(request, response.fallback_chain, models)
        report.unknown_outcomes += _stopped_early(request, response.fallback_chain, attempts)
        outcomes += attempts
    summary = stub.ReportOutcomes(iter(outcomes), timeout=60)
    assert summary.received == len(outcomes), "the server acknowledged a different number of outcomes"
    report.acknowledged = [(o.request_id, o.model, o.attempt) for o in outcomes]
    return report


def send_traffic(stub: pb_grpc.RouterStub, requests: Iterable[KnownRequest], batch_size: int = 256) -> TrafficReport:
    """Route every request and report its attempts, in batches."""
    models = tier_models(stub)
    report = TrafficReport()
    pending: list[KnownRequest] = []
    for request in requests:
        pending.append(request)
        if len(pending) == batch_size:
            report.add(send_batch(stub, pending, models))
            pending = []
    if pending:
        report.add(send_batch(stub, pending, models))
    return report


def _stopped_early(request: KnownRequest, chain: Sequence[str], outcomes: Sequence[pb.Outcome]) -> bool:
    """Whether reporting stopped at a tier of unknown outcome before a success or the end of the chain."""
    return not any(o.success for o in outcomes) and len(outcomes) < len(chain)
