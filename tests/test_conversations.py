"""Conversations keep their cache: a turn stays on the tier whose prompt cache holds the conversation's prefix when
that tier is as likely to answer acceptably and costs no more with the prefix priced at the cache-read rate there
and the cache-write rate elsewhere (`Policy.keep_warm`); the proxy's memory of conversations is keyed, expiring and
bounded (`Conversations`)."""

from __future__ import annotations

import tracemalloc

import pytest
from tierwise.classifier.decider import Decider
from tierwise.classifier.limits import FieldError
from tierwise.classifier.policy import Policy, expected_chain_cost
from tierwise.classifier.request import DEFAULT_OPTIONS, Conversation, RouteOptions, RouteRequest
from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierLadder
from tierwise.serving.conversations import ENTRY_BYTES, SESSION_HEADER, Conversations, conversation_key
from tierwise.serving.escalation import Attempt
from tierwise.serving.price_book import Usage
from tierwise.serving.validation import route_request, wire_request

LADDER = TierLadder.load()
HAIKU, SONNET, OPUS = 0, 1, 2
POLICY = Policy(tiers=tuple(LADDER.names), costs=(0.001, 0.004, 0.010), threshold=0.8, rule="absolute")
EASY = [0.90, 0.95, 0.97]  # haiku clears the 0.8 threshold: the router alone picks it


def prefix_costs(tokens: int, warm: int) -> list[float]:
    return [tier.cached_prefix_cost(tokens, index == warm) for index, tier in enumerate(LADDER.tiers)]


def kept(probs: list[float], warm: int, tokens: int, options: RouteOptions = DEFAULT_OPTIONS):
    return POLICY.keep_warm(probs, POLICY.choose(probs, options), options, warm, prefix_costs(tokens, warm))


def test_a_long_cached_prefix_keeps_the_turn_on_its_warm_tier_and_its_cost_counts_the_cache_read():
    choice = kept(EASY, OPUS, 10_000)
    # opus reads 10k tokens at 0.1 x $5/M ($0.005); haiku would write them at 1.25 x $1/M ($0.0125), sonnet
    # at 1.25 x $3/M, so haiku's chain costs 0.0135 + 0.1 x 0.0415 + 0.05 x 0.015 = $0.0184 against opus's $0.015.
    assert (choice.tier, choice.chain, choice.kept_warm) == (OPUS, (OPUS,), True)
    assert choice.expected_cost == pytest.approx(0.010 + 0.005)


def test_a_short_cached_prefix_does_not_pay_for_the_dearer_tier_and_the_cold_tiers_pay_the_cache_write():
    choice = kept(EASY, OPUS, 100)
    assert (choice.tier, choice.kept_warm) == (HAIKU, False)
    with_prefix = [cost + prefix for cost, prefix in zip(POLICY.costs, prefix_costs(100, OPUS), strict=True)]
    assert choice.expected_cost == pytest.approx(expected_chain_cost(EASY, with_prefix, choice.chain))
    assert choice.expected_cost > POLICY.choose(EASY).expected_cost


def test_a_turn_moves_up_when_the_router_needs_a_higher_tier_than_the_warm_one():
    hard = [0.30, 0.90, 0.95]
    choice = kept(hard, HAIKU, 50_000)
    assert (choice.tier, choice.chain, choice.kept_warm) == (SONNET, (SONNET, OPUS), False)


def test_a_warm_tier_the_request_does_not_allow_is_left():
    choice = kept(EASY, OPUS, 10_000, RouteOptions(allowed_tiers=("haiku", "sonnet")))
    assert (choice.tier, choice.kept_warm) == (HAIKU, False)


def test_a_kept_turn_escalates_along_the_chosen_chain_above_its_warm_tier():
    choice = kept(EASY, SONNET, 20_000)
    assert (choice.tier, choice.chain, choice.kept_warm) == (SONNET, (SONNET, OPUS), True)
    # sonnet reads 20k at 0.1 x $3/M ($0.006); opus, reached 5% of the time, writes them at 1.25 x $5/M ($0.125)
    assert choice.expected_cost == pytest.approx(0.004 + 0.006 + 0.05 * (0.010 + 0.125))


def test_a_known_answer_length_prices_the_turn_on_each_tier_instead_of_its_mean_cost():
    # The last answer was 2,000 tokens: $0.01 on haiku, $0.03 on sonnet, $0.05 on opus. With 10k cached tokens haiku's
    # chain costs 0.0225 + 0.1 x (0.03 + 0.0375) + 0.05 x (0.05 + 0.005) = $0.032, opus's 0.05 + 0.005: not kept.
    answers = [tier.token_cost(0, 2_000) for tier in LADDER.tiers]
    choice = POLICY.keep_warm(EASY, POLICY.choose(EASY), DEFAULT_OPTIONS, OPUS, prefix_costs(10_000, OPUS), answers)
    assert (choice.tier, choice.kept_warm) == (HAIKU, False)
    assert choice.expected_cost == pytest.approx(0.0225 + 0.1 * (0.03 + 0.0375) + 0.05 * (0.05 + 0.005))


def test_conversation_fields_are_checked_where_built():
    with pytest.raises(FieldError, match="warm_tier: must not be empty"):
        Conversation("", 10)
    with pytest.raises(FieldError, match="cached_tokens: must be a whole number >= 0"):
        Conversation("opus", -1)
    with pytest.raises(FieldError, match="cached_tokens: 10,000,001 tokens is over the limit of 10,000,000 tokens"):
        Conversation("opus", 10_000_001)
    with pytest.raises(FieldError, match="output_tokens: must be a whole number >= 0"):
        Conversation("opus", 10, 1.5)


# --- the proxy's memory of conversations ------------------------------------------------------------------------

FIRST = {"role": "user", "content": "Plan a trip to Lisbon."}
CACHED = {"type": "ephemeral"}
LATER = [FIRST, {"role": "assistant", "content": "Day one..."}, {"role": "user", "content": "And day two?"}]


def params(messages: list[dict], user: str | None = None, system: object = "You plan trips.") -> dict:
    request = {"model": "tierwise", "max_tokens": 100, "system": system, "messages": messages}
    return request | ({"metadata": {"user_id": user}} if user else {})


def test_the_turns_of_a_conversation_share_a_key_and_other_conversations_do_not():
    first = conversation_key({}, params([FIRST], "u1"))
    assert conversation_key({}, params(LATER, "u1")) == first
    assert conversation_key({}, params(LATER, "u2")) != first
    assert conversation_key({}, params(LATER, "u1", system="You write poems.")) != first
    assert conversation_key({}, params([{"role": "user", "content": "Plan a trip to Porto."}], "u1")) != first


def test_moving_cache_marks_do_not_change_the_conversation():
    marked = {"role": "user", "content": [{"type": "text", "text": FIRST["content"], "cache_control": CACHED}]}
    system = [{"type": "text", "text": "You plan trips.", "cache_control": CACHED}]
    assert conversation_key({}, params([marked], "u1", system=system)) == conversation_key({}, params(LATER, "u1"))


def test_the_session_header_names_the_conversation_whatever_its_messages():
    named = conversation_key({SESSION_HEADER: "chat-42"}, params([FIRST], "u1"))
    assert conversation_key({SESSION_HEADER: "chat-42"}, params(LATER, "u2", system="other")) == named
    assert named != conversation_key({}, params([FIRST], "u1"))
    assert conversation_key({SESSION_HEADER: "chat-43"}, params([FIRST], "u1")) != named
    with pytest.raises(FieldError, match=f"{SESSION_HEADER}: 129 characters is over the limit of 128"):
        conversation_key({SESSION_HEADER: "x" * 129}, params([FIRST]))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def answered(tier: str, usage: Usage | None, attempt: int = 0) -> Attempt:
    """A settled attempt on `tier`: answered with `usage`, or failed without one."""
    error = "" if usage is not None else "overloaded_error"
    return Attempt(attempt, tier, "m", 1.0, usage, "end_turn", error, usage is not None, None, 0.01)


def test_a_conversation_is_remembered_with_what_its_answer_left_cached_until_its_cache_expires():
    clock = Clock()
    conversations = Conversations(ttl_s=300, clock=clock)
    key = b"k" * 16
    assert conversations.get(key) is None
    conversations.answered(key, answered("haiku", Usage(10, 20, 0, 2_000)))
    conversations.answered(key, answered("sonnet", Usage(10, 20, 1_500, 500), attempt=1))  # the turn's last answer
    assert conversations.get(key) == Conversation("sonnet", 2_000, output_tokens=20)
    clock.now += 299
    conversations.answered(key, answered("sonnet", Usage(10, 40, 2_100, 30)))  # a turn renews it
    clock.now += 299
    assert conversations.get(key) == Conversation("sonnet", 2_130, output_tokens=40)
    clock.now += 1
    assert conversations.get(key) is None and len(conversations) == 0


def test_a_failed_attempt_leaves_the_conversation_as_it_was_and_a_ttl_of_0_follows_none():
    conversations = Conversations(clock=Clock())
    conversations.answered(b"a" * 16, answered("opus", Usage(0, 0, 900, 0)))
    conversations.answered(b"a" * 16, answered("haiku", None))
    assert conversations.get(b"a" * 16) == Conversation("opus", 900, output_tokens=0)
    off = Conversations(ttl_s=0, clock=Clock())
    off.answered(b"a" * 16, answered("opus", Usage(0, 0, 900, 0)))
    assert len(off) == 0 and off.key({}, params([FIRST])) is None


def test_the_memory_is_bounded_in_entries_and_in_bytes_the_least_recently_used_going_first():
    by_entries = Conversations(max_entries=3, clock=Clock())
    for name in b"abcd":
        by_entries.answered(bytes([name]) * 16, answered("opus", Usage(0, 0, 1, 0)))
    assert len(by_entries) == 3 and by_entries.get(b"a" * 16) is None and by_entries.get(b"d" * 16) is not None
    by_bytes = Conversations(max_bytes=2 * ENTRY_BYTES, clock=Clock())
    for name in b"abc":
        by_bytes.answered(bytes([name]) * 16, answered("opus", Usage(0, 0, 1, 0)))
    assert len(by_bytes) == 2 and by_bytes.get(b"a" * 16) is None


def test_an_entry_takes_no_more_memory_than_the_byte_bound_counts():
    conversations = Conversations(clock=Clock())
    tiers = [tier.name for tier in LADDER.tiers]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for index in range(20_000):
        conversations.answered(index.to_bytes(16, "big"), answered(tiers[index % 3], Usage(0, 0, index, 0)))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(conversations) == 20_000
    assert used / 20_000 <= ENTRY_BYTES


# --- one decision path: a batch, and the wire ---------------------------------------------------------------------

HARD = "Analyze the trade-offs of a merger under antitrust review, step by step, and justify each move."


def test_a_batch_keeps_each_request_on_its_own_conversation_as_a_single_predict_does(trained_bundle):
    router = Router.load(trained_bundle)
    lenient = RouteOptions(quality_target=0.0)  # alone, the router picks haiku
    warm = RouteRequest(prompt=HARD, options=lenient, conversation=Conversation("opus", 30_000, 100))
    kept, alone = Decider().decide_batch(router, [warm, RouteRequest(prompt=HARD, options=lenient)])
    assert (kept.prediction.tier, kept.prediction.kept_warm, alone.prediction.tier) == ("opus", True, "haiku")
    single = Decider().decide(router, warm).prediction
    assert (single.tier, single.fallback_chain, single.kept_warm) == ("opus", ["opus"], True)
    assert single.expected_cost_usd == pytest.approx(kept.prediction.expected_cost_usd)


def test_a_conversation_crosses_the_wire_and_a_bad_one_is_named_inside_it():
    request = RouteRequest(prompt=HARD, conversation=Conversation("opus", 30_000, 100))
    assert route_request(wire_request(request), 1 << 20) == request
    assert not wire_request(RouteRequest(prompt=HARD)).HasField("conversation")
    wire = wire_request(request)
    wire.conversation.cached_tokens = -5
    with pytest.raises(FieldError, match=r"conversation\.cached_tokens: must be a whole number >= 0"):
        route_request(wire, 1 << 20)
