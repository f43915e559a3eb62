"""`RoutedAnthropic` and `AsyncRoutedAnthropic`: the real `anthropic` SDK against the local stand-in API, routed by a
real `tierwise serve` on loopback. Routing, escalation on a rejected, truncated or failed answer, streams,
pass-through, Message Batches grouped by model, and a router that is down."""

from __future__ import annotations

import asyncio
import logging

import anthropic
import pytest
from tierwise.classifier.request import RouteOptions, RouteRequest
from tierwise.classifier.tiers import TierLadder
from tierwise.classifier.usage import Usage, attempt_cost
from tierwise.serving.client import predict_once
from tierwise.serving.process import ServerProcess
from tierwise.serving.routed_anthropic import AsyncRoutedAnthropic, RoutedAnthropic
from tierwise.serving.router_link import RouterUnavailable
from tierwise.serving.standin import StandIn

from tests.helpers import closed_port

API_KEY = "sk-ant-client-test"
LADDER = TierLadder.load()
HAIKU, SONNET, OPUS = (tier.model for tier in LADDER.tiers)
CHEAPEST_FIRST = RouteOptions(quality_target=0.0)  # every tier clears 0: the chain starts at the cheapest
HI = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def router(trained_bundle):
    with ServerProcess(["--model", str(trained_bundle), "--port", "0", "--no-metrics"]) as server:
        yield server


@pytest.fixture
def fake():
    with StandIn(api_key=API_KEY) as server:
        yield server


def sdk(fake: StandIn) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=API_KEY, base_url=fake.url, max_retries=0)


def models_called(fake: StandIn) -> list[str]:
    return [call["model"] for call in fake.message_calls]


def long_on_haiku(params):
    return "x" * 400 if params["model"] == HAIKU else "Short."


def test_a_request_goes_to_the_model_the_router_picks_and_carries_its_routing(router, fake):
    expected = predict_once(router.target, RouteRequest("Say hi."))
    with RoutedAnthropic(router=router.target, client=sdk(fake)) as routed:
        message = routed.messages.create(max_tokens=100, messages=HI)
    assert models_called(fake) == [expected["model"]] and message.model == expected["model"]
    routing = message.tierwise
    assert (routing.tier, routing.model, routing.accepted) == (expected["tier"], expected["model"], True)
    assert routing.fallback_chain == tuple(expected["fallback_chain"]) and routing.router_error is None
    assert routing.request_id and len(routing.attempts) == 1
    tier = LADDER.tiers[LADDER.index(routing.tier)]
    assert routing.cost_usd == pytest.approx(attempt_cost(tier, Usage.from_mapping(message.usage)))
    assert "tierwise" not in message.model_dump(), "routing details are never serialized with the message"


def test_allowed_tiers_restrict_the_choice(router, fake):
    with RoutedAnthropic(
        router=router.target, client=sdk(fake), routing=RouteOptions(allowed_tiers=("sonnet",))
    ) as routed:
        message = routed.messages.create(max_tokens=100, messages=HI)
    assert models_called(fake) == [SONNET] and message.tierwise.fallback_chain == ("sonnet",)


def test_an_answer_cut_off_at_max_tokens_escalates_to_the_next_tier(router):
    with (
        StandIn(api_key=API_KEY, answer=long_on_haiku) as fake,
        RoutedAnthropic(router=router.target, client=sdk(fake), routing=CHEAPEST_FIRST) as routed,
    ):
        message = routed.messages.create(max_tokens=20, messages=HI)
    assert models_called(fake) == [HAIKU, SONNET]
    assert message.content[0].text == "Short." and message.stop_reason == "end_turn"
    first, second = message.tierwise.attempts
    assert (first.stop_reason, first.accepted, second.accepted) == ("max_tokens", False, True)
    assert message.tierwise.cost_usd == pytest.approx(first.cost_usd + second.cost_usd)
    assert (message.tierwise.tier, message.tierwise.attempt) == ("sonnet", 1)


def test_an_answer_the_accept_check_rejects_escalates(router):
    answers = {HAIKU: "41", SONNET: "42", OPUS: "42"}
    with StandIn(api_key=API_KEY, answer=lambda params: answers[params["model"]]) as fake:
        accept = lambda message: message.content[0].text == "42"  # noqa: E731
        with RoutedAnthropic(router=router.target, client=sdk(fake), accept=accept, routing=CHEAPEST_FIRST) as routed:
            message = routed.messages.create(max_tokens=100, messages=HI)
            scored = routed.messages.create(
                max_tokens=100, messages=HI, accept=lambda message: 0.9 if message.content[0].text == "42" else 0.1
            )
    assert models_called(fake) == [HAIKU, SONNET, HAIKU, SONNET]
    assert message.content[0].text == "42" and [a.accepted for a in message.tierwise.attempts] == [False, True]
    assert [a.score for a in scored.tierwise.attempts] == [0.1, 0.9]


def test_an_overloaded_tier_escalates_and_a_bad_request_is_raised_at_once(router, fake):
    with RoutedAnthropic(router=router.target, client=sdk(fake), routing=CHEAPEST_FIRST) as routed:
        fake.fail("POST", "/v1/messages", 529, model=HAIKU)
        message = routed.messages.create(max_tokens=100, messages=HI)
        assert message.model == SONNET
        assert [a.error for a in message.tierwise.attempts] == ["overloaded_error", ""]
        fake.fail("POST", "/v1/messages", 400, model=HAIKU)
        with pytest.raises(anthropic.BadRequestError):
            routed.messages.create(max_tokens=100, messages=HI)
    assert models_called(fake) == [SONNET], "the failed calls never reached the fake's answer"
    assert [entry[2] for entry in fake.log] == [529, 200, 400]


def test_when_every_tier_fails_the_last_error_is_raised(router, fake):
    for model in (HAIKU, SONNET, OPUS):
        fake.fail("POST", "/v1/messages", 529, model=model)
    with (
        RoutedAnthropic(router=router.target, client=sdk(fake), routing=CHEAPEST_FIRST) as routed,
        pytest.raises(anthropic.InternalServerError) as error,
    ):
        routed.messages.create(max_tokens=100, messages=HI)
    assert error.value.status_code == 529 and [entry[2] for entry in fake.log] == [529, 529, 529]


def test_a_named_model_passes_through_untouched(router, fake):
    with RoutedAnthropic(router=router.target, client=sdk(fake)) as routed:
        message = routed.messages.create(model="claude-sonnet-4-6", max_tokens=100, messages=HI)
    assert models_called(fake) == ["claude-sonnet-4-6"] and not hasattr(message, "tierwise")


def test_a_stream_passes_through_with_its_time_to_first_token(router):
    with (
        StandIn(api_key=API_KEY, stream_delay_s=0.05) as fake,
        RoutedAnthropic(router=router.target, client=sdk(fake)) as routed,
        routed.messages.stream(max_tokens=100, messages=HI) as stream,
    ):
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    assert text == message.content[0].text and fake.message_calls[0]["stream"] is True
    [attempt] = message.tierwise.attempts
    assert attempt.accepted and attempt.usage.output_tokens == message.usage.output_tokens
    assert attempt.ttft_ms is not None and attempt.latency_ms - attempt.ttft_ms > 100, "6 events after the first delta"


def test_a_conversation_stays_on_the_tier_its_streamed_first_turn_warmed(router, fake):
    hard = "Analyze the trade-offs of a merger under antitrust review, step by step, and justify each move."
    rules = "Cite the governing rule for every claim you make. " * 2400  # a prefix worth keeping warm
    system = [{"type": "text", "text": rules, "cache_control": {"type": "ephemeral"}}]
    turn = {"max_tokens": 100, "system": system, "metadata": {"user_id": "alice"}}
    with RoutedAnthropic(router=router.target, client=sdk(fake)) as routed:
        opening = [{"role": "user", "content": hard}]
        with routed.messages.stream(messages=opening, routing=RouteOptions(quality_target=1.0), **turn) as stream:
            first = stream.get_final_message()
        assert first.tierwise.tier == "opus" and first.usage.cache_creation_input_tokens > 25_000
        later = [
            *opening,
            {"role": "assistant", "content": first.content[0].text},
            {"role": "user", "content": "Shorter?"},
        ]
        kept = routed.messages.create(messages=later, routing=CHEAPEST_FIRST, **turn)
    assert (kept.tierwise.tier, kept.tierwise.kept_warm) == ("opus", True)
    assert kept.usage.cache_read_input_tokens >= first.usage.cache_creation_input_tokens
    with RoutedAnthropic(router=router.target, client=sdk(fake), session_ttl_s=0) as each_on_its_own:
        alone = each_on_its_own.messages.create(messages=later, routing=CHEAPEST_FIRST, **turn)
    assert (alone.tierwise.tier, alone.tierwise.kept_warm) == ("haiku", False)


def test_a_stream_escalates_only_before_it_starts(router):
    with (
        StandIn(api_key=API_KEY, answer=long_on_haiku) as fake,
        RoutedAnthropic(router=router.target, client=sdk(fake), routing=CHEAPEST_FIRST) as routed,
    ):
        fake.fail("POST", "/v1/messages", 529, model=HAIKU)
        with routed.messages.stream(max_tokens=20, messages=HI) as stream:
            escalated = stream.get_final_message()
        with routed.messages.stream(max_tokens=20, messages=HI) as stream:
            truncated = stream.get_final_message()
    assert escalated.model == SONNET and [a.error for a in escalated.tierwise.attempts] == ["overloaded_error", ""]
    assert truncated.model == HAIKU and truncated.stop_reason == "max_tokens"
    assert len(truncated.tierwise.attempts) == 1 and not truncated.tierwise.accepted


def test_create_with_stream_true_gives_the_raw_event_stream_watched(router, fake):
    with RoutedAnthropic(router=router.target, client=sdk(fake)) as routed:
        stream = routed.messages.create(max_tokens=100, messages=HI, stream=True)
        kinds = [event.type for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    [attempt] = stream.tierwise.attempts
    assert attempt.accepted and attempt.ttft_ms is not None and attempt.usage.output_tokens > 1


def test_the_async_twin_routes_escalates_and_streams(router):
    async def run(fake):
        async with AsyncRoutedAnthropic(
            router=router.target,
            client=anthropic.AsyncAnthropic(api_key=API_KEY, base_url=fake.url, max_retries=0),
            routing=CHEAPEST_FIRST,
        ) as routed:
            message = await routed.messages.create(max_tokens=20, messages=HI)
            async with routed.messages.stream(max_tokens=100, messages=HI) as stream:
                text = "".join([chunk async for chunk in stream.text_stream])
                streamed = await stream.get_final_message()
            raw = await routed.messages.create(max_tokens=100, messages=HI, stream=True)
            assert [event.type async for event in raw][-1] == "message_stop"
            assert raw.tierwise.attempts[0].accepted
            return message, text, streamed

    with StandIn(api_key=API_KEY, answer=long_on_haiku) as fake:
        message, text, streamed = asyncio.run(run(fake))
    assert models_called(fake) == [HAIKU, SONNET, HAIKU, HAIKU]
    assert message.model == SONNET and [a.accepted for a in message.tierwise.attempts] == [False, True]
    assert text == "x" * 400 and streamed.tierwise.attempts[0].ttft_ms is not None


def test_a_router_that_is_down_falls_back_to_the_top_tier_flagged_and_logged(fake, caplog):
    caplog.set_level(logging.WARNING)
    with RoutedAnthropic(router=f"127.0.0.1:{closed_port()}", client=sdk(fake), router_timeout_s=2) as routed:
        message = routed.messages.create(max_tokens=100, messages=HI)
        again = routed.messages.create(max_tokens=100, messages=HI)
        assert routed.reporter.flush(10)
        counts = routed.reporter.counts
    assert models_called(fake) == [LADDER.top.model] * 2
    assert message.tierwise.router_error.startswith("UNAVAILABLE") and again.tierwise.router_error
    assert message.tierwise.request_id != again.tierwise.request_id
    warnings = [r.getMessage() for r in caplog.records if "cannot route" in r.getMessage()]
    assert len(warnings) == 1, "one warning when the router goes down, not one per request"
    assert (counts.sent, counts.failed) == (0, 2), "reports that cannot be sent are counted, never raised"


def test_a_router_that_is_down_fails_the_call_when_asked_to(fake):
    with (
        RoutedAnthropic(router=f"127.0.0.1:{closed_port()}", client=sdk(fake), router_down="fail") as routed,
        pytest.raises(RouterUnavailable, match="UNAVAILABLE"),
    ):
        routed.messages.create(max_tokens=100, messages=HI)
    assert fake.message_calls == []


def test_a_named_fallback_model_serves_while_the_router_is_down(fake):
    with RoutedAnthropic(
        router=f"127.0.0.1:{closed_port()}", client=sdk(fake), fallback_model="claude-sonnet-4-6"
    ) as routed:
        message = routed.messages.create(max_tokens=100, messages=HI)
    assert message.model == "claude-sonnet-4-6" and message.tierwise.tier == "sonnet"


def test_batches_go_one_per_chosen_model_and_rejected_answers_to_the_next_tier(router):
    answers = {HAIKU: "41", SONNET: "42", OPUS: "42"}
    requests = [
        {"custom_id": f"q{i}", "params": {"max_tokens": 50, "messages": [{"role": "user", "content": text}]}}
        for i, text in enumerate(["Say hi.", "Name a colour.", "Prove that there are infinitely many primes."])
    ]
    with StandIn(api_key=API_KEY, answer=lambda params: answers[params["model"]]) as fake:
        accept = lambda message: message.content[0].text == "42"  # noqa: E731
        with RoutedAnthropic(router=router.target, client=sdk(fake), accept=accept, routing=CHEAPEST_FIRST) as routed:
            results = routed.batches.run(requests, poll_s=0.01)
        batches = sorted(fake.batches.values(), key=lambda batch: batch.created_at)
    assert [sorted(r["custom_id"] for r in b.requests) for b in batches] == [["q0", "q1", "q2"]] * 2
    assert [{r["params"]["model"] for r in b.requests} for b in batches] == [{HAIKU}, {SONNET}]
    for custom_id, message in results.items():
        assert message.content[0].text == "42", custom_id
        first, second = message.tierwise.attempts
        assert (first.model, first.accepted, second.model, second.accepted) == (HAIKU, False, SONNET, True)
        sonnet = LADDER.tiers[1]
        assert second.cost_usd == pytest.approx(attempt_cost(sonnet, Usage.from_mapping(message.usage), batch=True))


def test_batches_group_requests_by_the_model_the_router_chose(router, fake):
    texts = ["Say hi.", "Prove Fermat's little theorem, then generalise it to Euler's theorem.", "Name a colour."]
    requests = [
        {"custom_id": f"q{i}", "params": {"max_tokens": 50, "messages": [{"role": "user", "content": text}]}}
        for i, text in enumerate(texts)
    ]
    with RoutedAnthropic(router=router.target, client=sdk(fake)) as routed:
        job = routed.batches.submit(requests)
    expected = {
        f"q{i}": predict_once(router.target, RouteRequest(text, options=RouteOptions(latency_band="async")))["model"]
        for i, text in enumerate(texts)
    }
    grouped = {
        model: sorted(r["custom_id"] for r in fake.batches[batch_id].requests)
        for model, batch_id in job.batch_ids.items()
    }
    assert grouped == {model: sorted(c for c, m in expected.items() if m == model) for model in set(expected.values())}
