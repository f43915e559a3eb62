# ruff: noqa: F811  (the fixtures of tests/test_proxy.py, imported to run here too)
"""`tierwise proxy` for OpenAI's Chat Completions: the real `openai` SDK pointed at the proxy, the proxy pointed at
the stand-in API, a real `tierwise serve` behind it. Routed and escalated as Messages, streamed and not, headers,
refusals in OpenAI's format, pass-through of other models, and `tierwise` in both APIs' model lists."""

from __future__ import annotations

import anthropic
import openai
import pytest
from tierwise.serving.standin_text import default_answer

from tests.test_proxy import (  # noqa: F401  (fixtures)
    API_KEY,
    CHEAPEST_FIRST,
    HAIKU,
    SONNET,
    fake,
    long_on_haiku,
    models_called,
    proxy,
    proxy_url,
    router,
    upstream,
)

HI = [{"role": "user", "content": "Say hi."}]


def client(proxy) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url=proxy_url(proxy) + "/v1", max_retries=0)


def test_model_tierwise_is_routed_through_messages_and_answered_as_a_chat_completion(proxy, fake):
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="tierwise",
        messages=[{"role": "system", "content": "Be brief."}, *HI],
        max_tokens=100,
        extra_headers=CHEAPEST_FIRST,
    )
    completion = raw.parse()
    assert models_called(fake) == [HAIKU] and fake.message_calls[0]["system"] == "Be brief."
    assert raw.headers["x-tierwise-tier"] == "haiku" and raw.headers["x-tierwise-attempts"] == "1"
    assert completion.model == HAIKU and completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == default_answer({"model": HAIKU, "messages": HI})
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0


def test_an_answer_cut_off_escalates_and_says_so(proxy, fake):
    fake.answer = long_on_haiku
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="tierwise", messages=HI, max_tokens=20, extra_headers=CHEAPEST_FIRST
    )
    assert models_called(fake) == [HAIKU, SONNET] and raw.parse().choices[0].message.content == "Short."
    assert raw.headers["x-tierwise-model"] == SONNET and raw.headers["x-tierwise-attempts"] == "2"


def test_a_stream_is_routed_and_relayed_as_chunks(proxy, fake):
    with client(proxy).chat.completions.with_streaming_response.create(
        model="tierwise",
        messages=HI,
        max_tokens=100,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=CHEAPEST_FIRST,
    ) as response:
        assert response.headers["x-tierwise-tier"] == "haiku"
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == default_answer({"model": HAIKU, "messages": HI})
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_a_field_not_translated_is_refused_in_openais_format(proxy, fake):
    with pytest.raises(openai.BadRequestError) as refused:
        client(proxy).chat.completions.create(model="tierwise", messages=HI, response_format={"type": "json_object"})
    assert refused.value.body["param"] == "response_format" and "response_format" in refused.value.message
    with pytest.raises(openai.BadRequestError) as bad_header:
        client(proxy).chat.completions.create(
            model="tierwise", messages=HI, extra_headers={"x-tierwise-quality-target": "high"}
        )
    assert "x-tierwise-quality-target" in bad_header.value.message
    assert fake.message_calls == []


def test_an_upstream_error_comes_back_in_openais_format(proxy, fake):
    fake.fail("POST", "/v1/messages", 400)
    with pytest.raises(openai.BadRequestError) as refused:
        client(proxy).chat.completions.create(model="tierwise", messages=HI, extra_headers=CHEAPEST_FIRST)
    assert refused.value.body["type"] == "invalid_request_error"


def test_another_model_passes_through(proxy, fake):
    completion = client(proxy).chat.completions.create(model="local-llama", messages=HI)
    assert completion.model == "local-llama" and fake.message_calls == []
    assert fake.chat_calls[-1]["model"] == "local-llama"


def test_models_lists_tierwise_in_the_callers_format(proxy):
    openai_ids = [model.id for model in client(proxy).models.list()]
    assert openai_ids[0] == "tierwise" and HAIKU in openai_ids
    claude = anthropic.Anthropic(api_key=API_KEY, base_url=proxy_url(proxy), max_retries=0)
    anthropic_ids = [model.id for model in claude.models.list()]
    assert anthropic_ids[0] == "tierwise" and HAIKU in anthropic_ids
