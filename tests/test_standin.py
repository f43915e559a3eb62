"""The stand-in API, Anthropic side and command line: `tierwise stand-in` prints what to export and stops cleanly; the
real `anthropic` SDK gets messages (streamed and not, stop sequences, max_tokens), models, errors in the API's format,
and prompt caching per model that expires after five minutes of disuse (on a clock the test moves)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import anthropic
import httpx
import pytest
from tierwise.classifier.tiers import CACHE_LIFETIME_S, TierLadder
from tierwise.serving.standin import StandIn
from tierwise.serving.standin_cache import PromptCache
from tierwise.serving.standin_defaults import STAND_IN_KEY
from tierwise.serving.standin_text import default_answer

HAIKU, SONNET, OPUS = (tier.model for tier in TierLadder.load().tiers)
HI = [{"role": "user", "content": "Say hi."}]
RUBRIC = "You grade answers. " * 200


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def stand_in(clock):
    with StandIn(cache=PromptCache(clock=clock)) as server:
        yield server


@pytest.fixture(scope="module")
def client(stand_in) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=STAND_IN_KEY, base_url=stand_in.url, max_retries=0)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_the_command_prints_the_key_and_base_urls_to_export_and_stops_on_ctrl_c_or_sigterm(stop):
    command = [sys.executable, "-m", "tierwise", "stand-in", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        ready, anthropic_line, openai_line, proxy_line, _ = (process.stdout.readline() for _ in range(5))
        base = "http://" + re.search(r"listening on (\S+) ", ready).group(1)
        reply = anthropic.Anthropic(api_key=STAND_IN_KEY, base_url=base).messages.create(
            model=HAIKU, max_tokens=50, messages=HI
        )
        process.send_signal(stop)
        assert process.wait(10) == 0
    assert anthropic_line == f"export ANTHROPIC_API_KEY={STAND_IN_KEY} ANTHROPIC_BASE_URL={base}\n"
    assert openai_line == f"export OPENAI_API_KEY={STAND_IN_KEY} OPENAI_BASE_URL={base}/v1\n"
    assert proxy_line == f"export TIERWISE_UPSTREAM={base}\n"
    assert reply.content[0].text == default_answer({"model": HAIKU, "messages": HI})


def test_messages_answer_deterministically_streamed_or_not(client):
    message = client.messages.create(model=SONNET, max_tokens=50, messages=HI)
    with client.messages.stream(model=SONNET, max_tokens=50, messages=HI) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert message.content[0].text == streamed == default_answer({"model": SONNET, "messages": HI})
    assert message.stop_reason == final.stop_reason == "end_turn"
    assert message.usage.output_tokens == final.usage.output_tokens > 0


def test_stop_sequences_and_max_tokens_end_an_answer_as_the_api_says(client):
    stopped = client.messages.create(model=HAIKU, max_tokens=50, messages=HI, stop_sequences=[" "])
    assert (stopped.content[0].text, stopped.stop_reason, stopped.stop_sequence) == ("Answer", "stop_sequence", " ")
    cut = client.messages.create(model=HAIKU, max_tokens=1, messages=HI)
    assert (cut.content[0].text, cut.stop_reason) == ("Answ", "max_tokens")


def test_any_claude_model_is_answered_and_listed_another_is_not_found(client):
    assert client.messages.create(model="claude-3-5-haiku-latest", max_tokens=5, messages=HI).model.startswith("claude")
    listed = [model.id for model in client.models.list()]
    assert listed[:3] == [HAIKU, SONNET, OPUS] and "claude-3-5-haiku-latest" in listed
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="llama-3.1-8b", max_tokens=5, messages=HI)
    assert missing.value.body["error"] == {"type": "not_found_error", "message": "model: llama-3.1-8b"}


def test_the_key_is_taken_as_x_api_key_or_bearer_and_another_gets_401_in_the_api_format(stand_in):
    bearer = anthropic.Anthropic(auth_token=STAND_IN_KEY, base_url=stand_in.url, max_retries=0)
    assert bearer.messages.create(model=HAIKU, max_tokens=5, messages=HI).type == "message"
    with pytest.raises(anthropic.AuthenticationError) as refused:
        anthropic.Anthropic(api_key="sk-wrong", base_url=stand_in.url, max_retries=0).messages.create(
            model=HAIKU, max_tokens=5, messages=HI
        )
    assert refused.value.body["type"] == "error" and refused.value.body["error"]["type"] == "authentication_error"
    no_version = httpx.post(f"{stand_in.url}/v1/messages", headers={"x-api-key": STAND_IN_KEY}, json={})
    assert no_version.status_code == 400 and "anthropic-version" in no_version.json()["error"]["message"]


def cached_request(client: anthropic.Anthropic, model: str, question: str) -> anthropic.types.Usage:
    system = [{"type": "text", "text": RUBRIC, "cache_control": {"type": "ephemeral"}}]
    return client.messages.create(
        model=model, max_tokens=20, system=system, messages=[{"role": "user", "content": question}]
    ).usage


def test_a_cached_prefix_is_written_once_then_read_on_its_model_and_written_again_on_another(client, clock):
    first = cached_request(client, HAIKU, "Is 2 + 2 = 4?")
    again = cached_request(client, HAIKU, "Is 3 + 3 = 6?")
    other_model = cached_request(client, SONNET, "Is 2 + 2 = 4?")
    assert first.cache_creation_input_tokens == len(RUBRIC) // 4 and first.cache_read_input_tokens == 0
    assert (again.cache_read_input_tokens, again.cache_creation_input_tokens) == (len(RUBRIC) // 4, 0)
    assert (other_model.cache_read_input_tokens, other_model.cache_creation_input_tokens) == (0, len(RUBRIC) // 4)
    assert first.input_tokens == again.input_tokens == len("Is 2 + 2 = 4?") // 4, "cached tokens are not input"

    clock.now += CACHE_LIFETIME_S - 1
    assert cached_request(client, HAIKU, "Still there?").cache_read_input_tokens > 0, "each read renews the lifetime"
    clock.now += CACHE_LIFETIME_S
    expired = cached_request(client, HAIKU, "Still there?")
    assert (expired.cache_read_input_tokens, expired.cache_creation_input_tokens) == (0, len(RUBRIC) // 4)


def test_a_conversation_reads_its_earlier_turns_and_writes_only_the_new_ones(client):
    turn = [{"type": "text", "text": "Tell me about caching. " * 100, "cache_control": {"type": "ephemeral"}}]
    history = [{"role": "user", "content": turn}]
    first = client.messages.create(model=OPUS, max_tokens=20, messages=history).usage
    reply = {"type": "text", "text": "It saves money. " * 50, "cache_control": {"type": "ephemeral"}}
    longer = [*history, {"role": "assistant", "content": [reply]}, {"role": "user", "content": "And then?"}]
    second = client.messages.create(model=OPUS, max_tokens=20, messages=longer).usage
    assert first.cache_creation_input_tokens == len(turn[0]["text"]) // 4
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == len(reply["text"]) // 4
