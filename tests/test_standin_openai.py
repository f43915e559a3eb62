"""The stand-in API, OpenAI side, through the real `openai` SDK: Chat Completions for any model (a local one too),
streamed and not, finish reasons, usage with cached tokens, models, errors in OpenAI's format, and the faults the
proxy's tests need (an error status, a cut stream, a held call)."""

from __future__ import annotations

import threading

import pytest
from tierwise.serving.standin import StandIn
from tierwise.serving.standin_cache import OPENAI_MIN_TOKENS, OPENAI_STEP_TOKENS
from tierwise.serving.standin_defaults import STAND_IN_KEY
from tierwise.serving.standin_text import default_answer

openai = pytest.importorskip("openai", reason="the `dev` extra installs the openai SDK")

LOCAL = "llama-3.1-8b"
HI = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def stand_in():
    with StandIn() as server:
        yield server


@pytest.fixture(scope="module")
def client(stand_in):
    return openai.OpenAI(api_key=STAND_IN_KEY, base_url=f"{stand_in.url}/v1", max_retries=0)


def test_a_completion_for_a_local_model_streamed_or_not(client, stand_in):
    completion = client.chat.completions.create(model=LOCAL, messages=HI)
    chunks = list(
        client.chat.completions.create(model=LOCAL, messages=HI, stream=True, stream_options={"include_usage": True})
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert completion.choices[0].message.content == streamed == default_answer({"model": LOCAL, "messages": HI})
    assert completion.choices[0].finish_reason == "stop" and completion.model == LOCAL
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == completion.usage
    assert all(chunk.usage is None for chunk in chunks[:-1]), "usage comes once, in the last chunk"
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens and usage.completion_tokens > 0
    assert stand_in.chat_calls[0]["model"] == LOCAL


def test_without_include_usage_a_stream_carries_no_usage(client):
    chunks = list(client.chat.completions.create(model=LOCAL, messages=HI, stream=True))
    assert all(chunk.usage is None and chunk.choices for chunk in chunks)


def test_max_tokens_ends_with_length_and_a_stop_sequence_with_stop(client):
    cut = client.chat.completions.create(model=LOCAL, messages=HI, max_completion_tokens=1)
    older = client.chat.completions.create(model=LOCAL, messages=HI, max_tokens=1)
    stopped = client.chat.completions.create(model=LOCAL, messages=HI, stop=[" "])
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("Answ", "length")
    assert older.choices[0].finish_reason == "length"
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == ("Answer", "stop")


def test_models_lists_the_ladder_and_every_model_asked_for(client):
    client.chat.completions.create(model="qwen2.5-7b-instruct", messages=HI)
    listed = [model.id for model in client.models.list()]
    assert listed[0].startswith("claude-") and "qwen2.5-7b-instruct" in listed
    assert client.models.retrieve("qwen2.5-7b-instruct").owned_by == "tierwise-stand-in"


def test_a_wrong_key_and_a_bad_request_are_answered_in_openai_format(stand_in, client):
    wrong = openai.OpenAI(api_key="sk-wrong", base_url=f"{stand_in.url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong.chat.completions.create(model=LOCAL, messages=HI)
    assert refused.value.code == "invalid_api_key" and refused.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=LOCAL, messages=HI, temperature=3)
    assert bad.value.param == "temperature" and "from 0 to 2" in bad.value.message
    with pytest.raises(openai.BadRequestError) as bad_stop:
        client.chat.completions.create(model=LOCAL, messages=HI, stop=[" ", 7])
    assert bad_stop.value.param == "stop" and bad_stop.value.body["type"] == "invalid_request_error"


def conversation(system_chars: int, turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "Policy. " * (system_chars // 8)}]
    for turn in range(turns):
        messages += [{"role": "user", "content": f"Question {turn}? " * 20}, {"role": "assistant", "content": "Yes."}]
    return [*messages, {"role": "user", "content": "And now?"}]


def test_prompts_of_1024_tokens_or_more_are_cached_per_model_in_steps_of_128(client):
    short = conversation(system_chars=2000, turns=1)
    long = conversation(system_chars=6000, turns=1)
    assert client.chat.completions.create(model=LOCAL, messages=short).usage.prompt_tokens < OPENAI_MIN_TOKENS
    assert client.chat.completions.create(model=LOCAL, messages=short).usage.prompt_tokens_details.cached_tokens == 0

    first = client.chat.completions.create(model=LOCAL, messages=long).usage
    later = [*long[:-1], {"role": "user", "content": "Something else entirely?"}]
    second = client.chat.completions.create(model=LOCAL, messages=later).usage
    elsewhere = client.chat.completions.create(model="mistral-7b", messages=later).usage
    assert first.prompt_tokens_details.cached_tokens == 0
    cached = second.prompt_tokens_details.cached_tokens
    assert OPENAI_MIN_TOKENS <= cached <= second.prompt_tokens and cached % OPENAI_STEP_TOKENS == 0
    assert second.prompt_tokens - cached < OPENAI_STEP_TOKENS + len("Something else entirely?")
    assert elsewhere.prompt_tokens_details.cached_tokens == 0, "another model has its own cache"


def test_a_fault_on_chat_completions_is_sent_in_openai_format_for_its_model_only(stand_in, client):
    stand_in.fail("POST", "/v1/chat/completions", 429, model="mistral-7b")
    assert client.chat.completions.create(model=LOCAL, messages=HI).choices
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="mistral-7b", messages=HI)
    assert limited.value.code == "rate_limit_exceeded"


def test_a_cut_stream_breaks_the_sdk_read_and_a_held_call_waits_for_release(stand_in, client):
    stand_in.cut_streams_after = 2
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model=LOCAL, messages=HI, stream=True))

    stand_in.hold_messages.clear()
    answers = []
    caller = threading.Thread(target=lambda: answers.append(client.chat.completions.create(model=LOCAL, messages=HI)))
    caller.start()
    assert stand_in.held.acquire(timeout=30)
    assert not answers
    stand_in.hold_messages.set()
    caller.join(30)
    assert answers[0].choices[0].finish_reason == "stop"
