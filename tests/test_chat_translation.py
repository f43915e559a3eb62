"""Chat Completions <-> Messages: what is translated, what is refused by name, and the answers and streams back."""

from __future__ import annotations

import json

import pytest
from tierwise.serving.chat_translation import (
    DEFAULT_MAX_TOKENS,
    ChatError,
    ChatStream,
    MessageStream,
    cache_marked,
    chat_completion,
    chat_error,
    chat_request,
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
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert "stream" not in chat_request({**params, "stream": False})
    with pytest.raises(ChatError) as refused:
        chat_request({**params, "tools": []})
    assert refused.value.param == "tools"
    with pytest.raises(ChatError) as image:
        chat_request({**params, "messages": [{"role": "user", "content": [{"type": "image"}]}]})
    assert image.value.param == "messages.0.content.0"


def test_a_followed_conversation_is_marked_for_the_cache_on_its_last_two_user_turns_only():
    turns = ["First question?", "An answer.", "Second question?", "Another answer.", "Third question?"]
    chat = [{"role": ("user", "assistant")[n % 2], "content": text} for n, text in enumerate(turns)]
    params = messages_request({"model": "tierwise", "messages": [{"role": "system", "content": "Be brief."}, *chat]})
    marked = cache_marked(params)
    mark = {"cache_control": {"type": "ephemeral"}}
    assert marked["messages"] == [
        *params["messages"][:2],
        {"role": "user", "content": [{"type": "text", "text": "Second question?", **mark}]},
        params["messages"][3],
        {"role": "user", "content": [{"type": "text", "text": "Third question?", **mark}]},
    ]
    assert marked["system"] == params["system"] and params["messages"][2]["content"] == "Second question?"
    assert chat_request(marked)["messages"] == chat_request(params)["messages"]  # an OpenAI tier caches by itself


def test_a_chat_completion_becomes_a_message():
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


def _chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return f"data: {json.dumps({'id': 'c1', 'model': 'llama', 'choices': choices, 'usage': usage})}\n\n".encode()


USAGE = {"prompt_tokens": 30, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 10}}
CHUNKS = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "Hel"}),
    b": keep-alive comment\n\n",
    _chunk({"content": "lo"}),
    _chunk({}, "length"),
    _chunk(usage=USAGE),
    b"data: [DONE]\n\n",
]


def _events(out: bytes) -> list[tuple[str, dict]]:
    events = []
    for frame in (frame for frame in out.split(b"\n\n") if frame):
        kind, data = frame.split(b"\n")
        assert kind.startswith(b"event: ") and data.startswith(b"data: ")
        payload = json.loads(data.removeprefix(b"data: "))
        assert payload["type"] == kind.removeprefix(b"event: ").decode()
        events.append((payload["type"], payload))
    return events


def test_a_chunk_stream_becomes_messages_events_as_its_chunks_arrive():
    stream = MessageStream()
    opened = _events(stream.feed(CHUNKS[0]))
    assert [kind for kind, _ in opened] == ["message_start", "content_block_start"]
    start = opened[0][1]["message"]
    assert start["id"] == "c1" and start["model"] == "llama" and start["content"] == []
    assert _events(stream.feed(CHUNKS[1])) == [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        )
    ]
    assert stream.feed(CHUNKS[2]) == b""
    events = _events(stream.feed(b"".join(CHUNKS[3:])))
    assert [kind for kind, _ in events] == [
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0][1]["delta"]["text"] == "lo"
    delta = events[2][1]
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert delta["usage"] == {
        "input_tokens": 20,
        "output_tokens": 3,
        "cache_read_input_tokens": 10,
        "cache_creation_input_tokens": 0,
    }


def test_a_chunk_split_anywhere_waits_for_its_end():
    whole = b"".join(CHUNKS)
    stream = MessageStream()
    pieces = [stream.feed(whole[at : at + 7]) for at in range(0, len(whole), 7)]
    assert b"".join(pieces) == MessageStream().feed(whole)
    assert sum(b"text_delta" in piece for piece in pieces) == 2


def test_translated_both_ways_a_chunk_stream_keeps_its_text_finish_reason_and_usage():
    back = ChatStream(include_usage=True)
    out = back.feed(MessageStream().feed(b"".join(CHUNKS)))
    frames = [frame.removeprefix(b"data: ") for frame in out.split(b"\n\n") if frame]
    assert frames[-1] == b"[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Hello"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["usage"]["prompt_tokens"] == 30 and chunks[-1]["usage"]["completion_tokens"] == 3
    assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 10


def test_a_chunk_stream_that_stops_before_done_gets_no_message_stop():
    out = MessageStream().feed(b"".join(CHUNKS[:-1]))
    assert [kind for kind, _ in _events(out)][-1] == "content_block_delta"


def test_an_error_chunk_becomes_an_error_event_and_ends_the_stream():
    stream = MessageStream()
    error = b'data: {"error": {"message": "engine died", "type": "server_error", "code": 500}}\n\n'
    events = _events(stream.feed(CHUNKS[1] + error))
    assert [kind for kind, _ in events][-1] == "error"
    assert events[-1][1]["error"] == {"type": "server_error", "message": "engine died"}
    assert stream.feed(b"data: [DONE]\n\n") == b""


def test_a_stream_of_nothing_but_done_is_an_empty_message():
    events = _events(MessageStream().feed(b"data: [DONE]\n\n"))
    assert [kind for kind, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[3][1]["delta"]["stop_reason"] is None and events[3][1]["usage"]["output_tokens"] == 0
