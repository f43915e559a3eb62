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
from tierwise.serving.process import ServerProcess
from tierwise.serving.standin_text import default_answer
from tierwise.training.data.logs import read_attempts
from tierwise.training.fit.train import TrainOptions, train_bundle

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
LONG = [{"role": "user", "content": "Summarise: " + "lorem ipsum " * 400}]  # over 1,024 tokens: cached when repeated


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


def test_a_messages_client_streams_the_local_tiers_answer_as_it_comes(mixed, calls):
    claude = anthropic.Anthropic(api_key=API_KEY, base_url=proxy_url(mixed), max_retries=0)
    whole = claude.messages.create(model="tierwise", max_tokens=100, messages=LONG, extra_headers=CHEAPEST_FIRST)
    with claude.messages.stream(model="tierwise", max_tokens=100, messages=LONG, extra_headers=CHEAPEST_FIRST) as s:
        deltas = [event.delta.text for event in s if event.type == "content_block_delta"]
        final = s.get_final_message()
        tier = s.response.headers["x-tierwise-tier"]
    assert calls.chat_calls[-1]["stream"] is True and calls.chat_calls[-1]["stream_options"] == {"include_usage": True}
    assert tier == "haiku" and len(deltas) > 1 and "".join(deltas) == whole.content[0].text
    assert final.stop_reason == whole.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens > 0
    assert final.usage.cache_read_input_tokens > 0, "the repeated prompt is read from the local tier's cache"
    read, total = final.usage.cache_read_input_tokens, final.usage.input_tokens + final.usage.cache_read_input_tokens
    assert total == whole.usage.input_tokens + whole.usage.cache_read_input_tokens and read % 128 == 0


def test_a_chat_client_streams_the_local_tiers_answer_as_it_comes(mixed, calls):
    gpt = openai.OpenAI(api_key=API_KEY, base_url=proxy_url(mixed) + "/v1", max_retries=0)
    whole = gpt.chat.completions.create(model="tierwise", max_tokens=100, messages=LONG, extra_headers=CHEAPEST_FIRST)
    raw = gpt.chat.completions.with_raw_response.create(
        model="tierwise",
        max_tokens=100,
        messages=LONG,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=CHEAPEST_FIRST,
    )
    chunks = list(raw.parse())
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert raw.headers["x-tierwise-tier"] == "haiku" and [call["model"] for call in calls.chat_calls] == [HAIKU, HAIKU]
    assert len(deltas) > 1 and "".join(deltas) == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    assert usage.prompt_tokens == whole.usage.prompt_tokens and usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens > 0


def test_a_local_tier_error_before_its_stream_starts_escalates_both_clients(mixed, calls):
    calls.fail("POST", "/v1/chat/completions", 503, times=2)
    claude = anthropic.Anthropic(api_key=API_KEY, base_url=proxy_url(mixed), max_retries=0)
    with claude.messages.stream(model="tierwise", max_tokens=100, messages=HI, extra_headers=CHEAPEST_FIRST) as s:
        text = "".join(s.text_stream)
        headers = s.response.headers
    assert text == default_answer({"model": SONNET, "messages": HI})
    assert headers["x-tierwise-attempts"] == "2" and headers["x-tierwise-model"] == SONNET
    gpt = openai.OpenAI(api_key=API_KEY, base_url=proxy_url(mixed) + "/v1", max_retries=0)
    raw = gpt.chat.completions.with_raw_response.create(
        model="tierwise", max_tokens=100, messages=HI, stream=True, extra_headers=CHEAPEST_FIRST
    )
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices) == text
    assert raw.headers["x-tierwise-attempts"] == "2" and models_called(calls) == [SONNET, SONNET]
    assert ("FAULT", "/v1/chat/completions", 503) in calls.log and calls.faults == []


def test_a_local_tiers_stream_cut_midway_ends_with_an_error_for_both_clients(mixed, calls):
    calls.cut_streams_after = 2
    claude = anthropic.Anthropic(api_key=API_KEY, base_url=proxy_url(mixed), max_retries=0)
    with (
        pytest.raises(anthropic.APIStatusError) as error,
        claude.messages.stream(model="tierwise", max_tokens=100, messages=HI, extra_headers=CHEAPEST_FIRST) as s,
    ):
        s.until_done()
    assert "upstream stream ended before its end" in str(error.value)
    calls.cut_streams_after = 2
    gpt = openai.OpenAI(api_key=API_KEY, base_url=proxy_url(mixed) + "/v1", max_retries=0)
    chunks = gpt.chat.completions.create(
        model="tierwise", max_tokens=100, messages=HI, stream=True, extra_headers=CHEAPEST_FIRST
    )
    with pytest.raises(openai.APIError, match="upstream stream ended before its end"):
        list(chunks)
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


@pytest.fixture(scope="module")
def mixed_bundle(sample_logs, upstream, tmp_path_factory):
    """A bundle trained on the mixed ladder: it carries its tiers' providers, URLs and key variables."""
    work = tmp_path_factory.mktemp("mixed-bundle")
    ladder = work / "tiers.toml"
    ladder.write_text(mixed_ladder(upstream.url + "/v1"))
    train_bundle(read_attempts([sample_logs]), work / "bundle", TierLadder.load(ladder), TrainOptions(encoder="static"))
    return work / "bundle"


def in_process(bundle, upstream) -> ServerProcess:
    args = ["--model", str(bundle), "--no-metrics", "--listen", "127.0.0.1:0", "--upstream", upstream.url]
    return ServerProcess(args, program=PROXY)


def test_without_tiers_the_proxy_calls_each_tier_where_the_served_models_ladder_says(mixed_bundle, upstream, calls):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOCAL_KEY", API_KEY)
        with in_process(mixed_bundle, upstream) as proxy:
            claude = anthropic.Anthropic(api_key=API_KEY, base_url=proxy_url(proxy), max_retries=0)
            raw = claude.messages.with_raw_response.create(
                model="tierwise", max_tokens=100, messages=HI, extra_headers=CHEAPEST_FIRST
            )
    assert [call["model"] for call in calls.chat_calls] == [HAIKU] and calls.message_calls == []
    assert raw.headers["x-tierwise-tier"] == "haiku"


def test_a_key_variable_the_models_ladder_names_and_nobody_set_fails_that_tier_and_says_so(
    mixed_bundle, upstream, calls
):
    with pytest.MonkeyPatch.context() as env:
        env.delenv("LOCAL_KEY", raising=False)
        with in_process(mixed_bundle, upstream) as proxy:
            proxy.wait_for_log(r"tier 'haiku': environment variable LOCAL_KEY is not set")
            claude = anthropic.Anthropic(api_key=API_KEY, base_url=proxy_url(proxy), max_retries=0)
            raw = claude.messages.with_raw_response.create(
                model="tierwise", max_tokens=100, messages=HI, extra_headers=CHEAPEST_FIRST
            )
    assert calls.chat_calls == [] and [call["model"] for call in calls.message_calls] == [SONNET]
    assert (raw.headers["x-tierwise-tier"], raw.headers["x-tierwise-attempts"]) == ("sonnet", "2")
