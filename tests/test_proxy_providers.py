# ruff: noqa: F811  (the fixtures of tests/test_proxy.py, imported to run here too)
"""A ladder that mixes providers: the cheapest tier a local OpenAI-compatible server (the stand-in's Chat
Completions), two Claude tiers above it. The real `anthropic` and `openai` SDKs against one proxy, each routed,
escalated across providers and streamed."""

from __future__ import annotations

import subprocess

import anthropic
import openai
import pytest
from tierwise.classifier.tiers import TierLadder
from tierwise.serving.standin_text import default_answer

from tests.helpers import PROXY, start_proxy
from tests.test_proxy import (  # noqa: F401  (fixtures)
    API_KEY,
    CHEAPEST_FIRST,
    HAIKU,
    SONNET,
    fake,
    long_on_haiku,
    models_called,
    proxy_url,
    router,
    upstream,
)

HI = [{"role": "user", "content": "Say hi."}]


def mixed_ladder(local_url: str) -> str:
    """The shipped ladder, its cheapest tier served over Chat Completions at `local_url` with the key in LOCAL_KEY."""
    lines = []
    for index, tier in enumerate(TierLadder.load().tiers):
        lines += [
            "[[tier]]",
            f'name = "{tier.name}"',
            f"models = {list(tier.models)!r}".replace("'", '"'),
            f"input_usd_per_mtok = {tier.input_usd_per_mtok}",
            f"output_usd_per_mtok = {tier.output_usd_per_mtok}",
        ]
        if index == 0:
            lines += ['provider = "openai"', f'base_url = "{local_url}"', 'api_key_env = "LOCAL_KEY"']
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def mixed(router, upstream, tmp_path_factory):
    ladder = tmp_path_factory.mktemp("ladder") / "tiers.toml"
    ladder.write_text(mixed_ladder(upstream.url + "/v1"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOCAL_KEY", API_KEY)
        with start_proxy(router.target, upstream.url, "--tiers", str(ladder)) as server:
            yield server


@pytest.fixture
def calls(fake):
    fake.chat_calls.clear()
    return fake


def test_a_messages_client_is_answered_by_the_local_tier_in_its_own_api(mixed, calls):
    claude = anthropic.Anthropic(api_key=API_KEY, base_url=proxy_url(mixed), max_retries=0)
    raw = claude.messages.with_raw_response.create(
        model="tierwise", max_tokens=100, system="Be brief.", messages=HI, extra_headers=CHEAPEST_FIRST
    )
    message = raw.parse()
    assert [call["model"] for call in calls.chat_calls] == [HAIKU] and calls.message_calls == []
    assert calls.chat_calls[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert raw.headers["x-tierwise-tier"] == "haiku" and message.stop_reason == "end_turn"
    assert message.content[0].text == default_answer(calls.chat_calls[0])
    assert message.usage.output_tokens > 0 and float(raw.headers["x-tierwise-cost-usd"]) > 0


def test_both_sdks_escalate_from_the_local_tier_to_claude(mixed, calls):
    calls.answer = long_on_haiku
    claude = anthropic.Anthropic(api_key=API_KEY, base_url=proxy_url(mixed), max_retries=0)
    raw = claude.messages.with_raw_response.create(
        model="tierwise", max_tokens=20, messages=HI, extra_headers=CHEAPEST_FIRST
    )
    assert raw.parse().content[0].text == "Short." and raw.headers["x-tierwise-model"] == SONNET
    gpt = openai.OpenAI(api_key=API_KEY, base_url=proxy_url(mixed) + "/v1", max_retries=0)
    chat = gpt.chat.completions.with_raw_response.create(
        model="tierwise", max_tokens=20, messages=HI, extra_headers=CHEAPEST_FIRST
    )
    assert chat.parse().choices[0].message.content == "Short." and chat.headers["x-tierwise-attempts"] == "2"
    assert [call["model"] for call in calls.chat_calls] == [HAIKU, HAIKU] and models_called(calls) == [SONNET, SONNET]


def test_both_sdks_stream_from_the_local_tier(mixed, calls):
    expected = default_answer({"model": HAIKU, "messages": HI})
    claude = anthropic.Anthropic(api_key=API_KEY, base_url=proxy_url(mixed), max_retries=0)
    with claude.messages.stream(model="tierwise", max_tokens=100, messages=HI, extra_headers=CHEAPEST_FIRST) as s:
        assert "".join(s.text_stream) == expected
    gpt = openai.OpenAI(api_key=API_KEY, base_url=proxy_url(mixed) + "/v1", max_retries=0)
    chunks = gpt.chat.completions.create(
        model="tierwise", max_tokens=100, messages=HI, stream=True, extra_headers=CHEAPEST_FIRST
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert [call["model"] for call in calls.chat_calls] == [HAIKU, HAIKU] and calls.message_calls == []


def test_a_tier_whose_key_variable_is_unset_stops_the_proxy(tmp_path, monkeypatch):
    ladder = tmp_path / "tiers.toml"
    ladder.write_text(mixed_ladder("http://127.0.0.1:9/v1"))
    monkeypatch.delenv("LOCAL_KEY", raising=False)
    done = subprocess.run(
        [*PROXY, "--tiers", str(ladder), "--listen", "127.0.0.1:0", "--router", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "environment variable LOCAL_KEY is not set" in done.stderr
