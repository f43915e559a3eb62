"""One routed request's walk along its fallback chain, with no I/O of its own.

Which model to call next, whether an answer is good enough, what each attempt cost, the `Outcome` that reports
it, and what the caller is handed at the end: `Escalation.walk` is the one escalation loop. A driver supplies
only "call this step" (`attempt(step) -> Reply`): the proxy and the async client await their calls; the sync
client's calls block, so its walk never suspends and `run_blocking` runs it without an event loop; the batches
helper settles many walks a batch at a time (`next_step`, `record`). So they route, judge, escalate, price and
answer identically.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from tierwise.classifier.usage import Usage
from tierwise.serving.price_book import PriceBook
from tierwise.serving.tierwise.v1 import router_pb2 as pb

Accept = Callable[[Any], "bool | float"]
TRUNCATED = "max_tokens"
CONNECTION_ERROR = "api_connection_error"
TIMEOUT_ERROR = "api_timeout_error"
INVALID_RESPONSE = "invalid_response"  # a 200 whose body is not a Message: worth the next tier, like a 5xx
MESSAGE_FIELDS = {"type", "content", "usage"}
T = TypeVar("T")


def elapsed_ms(started: float) -> float:
    """Milliseconds since `started` (a `time.perf_counter()` reading)."""
    return (time.perf_counter() - started) * 1000


def retryable_status(status: int) -> bool:
    """HTTP statuses worth another try (on the next tier): the same rule the `anthropic` SDK retries by."""
    return status in (408, 409, 429) or status >= 500


def api_error_type(status: int, body: object) -> str:
    """The error's name as the API gives it (`{"error": {"type": ...}}`), else `http_<status>`."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) and kind else f"http_{status}"


def is_message(body: object) -> bool:
    """Whether an answer's body (as JSON, or an SDK object's `MESSAGE_FIELDS` dumped) is a Message."""
    return (
        isinstance(body, dict)
        and body.get("type") == "message"
        and isinstance(body.get("content"), list)
        and isinstance(body.get("usage"), dict)
    )


class OutcomeSink(Protocol):
    def report(self, outcome: pb.Outcome) -> None: ...


@dataclass(frozen=True)
class Step:
    """One rung of a fallback chain: a tier and the model called for it."""

    tier: str
    model: str


@dataclass(frozen=True)
class RouteDecision:
    """Where a request goes: its chain of steps, and how the router came to it.

    `router_error` is set when no router answered (the chain is then the fallback model alone); it is never
    silent: the result carries it and a warning is logged. `kept_warm`: a conversation's turn kept on the tier its
    prompt cache is warm on.
    """

    request_id: str
    steps: tuple[Step, ...]
    prices: PriceBook
    use_batch_api: bool = False
    explored: bool = False
    router_error: str | None = None
    kept_warm: bool = False


@dataclass(frozen=True)
class CallResult:
    """What one call of a model returned, before judging: usage, how it stopped, or the error that ended it."""

    latency_ms: float
    usage: Usage | None = None
    stop_reason: str | None = None
    error: str = ""  # the API error type (`overloaded_error`, `api_connection_error`, ...); empty on success
    retryable: bool = False
    ttft_ms: float | None = None


@dataclass(frozen=True)
class Reply:
    """What calling one step gave back.

    `call` is judged (with `answer`), priced and reported; None means a stream that has started: the walk ends
    there and the stream's `StreamWatch` settles the attempt when it ends. `handed` is what the caller gets if this
    reply is the last worth handing back: the answer or stream, or, for a failed call, the error to raise or pass on
    (None: nothing worth passing on).
    """

    call: CallResult | None
    answer: Any = None
    handed: Any = None


@dataclass(frozen=True)
class Attempt:
    """One judged and priced attempt of the chain, as it is reported to the router."""

    attempt: int
    tier: str
    model: str
    latency_ms: float
    usage: Usage | None
    stop_reason: str | None
    error: str
    accepted: bool | None  # None: no answer to judge (the call failed, or a stream was left unfinished)
    score: float | None
    cost_usd: float | None
    ttft_ms: float | None = None

    def outcome(self, request_id: str) -> pb.Outcome:
        """The `Outcome` message that reports this attempt."""
        outcome = pb.Outcome(request_id=request_id, model=self.model, attempt=self.attempt, error=self.error)
        outcome.latency_ms = self.latency_ms
        if self.accepted is not None:
            outcome.success = self.accepted
        if self.score is not None:
            outcome.score = self.score
        if self.cost_usd is not None:
            outcome.cost_usd = self.cost_usd
        if self.ttft_ms is not None:
            outcome.ttft_ms = self.ttft_ms
        if self.usage is not None:
            outcome.input_tokens = self.usage.input_tokens
            outcome.output_tokens = self.usage.output_tokens
            outcome.cache_read_input_tokens = self.usage.cache_read_input_tokens
            outcome.cache_creation_input_tokens = self.usage.cache_creation_input_tokens
        return outcome


def grade_outcome(
    request_id: str, model: str, attempt: int, success: bool | None = None, score: float | None = None
) -> pb.Outcome:
    """A later grade for an attempt already reported: another Outcome for the same request, model and attempt."""
    outcome = pb.Outcome(request_id=request_id, model=model, attempt=attempt)
    if success is not None:
        outcome.success = success
    if score is not None:
        outcome.score = score
    return outcome


@dataclass(frozen=True)
class Judge:
    """Decides whether an answer is good enough.

    Without `accept`, an answer is accepted unless it stopped at `max_tokens`. With it, `accept(answer)` decides:
    a bool as it is, a number as a score accepted at `threshold` or above.
    """

    accept: Accept | None = None
    threshold: float = 0.5

    def __call__(self, answer: Any, stop_reason: str | None) -> tuple[bool, float | None]:
        if self.accept is None:
            return stop_reason != TRUNCATED, None
        verdict = self.accept(answer)
        if verdict is True or verdict is False:
            return verdict, None
        score = float(verdict)
        if not math.isfinite(score):
            return False, None  # no grade to report: the router refuses a score that is not a finite number
        return score >= self.threshold, score


@dataclass(frozen=True)
class Routing:
    """How a request was served: what `message.tierwise` (client) and the `x-tierwise-*` headers (proxy) tell.

    `tier`, `model` and `attempt` (its 0-based position) are those of the attempt whose answer is returned: the
    last one that answered, else the last one tried. `cost_usd` sums every attempt's cost that could be priced.
    `accepted` is false when the chain ran out without an acceptable answer (the last answer is returned).
    """

    request_id: str
    tier: str
    model: str
    attempt: int
    attempts: tuple[Attempt, ...]
    accepted: bool
    cost_usd: float
    fallback_chain: tuple[str, ...]
    explored: bool = False
    router_error: str | None = None
    kept_warm: bool = False


@dataclass
class Escalation:
    """The state of one request's chain: `walk(attempt)` calls each step until the walk is over.

    Escalation stops at the first accepted answer, at an error not worth retrying, at a stream that started, or at
    the end of the chain. Every settled attempt is reported to `sink` at once (a sink never raises), then handed
    to `on_settled` if given (the memory of the request's conversation).
    """

    decision: RouteDecision
    judge: Judge
    sink: OutcomeSink
    batch: bool = False
    on_settled: Callable[[Attempt], None] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    finished: bool = False
    answered: Any = None  # what the last answer (or the started stream) hands back
    failed: Any = None  # what the last failure worth passing on hands back

    async def walk(self, attempt: Callable[[Step], Awaitable[Reply]]) -> Any:
        """The escalation loop: each step through `attempt`, until the walk is over.

        Returns what the caller is handed: the last answer (or the started stream), else the last failure worth
        passing on, else None.
        """
        while (step := self.next_step()) is not None:
            self.record(await attempt(step))
        return self.failed if self.answered is None else self.answered

    def record(self, reply: Reply) -> None:
        """Settle what the current step's call gave back, and keep what it would hand the caller."""
        if reply.call is None:
            self.finished = True
            self.answered = reply.handed
        elif not self.settle(reply.call, reply.answer).error:
            self.answered = reply.handed
        elif reply.handed is not None:
            self.failed = reply.handed

    def next_step(self) -> Step | None:
        """The step to call now, or None when the walk is over."""
        if self.finished or len(self.attempts) >= len(self.decision.steps):
            return None
        return self.decision.steps[len(self.attempts)]

    def settle(self, call: CallResult, answer: Any = None) -> Attempt:
        """Judge, price and report the current step's call; decides whether the walk goes on."""
        step = self.decision.steps[len(self.attempts)]
        if call.error:
            accepted, score, go_on = None, None, call.retryable
        elif call.stop_reason is None or (answer is None and self.judge.accept is not None):
            accepted, score, go_on = None, None, False  # an unfinished stream: nothing to judge
        else:
            accepted, score = self.judge(answer, call.stop_reason)
            go_on = not accepted
        cost = None if call.usage is None else self.decision.prices.cost(step.model, call.usage, self.batch)
        attempt = Attempt(
            attempt=len(self.attempts),
            tier=step.tier,
            model=step.model,
            latency_ms=call.latency_ms,
            usage=call.usage,
            stop_reason=call.stop_reason,
            error=call.error,
            accepted=accepted,
            score=score,
            cost_usd=cost,
            ttft_ms=call.ttft_ms,
        )
        self.attempts.append(attempt)
        self.finished = not go_on
        self.sink.report(attempt.outcome(self.decision.request_id))
        if self.on_settled is not None:
            self.on_settled(attempt)
        return attempt

    def routing(self) -> Routing:
        """The routing details of the walk so far."""
        answers = [a for a in self.attempts if not a.error]
        last = answers[-1] if answers else (self.attempts[-1] if self.attempts else None)
        step = self.decision.steps[last.attempt if last else 0]
        return Routing(
            request_id=self.decision.request_id,
            tier=step.tier,
            model=step.model,
            attempt=last.attempt if last else 0,
            attempts=tuple(self.attempts),
            accepted=bool(last and last.accepted),
            cost_usd=sum(a.cost_usd for a in self.attempts if a.cost_usd is not None),
            fallback_chain=tuple(s.tier for s in self.decision.steps),
            explored=self.decision.explored,
            router_error=self.decision.router_error,
            kept_warm=self.decision.kept_warm,
        )


def run_blocking(walk: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine whose awaits never suspend: how the sync client runs `Escalation.walk` with its
    blocking calls, on the caller's thread and with no event loop."""
    try:
        walk.send(None)
    except StopIteration as done:
        return done.value
    walk.close()
    raise RuntimeError("a blocking walk suspended: it awaited something that was not a blocking call")


class StreamWatch:
    """Times and tallies one streamed attempt from its events, and settles it once, when the stream ends.

    Streams are never escalated once they have started: the caller already holds the first tokens.
    """

    def __init__(self, escalation: Escalation, started: float):
        self.escalation = escalation
        self.started = started
        self.usage: Usage | None = None
        self.stop_reason: str | None = None
        self.ttft_ms: float | None = None
        self.attempt: Attempt | None = None

    def seen(self, kind: str, usage: object = None, stop_reason: str | None = None) -> None:
        """One stream event: its type, and the usage and stop reason it carries, if any."""
        if kind == "content_block_delta" and self.ttft_ms is None:
            self.ttft_ms = elapsed_ms(self.started)
        if usage is not None:
            self.usage = Usage.from_mapping(usage, self.usage)
        if stop_reason:
            self.stop_reason = stop_reason

    def finish(self, answer: Any = None, error: str = "") -> Attempt:
        """Settle the attempt (first call only): as finished, as left unfinished, or as failed with `error`."""
        if self.attempt is None:
            call = CallResult(
                latency_ms=elapsed_ms(self.started),
                usage=self.usage,
                stop_reason=None if error else self.stop_reason,
                error=error,
                ttft_ms=self.ttft_ms,
            )
            self.attempt = self.escalation.settle(call, answer)
        return self.attempt
