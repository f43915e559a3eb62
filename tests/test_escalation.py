"""The walk along a fallback chain that the client, the async client, the batches helper and the proxy share:
judging, escalating, pricing (cache and batch rates included), the outcomes it reports and what it hands back."""

from __future__ import annotations

import asyncio
import math

import pytest
from tierwise.classifier.limits import FieldError
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.tiers import TierLadder
from tierwise.classifier.usage import Usage, attempt_cost
from tierwise.serving.escalation import (
    CallResult,
    Escalation,
    Judge,
    Reply,
    RouteDecision,
    Step,
    StreamWatch,
    api_error_type,
    retryable_status,
    run_blocking,
)
from tierwise.serving.price_book import PriceBook
from tierwise.serving.router_link import RouterDown, RouterUnavailable, predict_request

LADDER = TierLadder.load()
PRICES = PriceBook(LADDER, "v1")
CHAIN = tuple(Step(t.name, t.model) for t in LADDER.tiers)


class Sink:
    """Collects reported outcomes, as the router would receive them."""

    def __init__(self):
        self.outcomes = []

    def report(self, outcome):
        self.outcomes.append(outcome)


DEFAULT_JUDGE = Judge()


def walk(judge=DEFAULT_JUDGE, steps=CHAIN, batch=False):
    sink = Sink()
    return Escalation(RouteDecision("req-1", steps, PRICES), judge, sink, batch=batch), sink


def answered(stop_reason="end_turn", input_tokens=100, output_tokens=50, **usage):
    return CallResult(latency_ms=12.5, usage=Usage(input_tokens, output_tokens, **usage), stop_reason=stop_reason)


def test_an_accepted_answer_ends_the_walk_and_is_reported_with_its_cost():
    escalation, sink = walk()
    assert escalation.next_step() == CHAIN[0]
    escalation.settle(answered(), answer={"text": "hi"})
    assert escalation.next_step() is None
    routing = escalation.routing()
    haiku = LADDER.tiers[0]
    assert routing.tier == "haiku" and routing.attempt == 0 and routing.accepted
    assert routing.cost_usd == pytest.approx((100 * haiku.input_usd_per_mtok + 50 * haiku.output_usd_per_mtok) / 1e6)
    [outcome] = sink.outcomes
    assert (outcome.request_id, outcome.model, outcome.attempt) == ("req-1", haiku.model, 0)
    assert outcome.success and outcome.input_tokens == 100 and outcome.output_tokens == 50
    assert outcome.latency_ms == 12.5 and outcome.cost_usd == pytest.approx(routing.cost_usd)
    assert not outcome.HasField("score") and not outcome.HasField("ttft_ms") and outcome.error == ""


def test_an_answer_cut_off_at_max_tokens_escalates_by_default():
    escalation, sink = walk()
    escalation.settle(answered(stop_reason="max_tokens"), answer={})
    assert escalation.next_step() == CHAIN[1]
    escalation.settle(answered(), answer={})
    routing = escalation.routing()
    assert [a.accepted for a in routing.attempts] == [False, True]
    assert routing.tier == "sonnet" and routing.attempt == 1
    assert [o.success for o in sink.outcomes] == [False, True]


def test_a_retryable_error_escalates_without_a_grade_and_a_final_one_stops():
    escalation, sink = walk()
    escalation.settle(CallResult(latency_ms=3.0, error="overloaded_error", retryable=True))
    assert escalation.next_step() == CHAIN[1]
    escalation.settle(CallResult(latency_ms=3.0, error="invalid_request_error", retryable=False))
    assert escalation.next_step() is None
    assert [o.error for o in sink.outcomes] == ["overloaded_error", "invalid_request_error"]
    assert not any(o.HasField("success") for o in sink.outcomes), "an API error says nothing about answer quality"
    routing = escalation.routing()
    assert not routing.accepted and routing.cost_usd == 0 and routing.attempt == 1


def test_the_routing_names_the_last_attempt_that_answered_when_later_tiers_failed():
    escalation, _ = walk()
    escalation.settle(answered(stop_reason="max_tokens"), answer={})
    escalation.settle(CallResult(latency_ms=1.0, error="overloaded_error", retryable=True))
    escalation.settle(CallResult(latency_ms=1.0, error="overloaded_error", retryable=True))
    routing = escalation.routing()
    assert escalation.next_step() is None and len(routing.attempts) == 3
    assert (routing.tier, routing.attempt, routing.accepted) == ("haiku", 0, False)


def test_an_accept_check_returning_a_score_is_judged_at_the_threshold():
    judge = Judge(accept=lambda answer: answer["score"], threshold=0.7)
    escalation, sink = walk(judge)
    escalation.settle(answered(), answer={"score": 0.4})
    escalation.settle(answered(), answer={"score": 0.9})
    assert [(o.success, o.score) for o in sink.outcomes] == [(False, 0.4), (True, 0.9)]
    assert Judge(accept=lambda answer: math.nan)({}, "end_turn") == (False, None)
    assert Judge(accept=lambda answer: math.inf)({}, "end_turn") == (False, None)


def test_an_accept_check_decides_even_for_a_truncated_answer():
    judge = Judge(accept=lambda answer: True)
    assert judge({}, "max_tokens") == (True, None)
    assert Judge()({}, "max_tokens") == (False, None)
    assert Judge()({}, "end_turn") == (True, None)


def test_cache_reads_and_writes_and_the_batch_rate_are_priced():
    sonnet = LADDER.tiers[1]
    usage = Usage(
        input_tokens=1000, output_tokens=200, cache_read_input_tokens=10_000, cache_creation_input_tokens=2000
    )
    plain = (1000 * sonnet.input_usd_per_mtok + 200 * sonnet.output_usd_per_mtok) / 1e6
    cache = (10_000 * 0.1 + 2000 * 1.25) * sonnet.input_usd_per_mtok / 1e6
    assert attempt_cost(sonnet, usage) == pytest.approx(plain + cache)
    assert attempt_cost(sonnet, usage, batch=True) == pytest.approx((plain + cache) / 2)
    escalation, sink = walk(batch=True)
    escalation.settle(answered(), answer={})
    assert sink.outcomes[0].cost_usd == pytest.approx(attempt_cost(LADDER.tiers[0], Usage(100, 50), batch=True))


def test_an_unknown_model_is_reported_without_a_cost():
    escalation, sink = walk(steps=(Step("", "some-other-model"),))
    escalation.settle(answered(), answer={})
    assert not sink.outcomes[0].HasField("cost_usd") and escalation.routing().cost_usd == 0


def test_stream_usage_arrives_in_pieces_and_later_pieces_win():
    start = Usage.from_mapping({"input_tokens": 30, "output_tokens": 1, "cache_read_input_tokens": None})
    end = Usage.from_mapping({"output_tokens": 77}, start)
    assert end == Usage(30, 77, 0, 0)


def replies(*queued):
    """A driver's "call this step" that never suspends: the queued replies in turn, and the steps it was given."""
    called = []

    async def attempt(step):
        called.append(step.tier)
        return queued[len(called) - 1]

    return attempt, called


def failed(error, retryable=True, handed=None):
    return Reply(CallResult(latency_ms=1.0, error=error, retryable=retryable), handed=handed)


def test_the_walk_hands_back_the_last_answer_even_after_a_later_failure():
    escalation, sink = walk()
    attempt, called = replies(
        failed("overloaded_error", handed="529 page"),
        Reply(answered(stop_reason="max_tokens"), {}, "cut-off answer"),
        failed("api_connection_error"),
    )
    assert run_blocking(escalation.walk(attempt)) == "cut-off answer"
    assert called == ["haiku", "sonnet", "opus"] and len(sink.outcomes) == 3
    assert not escalation.routing().accepted and escalation.routing().model == CHAIN[1].model


def test_with_no_answer_the_walk_hands_back_the_last_failure_worth_passing_on():
    escalation, _ = walk()
    attempt, called = replies(
        failed("overloaded_error", handed="529 from haiku"),
        failed("invalid_response"),
        failed("invalid_request_error", retryable=False, handed="400 from opus"),
    )
    assert run_blocking(escalation.walk(attempt)) == "400 from opus" and called == ["haiku", "sonnet", "opus"]
    escalation, _ = walk()
    attempt, _ = replies(failed("overloaded_error", handed="529 from haiku"), failed("invalid_response"), failed("x"))
    assert run_blocking(escalation.walk(attempt)) == "529 from haiku"
    escalation, _ = walk(steps=CHAIN[:1])
    assert run_blocking(escalation.walk(replies(failed("api_connection_error"))[0])) is None


def test_a_started_stream_ends_the_walk_unsettled_until_its_watch_finishes():
    escalation, sink = walk()
    attempt, called = replies(failed("overloaded_error"), Reply(None, handed="the stream"))
    assert run_blocking(escalation.walk(attempt)) == "the stream"
    assert called == ["haiku", "sonnet"] and len(sink.outcomes) == 1 and escalation.next_step() is None
    StreamWatch(escalation, started=0.0).finish()
    assert [o.model for o in sink.outcomes] == [CHAIN[0].model, CHAIN[1].model]


def test_the_same_walk_runs_awaited_and_a_blocking_walk_may_not_suspend():
    escalation, _ = walk()
    attempt, _ = replies(Reply(answered(), {}, "answer"))
    assert asyncio.run(escalation.walk(attempt)) == "answer"

    async def suspends(step):
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="suspended"):
        run_blocking(walk()[0].walk(suspends))


def test_a_stream_is_settled_once_with_its_time_to_first_token():
    escalation, sink = walk()
    watch = StreamWatch(escalation, started=0.0)
    watch.seen("message_start", {"input_tokens": 9, "output_tokens": 1})
    watch.seen("content_block_delta")
    first_token = watch.ttft_ms
    watch.seen("content_block_delta")
    watch.seen("message_delta", {"output_tokens": 20}, "end_turn")
    attempt = watch.finish()
    assert watch.finish() is attempt and len(sink.outcomes) == 1
    assert watch.ttft_ms == first_token and sink.outcomes[0].ttft_ms == first_token
    assert attempt.accepted and attempt.usage == Usage(9, 20)
    assert escalation.next_step() is None, "a started stream is never escalated"


def test_a_stream_left_unfinished_is_reported_without_a_grade():
    escalation, sink = walk()
    watch = StreamWatch(escalation, started=0.0)
    watch.seen("message_start", {"input_tokens": 9, "output_tokens": 1})
    watch.finish()
    assert not sink.outcomes[0].HasField("success") and escalation.next_step() is None


def test_error_types_come_from_the_api_envelope():
    assert api_error_type(529, {"type": "error", "error": {"type": "overloaded_error"}}) == "overloaded_error"
    assert api_error_type(502, None) == "http_502"


def test_a_single_user_turn_is_routed_as_the_prompt_and_a_conversation_as_messages():
    options = RouteOptions(quality_target=0.8, allowed_tiers=("haiku", "sonnet"), latency_band="async")
    single = predict_request({"messages": [{"role": "user", "content": "Say hi."}]}, options)
    assert single.prompt == "Say hi." and not single.messages
    assert single.quality_target == 0.8 and list(single.allowed_tiers) == ["haiku", "sonnet"]
    assert single.latency_band == 3 and not single.HasField("max_latency_ms")
    chat = predict_request(
        {
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image", "source": {}}]},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"},
            ],
        },
        RouteOptions(),
    )
    assert [(m.role, m.content) for m in chat.messages] == [
        ("system", "Be brief."),
        ("user", "a\n"),
        ("assistant", "b"),
        ("user", "c"),
    ]
    assert predict_request({"messages": [{"role": "user", "content": [{"type": "image"}]}]}, RouteOptions()) is None


def test_a_request_over_a_limit_is_refused_before_it_is_sent():
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}] * 5001
    with pytest.raises(FieldError) as error:
        predict_request({"messages": messages}, RouteOptions())
    assert error.value.field == "messages" and "10,002 items is over the limit of 10,000 items" in str(error.value)


def test_the_router_down_policy_falls_back_to_the_top_tier_or_fails():
    decision = RouterDown().decision("UNAVAILABLE: connection refused", PRICES)
    assert decision.steps == (Step("opus", LADDER.top.model),)
    assert decision.router_error == "UNAVAILABLE: connection refused" and decision.request_id
    named = RouterDown(fallback_model="claude-sonnet-4-6").decision("x", PRICES)
    assert named.steps == (Step("sonnet", "claude-sonnet-4-6"),)
    with pytest.raises(RouterUnavailable, match="connection refused"):
        RouterDown(action="fail").decision("UNAVAILABLE: connection refused", PRICES)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (408, True),
        (409, True),
        (429, True),
        (500, True),
        (529, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (413, False),
    ],
)
def test_statuses_worth_the_next_tier_are_those_the_sdk_retries(status, retryable):
    assert retryable_status(status) is retryable


def test_the_served_ladder_s_own_multipliers_price_an_attempt():
    ladder = TierLadder.from_dict(
        {
            "tier": [
                {
                    "name": "small",
                    "models": ["m-small"],
                    "input_usd_per_mtok": 2.0,
                    "output_usd_per_mtok": 10.0,
                    "cache_read_multiplier": 0.2,
                    "cache_write_multiplier": 2.0,
                    "batch_multiplier": 0.4,
                }
            ]
        }
    )
    prices = PriceBook(ladder, "v9")
    usage = Usage(input_tokens=1000, output_tokens=100, cache_read_input_tokens=5000, cache_creation_input_tokens=500)
    expected = ((1000 + 5000 * 0.2 + 500 * 2.0) * 2.0 + 100 * 10.0) / 1e6
    assert prices.cost("m-small", usage) == pytest.approx(expected)
    assert prices.cost("m-small", usage, batch=True) == pytest.approx(expected * 0.4)
