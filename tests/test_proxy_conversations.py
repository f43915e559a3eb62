"""Conversations keep their cache through the proxy: a turn of a conversation whose last turn warmed the top tier's
prompt cache stays there (and reads the cache) where the router alone would send it to a cold cheaper tier (and
write the cache again); the decision log says so. Real processes on 127.0.0.1: the stand-in API (prompt caching
per model, as the real APIs report it), `tierwise proxy --model` and `tierwise proxy --router` in front of a
`tierwise serve`, the real `anthropic` and `openai` SDKs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from tierwise.serving.process import ServerProcess
from tierwise.serving.standin import StandIn

from tests.helpers import PROXY, logged_rows, start_proxy

API_KEY = "sk-ant-conversations-test"
HARD = "Analyze the trade-offs of a merger under antitrust review, step by step, and justify each move."


def system(proxy: ServerProcess) -> list[dict]:
    """A long system prompt marked for caching, the prefix every turn of a conversation repeats; its own per proxy
    (the stand-in's cache is shared by both)."""
    rules = "Cite the governing rule for every claim you make. " * 2400
    return [{"type": "text", "text": f"Analyst {proxy.port}. {rules}", "cache_control": {"type": "ephemeral"}}]


STRICT, LENIENT = {"x-tierwise-quality-target": "1"}, {"x-tierwise-quality-target": "0"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[StandIn]:
    with StandIn(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture(scope="module", params=["in-process", "via gRPC"])
def proxy(request, trained_bundle, upstream, tmp_path_factory) -> Iterator[tuple[ServerProcess, Path]]:
    """A proxy in front of the stand-in, and the decision log its router writes."""
    log = tmp_path_factory.mktemp("conversations") / "decisions.jsonl"
    served = ["--model", str(trained_bundle), "--no-metrics", "--decision-log", str(log)]
    if request.param == "in-process":
        with ServerProcess([*served, "--listen", "127.0.0.1:0", "--upstream", upstream.url], program=PROXY) as p:
            yield p, log
    else:
        with ServerProcess([*served, "--port", "0"]) as server, start_proxy(server.target, upstream.url) as p:
            yield p, log


def turn(proxy: ServerProcess, messages: list[dict], headers: dict[str, str]):
    client = anthropic.Anthropic(api_key=API_KEY, base_url=f"http://127.0.0.1:{proxy.port}", max_retries=0)
    return client.messages.with_raw_response.create(
        model="tierwise", max_tokens=100, system=system(proxy), messages=messages, extra_headers=headers
    )


def test_the_next_turn_stays_on_the_tier_whose_cache_holds_the_conversation(proxy):
    proxy, log = proxy
    session = {"x-tierwise-session": f"chat-{proxy.port}"}
    first = turn(proxy, [{"role": "user", "content": HARD}], STRICT | session)
    assert first.headers["x-tierwise-tier"] == "opus"
    written = first.parse().usage.cache_creation_input_tokens
    assert written > 25_000  # a prefix long enough that re-writing it elsewhere costs more than opus reading it

    answer = first.parse().content[0].text
    later = [
        {"role": "user", "content": HARD},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "Thanks. Now say it in one line."},
    ]
    alone = turn(proxy, later, LENIENT | {"x-tierwise-session": f"another-{proxy.port}"})
    assert alone.headers["x-tierwise-tier"] == "haiku" and "x-tierwise-kept-warm" not in alone.headers
    assert alone.parse().usage.cache_read_input_tokens == 0  # haiku's cache is cold: the prefix is written again

    kept = turn(proxy, later, LENIENT | session)
    assert (kept.headers["x-tierwise-tier"], kept.headers["x-tierwise-kept-warm"]) == ("opus", "true")
    assert kept.parse().usage.cache_read_input_tokens >= written

    rows = logged_rows(log, [alone.headers["x-tierwise-request-id"], kept.headers["x-tierwise-request-id"]])
    by_id = {row["request_id"]: row for row in rows}
    assert by_id[kept.headers["x-tierwise-request-id"]]["kept_warm"] is True
    assert by_id[kept.headers["x-tierwise-request-id"]]["tier"] == "opus"
    assert by_id[alone.headers["x-tierwise-request-id"]]["kept_warm"] is False


def test_without_a_session_header_the_user_and_the_first_messages_name_the_conversation(proxy):
    proxy, _ = proxy
    opening = {"role": "user", "content": f"{HARD} (conversation {proxy.port})"}
    client = anthropic.Anthropic(api_key=API_KEY, base_url=f"http://127.0.0.1:{proxy.port}", max_retries=0)

    def ask(messages: list[dict], user: str, headers: dict[str, str]):
        return client.messages.with_raw_response.create(
            model="tierwise",
            max_tokens=100,
            system=system(proxy),
            messages=messages,
            metadata={"user_id": user},
            extra_headers=headers,
        )

    first = ask([opening], "alice", STRICT)
    later = [
        opening,
        {"role": "assistant", "content": first.parse().content[0].text},
        {"role": "user", "content": "Shorter?"},
    ]
    assert ask(later, "alice", LENIENT).headers.get("x-tierwise-kept-warm") == "true"
    assert "x-tierwise-kept-warm" not in ask(later, "bob", LENIENT).headers


def test_a_session_header_over_the_identifier_limit_is_refused(proxy):
    proxy, _ = proxy
    with pytest.raises(anthropic.BadRequestError, match="x-tierwise-session: 129 characters is over the limit"):
        turn(proxy, [{"role": "user", "content": HARD}], {"x-tierwise-session": "s" * 129})


def chat_turn(proxy: ServerProcess, messages: list[dict], headers: dict[str, str]):
    """A turn through the proxy's Chat Completions endpoint, the same long system prompt first (no cache marks:
    Chat Completions has none)."""
    client = openai.OpenAI(api_key=API_KEY, base_url=f"http://127.0.0.1:{proxy.port}/v1", max_retries=0)
    prompt = {"role": "system", "content": f"Chat. {system(proxy)[0]['text']}"}
    return client.chat.completions.with_raw_response.create(
        model="tierwise", max_tokens=100, messages=[prompt, *messages], extra_headers=headers
    )


def test_a_chat_completions_conversation_named_by_its_session_is_cached_on_a_claude_tier_and_kept_warm(proxy):
    proxy, _ = proxy
    session = {"x-tierwise-session": f"openai-{proxy.port}"}
    first = chat_turn(proxy, [{"role": "user", "content": HARD}], STRICT | session)
    assert first.headers["x-tierwise-tier"] == "opus"
    assert first.parse().usage.prompt_tokens_details.cached_tokens == 0  # written, nothing to read yet

    later = [
        {"role": "user", "content": HARD},
        {"role": "assistant", "content": first.parse().choices[0].message.content},
        {"role": "user", "content": "Thanks. Now say it in one line."},
    ]
    kept = chat_turn(proxy, later, LENIENT | session)
    assert (kept.headers["x-tierwise-tier"], kept.headers["x-tierwise-kept-warm"]) == ("opus", "true")
    assert kept.parse().usage.prompt_tokens_details.cached_tokens > 25_000  # the prefix the first turn wrote

    unnamed = chat_turn(proxy, later, LENIENT)  # no session named: no cache marks, nothing cached or kept warm
    assert unnamed.headers["x-tierwise-tier"] == "haiku" and "x-tierwise-kept-warm" not in unnamed.headers
    details = unnamed.parse().usage.prompt_tokens_details
    assert details is None or not details.cached_tokens
