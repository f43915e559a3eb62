"""Chat Completions <-> Messages: what is translated, what is refused by name, and the answers and streams back."""

from __future__ import annotations

import json

import pytest
from tierwise.serving.chat_translation import (
    DEFAULT_MAX_TOKENS,
    ChatError,
    ChatStream,
    chat_completion,
    chat_error,
    chat_request,
    message_events,
    message_from_chat,
    messages_headers,
    messages_request,
)


def test_a_request_becomes_the_messages_request_that_asks_the_same():
    chat = {
        "model": "tierwise",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "No jokes."}]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": [{"type": "text", "text": "Again"}]},
        ],
        "max_completion_tokens": 50,
        "stop": "END",
        "temperature": 0.3,
        "top_p": 0.9,
        "stream": True,
        "user": "u-1",
        "n": 1,
    }
    assert messages_request(chat) == {
        "model": "tierwise",
        "system": "Be brief.\n\nNo jokes.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Again"},
        ],
        "max_tokens": 50,
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "top_p": 0.9,
        "stream": True,
        "metadata": {"user_id": "u-1"},
    }


def test_max_tokens_is_taken_or_defaulted():
    hi = [{"role": "user", "content": "Hi"}]
    assert messages_request({"model": "m", "messages": hi, "max_tokens": 7})["max_tokens"] == 7
    assert messages_request({"model": "m", "messages": hi})["max_tokens"] == DEFAULT_MAX_TOKENS


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": []}, "tools"),
        ({"functions": []}, "functions"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
    ],
)
def test_a_field_not_translated_is_refused_by_name(extra, param):
    chat = {"model": "tierwise", "messages": [{"role": "user", "content": "Hi"}], **extra}
    with pytest.raises(ChatError) as refused:
        messages_request(chat)
    assert refused.value.param == param and str(refused.value).startswith(param)


def test_a_message_becomes_a_chat_completion_with_its_usage_and_finish_reason():
    message = {
        "id": "msg_1",
        "type": "message",
        "model": "claude-x",
        "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
        "stop_reason": "max_tokens",
        "usage": {
            "input_tokens": 10,
            "output_tokens": 4,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
        },
    }
    completion = chat_completion(message, created=5)
    assert completion["object"] == "chat.completion" and completion["model"] == "claude-x"
    assert completion["choices"][0]["message"]["content"] == "Hi there"
    assert completion["choices"][0]["finish_reason"] == "length"
    assert completion["usage"] == {
        "prompt_tokens": 130,
        "completion_tokens": 4,
        "total_tokens": 134,
        "prompt_tokens_details": {"cached_tokens": 100},
    }
    ended = chat_completion({**message, "stop_reason": "stop_sequence"})
    assert ended["choices"][0]["finish_reason"] == "stop"


def test_an_error_becomes_openais_error_body():
    anthropic = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    assert chat_error(anthropic, 529)["error"] == {
        "message": "busy",
        "type": "overloaded_error",
        "param": None,
        "code": None,
    }
    assert chat_error(None, 502)["error"]["type"] == "http_502"


def _sse(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def test_a_messages_stream_becomes_chunks_ending_with_done():
    events = b"".join(
        [
            _sse("message_start", {"message": {"id": "m1", "model": "claude-x", "usage": {"input_tokens": 3}}}),
            _sse("content_block_start", {"index": 0}),
            _sse("ping", {}),
            _sse("content_block_delta", {"delta": {"type": "text_delta", "text": "Hel"}}),
            _sse("content_block_delta", {"delta": {"type": "text_delta", "text": "lo"}}),
            _sse("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
        ]
    )
    stream = ChatStream(include_usage=True)
    out = stream.feed(events) + stream.feed(_sse("message_stop", {}))
    frames = [frame.removeprefix(b"data: ") for frame in out.split(b"\n\n") if frame]
    assert frames[-1] == b"[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "claude-x" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 3
    assert chunks[-1]["usage"]["completion_tokens"] == 2


def test_a_stream_error_becomes_a_streamed_error_without_done():
    out = ChatStream(include_usage=False).feed(_sse("error", {"error": {"type": "api_error", "message": "cut"}}))
    assert out.startswith(b"data: ") and b"[DONE]" not in out
    assert json.loads(out.removeprefix(b"data: "))["error"]["message"] == "cut"


def test_a_bearer_key_travels_as_x_api_key_with_a_version():
    headers = messages_headers([("authorization", "Bearer sk-1"), ("accept", "application/json")])
    assert sorted(headers) == [
        ("accept", "application/json"),
        ("anthropic-version", "2023-06-01"),
        ("x-api-key", "sk-1"),
    ]


def test_a_messages_request_becomes_the_chat_request_for_an_openai_tier():
    params = {
        "model": "llama",
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 9,
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "stream": True,
        "metadata": {"user_id": "u-1"},
    }
    assert chat_request(params) == {
        "model": "llama",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 9,
        "stop": ["END"],
        "temperature": 0.2,
        "user": "u-1",
    }
    with pytest.raises(ChatError) as refused:
        chat_request({**params, "tools": []})
    assert refused.value.param == "tools"
    with pytest.raises(ChatError) as image:
        chat_request({**params, "messages": [{"role": "user", "content": [{"type": "image"}]}]})
    assert image.value.param == "messages.0.content.0"


def test_a_chat_completion_becomes_a_message_and_its_event_stream():
    completion = {
        "id": "c1",
        "model": "llama",
        "choices": [{"message": {"content": "Hi"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 10}},
    }
    message = message_from_chat(completion)
    assert message["content"] == [{"type": "text", "text": "Hi"}] and message["stop_reason"] == "max_tokens"
    assert message["usage"] == {
        "input_tokens": 20,
        "output_tokens": 2,
        "cache_read_input_tokens": 10,
        "cache_creation_input_tokens": 0,
    }
    assert message_from_chat({"error": {}}) is None
    stream = ChatStream(include_usage=True)
    frames = [f for f in stream.feed(message_events(message)).split(b"\n\n") if f]
    assert frames[-1] == b"data: [DONE]"
    last = json.loads(frames[-2].removeprefix(b"data: "))
    assert last["usage"]["prompt_tokens"] == 30 and last["usage"]["prompt_tokens_details"]["cached_tokens"] == 10
