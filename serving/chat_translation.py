"""OpenAI's Chat Completions API in terms of Anthropic's Messages API, and back: pure functions, no I/O.

A Chat Completions request becomes a Messages request (system and developer messages -> `system`, user and
assistant turns, max tokens, stop sequences, temperature, top-p, streaming, `user` -> `metadata.user_id`); a
Message becomes a `chat.completion`, a Messages event stream `chat.completion.chunk` events ending with
`data: [DONE]`, an Anthropic error OpenAI's error body. The other way, for a tier that speaks Chat Completions: a
Messages request becomes a Chat Completions request, a `chat.completion` a Message, a `chat.completion.chunk`
stream a Messages event stream (as it arrives), an OpenAI error the Messages API's. A request field this does not
translate is refused with a `ChatError` naming it, never dropped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from tierwise.serving.sse import event_fields, event_payload, split_events

DEFAULT_MAX_TOKENS = 4096  # Messages requires max_tokens; Chat Completions lets a caller leave it out
SYSTEM_ROLES = ("system", "developer")
TURN_ROLES = ("user", "assistant")
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "refusal": "content_filter"}
# Fields whose value means "nothing to translate": accepted at that value only.
_NEUTRAL = {"n": 1, "logprobs": False, "parallel_tool_calls": None}
_TRANSLATED = frozenset(
    {"model", "messages", "max_tokens", "max_completion_tokens", "stop", "temperature", "top_p", "stream"}
    | {"stream_options", "user"}
)
DONE = b"data: [DONE]\n\n"
ANTHROPIC_VERSION = "2023-06-01"


class ChatError(Exception):
    """A Chat Completions request this translation refuses: a 400 naming `param`."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param = param


def error_body(kind: str, message: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def chat_error(payload: object, status: int) -> dict[str, Any]:
    """An upstream Messages error body (or anything else a failed call answered) as OpenAI's error body."""
    return error_body(*_error_fields(payload, status))


def _error_fields(payload: object, status: int) -> tuple[str, str]:
    """The type and message of an error body either API answers (`{"error": {"type", "message"}}`), each in words
    of the status when the body gives none."""
    error = payload.get("error") if isinstance(payload, Mapping) else None
    error = error if isinstance(error, Mapping) else {}
    kind, message = error.get("type"), error.get("message")
    return (
        kind if isinstance(kind, str) and kind else f"http_{status}",
        message if isinstance(message, str) else f"upstream answered {status}",
    )


def messages_request(chat: Mapping[str, Any]) -> dict[str, Any]:
    """The Messages request that asks what `chat` (a Chat Completions request) asks; a field not translated is a
    ChatError naming it."""
    for name, value in chat.items():
        if name not in _TRANSLATED and not (name in _NEUTRAL and value == _NEUTRAL[name]):
            raise ChatError(name, "not supported by the tierwise proxy's Chat Completions translation")
    messages = chat.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ChatError("messages", "must be a non-empty array")
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ChatError(f"messages[{index}]", "must be an object with role and content")
        for name in message:
            if name not in ("role", "content", "name"):
                raise ChatError(f"messages[{index}].{name}", "not supported by the translation")
        role = message.get("role")
        field = f"messages[{index}].content"
        text = _joined_text(message.get("content"), field, f"{field}[{{}}]".format)
        if role in SYSTEM_ROLES:
            system.append(text)
        elif role in TURN_ROLES:
            turns.append({"role": role, "content": text})
        else:
            raise ChatError(f"messages[{index}].role", f"must be one of {', '.join(SYSTEM_ROLES + TURN_ROLES)}")
    params: dict[str, Any] = {"model": chat.get("model"), "messages": turns}
    if system:
        params["system"] = "\n\n".join(system)
    limit = chat.get("max_completion_tokens", chat.get("max_tokens"))
    params["max_tokens"] = DEFAULT_MAX_TOKENS if limit is None else limit
    stop = chat.get("stop")
    if stop is not None:
        params["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    for name in ("temperature", "top_p", "stream"):
        if chat.get(name) is not None:
            params[name] = chat[name]
    if chat.get("user") is not None:
        params["metadata"] = {"user_id": chat["user"]}
    return params


CACHE_MARK = {"type": "ephemeral"}


def cache_marked(params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` (translated from Chat Completions) with Anthropic's cache mark on its last two user turns, so a
    Claude tier caches a conversation as an OpenAI model does without being asked: each turn reads the prefix the
    turn before wrote (the earlier mark) and writes its own (the last). A mark is paid at the cache-write price."""
    messages = list(params["messages"])
    asked = [index for index, message in enumerate(messages) if message["role"] == "user" and message["content"]]
    for index in asked[-2:]:
        text = messages[index]["content"]
        messages[index] = {"role": "user", "content": [{"type": "text", "text": text, "cache_control": CACHE_MARK}]}
    return {**params, "messages": messages}


def _joined_text(content: object, field: str, item_field: Callable[[int], str]) -> str:
    """The text of a content field either API sends: a string, or a list of text items (Chat's parts, Messages'
    blocks) joined; anything else is a ChatError naming the field or item (`item_field` spells its path)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for index, item in enumerate(content):
            if not isinstance(item, Mapping) or item.get("type") != "text" or not isinstance(item.get("text"), str):
                raise ChatError(item_field(index), "only text is translated")
            parts.append(item["text"])
        return "".join(parts)
    raise ChatError(field, "must be a string or a list of text items")


def chat_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Messages usage as Chat Completions usage: prompt tokens count cache reads and writes, cached ones are reads."""
    read = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + read + (usage.get("cache_creation_input_tokens") or 0)
    completion = usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
    }


def finish_reason(stop_reason: object) -> str | None:
    """A Messages stop reason as a Chat Completions finish reason."""
    return None if stop_reason is None else FINISH_REASONS.get(str(stop_reason), "stop")


def chat_completion(message: Mapping[str, Any], created: int | None = None) -> dict[str, Any]:
    """A Message as a `chat.completion`."""
    text = "".join(block.get("text", "") for block in message["content"] if block.get("type") == "text")
    return {
        "id": f"chatcmpl-{message.get('id', '')}",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": message.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": finish_reason(message.get("stop_reason")),
                "logprobs": None,
            }
        ],
        "usage": chat_usage(message["usage"]),
    }


class ChatStream:
    """Messages SSE events, whole ones at a time, as `chat.completion.chunk` SSE events; the Messages stream's end
    (`message_stop`) becomes `data: [DONE]`, its `error` event OpenAI's streamed error."""

    def __init__(self, include_usage: bool, created: int | None = None):
        self.include_usage = include_usage
        self.created = int(time.time()) if created is None else created
        self.id = ""
        self.model = ""
        self.usage: dict[str, Any] = {}

    def feed(self, events: bytes) -> bytes:
        """The chunks that whole Messages events `events` translate to."""
        out = bytearray()
        for raw in split_events(events)[0]:
            if raw.strip():
                out += self._event(raw)
        return bytes(out)

    def _event(self, raw: bytes) -> bytes:
        kind, data = event_fields(raw)
        payload = event_payload(data)
        if kind == "message_start":
            message = payload.get("message") or {}
            self.id, self.model = f"chatcmpl-{message.get('id', '')}", message.get("model", "")
            self.usage.update(message.get("usage") or {})
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            return self._chunk({"content": delta["text"]}) if delta.get("type") == "text_delta" else b""
        if kind == "message_delta":
            self.usage.update(payload.get("usage") or {})
            return self._chunk({}, finish_reason((payload.get("delta") or {}).get("stop_reason")))
        if kind == "message_stop":
            usage = self._frame({**self._base(), "choices": [], "usage": chat_usage(self.usage)})
            return (usage if self.include_usage else b"") + DONE
        if kind == "error":
            return self._frame(chat_error(payload, 500))
        return b""

    def _base(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return self._frame({**self._base(), "choices": [choice]})

    @staticmethod
    def _frame(chunk: Mapping[str, Any]) -> bytes:
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def include_usage(chat: Mapping[str, Any]) -> bool:
    """Whether a streamed request asked for the usage chunk (`stream_options.include_usage`)."""
    options = chat.get("stream_options")
    if options is not None and not isinstance(options, Mapping):
        raise ChatError("stream_options", "must be an object")
    return bool(options and options.get("include_usage"))


def models_entry(model: str, anthropic_format: bool) -> dict[str, Any]:
    """A model as `GET /v1/models` lists it, in the asking API's format."""
    if anthropic_format:
        return {"type": "model", "id": model, "display_name": model, "created_at": "1970-01-01T00:00:00Z"}
    return {"id": model, "object": "model", "created": 0, "owned_by": "tierwise"}


def messages_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """An OpenAI caller's headers for the Messages API: its bearer key as `x-api-key`, with an `anthropic-version`."""
    out = [(name, value) for name, value in headers if name.lower() != "authorization"]
    for name, value in headers:
        if name.lower() == "authorization" and value.lower().startswith("bearer "):
            out.append(("x-api-key", value[7:].strip()))
    if not any(name.lower() == "anthropic-version" for name, _ in out):
        out.append(("anthropic-version", ANTHROPIC_VERSION))
    return out


# --- a Messages request to a tier that speaks Chat Completions, and its answer back -------------------------------

_CHAT_FINISH = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}
_MESSAGES_TRANSLATED = frozenset(
    {"model", "messages", "system", "max_tokens", "stop_sequences", "temperature", "top_p", "stream", "metadata"}
)


def chat_request(params: Mapping[str, Any]) -> dict[str, Any]:
    """The Chat Completions request that asks what `params` (a Messages request) asks, a streamed one with its usage
    chunk (`stream_options.include_usage`) so the stream can be priced; a field not translated is a ChatError naming
    it."""
    for name in params:
        if name not in _MESSAGES_TRANSLATED:
            raise ChatError(name, "not translated for a tier that speaks Chat Completions")
    metadata = params.get("metadata") or {}
    if not isinstance(metadata, Mapping) or set(metadata) - {"user_id"}:
        raise ChatError("metadata", "only metadata.user_id is translated")
    messages = []
    if params.get("system"):
        messages.append({"role": "system", "content": _joined_text(params["system"], "system", "system.{}".format)})
    for index, message in enumerate(params["messages"]):
        field = f"messages.{index}.content"
        text = _joined_text(message["content"], field, f"{field}.{{}}".format)
        messages.append({"role": message["role"], "content": text})
    chat: dict[str, Any] = {"model": params["model"], "messages": messages, "max_tokens": params.get("max_tokens")}
    if params.get("stop_sequences"):
        chat["stop"] = params["stop_sequences"]
    for name in ("temperature", "top_p"):
        if params.get(name) is not None:
            chat[name] = params[name]
    if metadata.get("user_id") is not None:
        chat["user"] = metadata["user_id"]
    if params.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return {name: value for name, value in chat.items() if value is not None}


def message_from_chat(completion: object) -> dict[str, Any] | None:
    """A `chat.completion` as a Message (None when it is not one): cached prompt tokens are cache reads."""
    if not isinstance(completion, Mapping) or not isinstance(completion.get("choices"), list):
        return None
    choices = completion["choices"]
    choice = choices[0] if choices and isinstance(choices[0], Mapping) else {}
    usage = completion.get("usage") if isinstance(completion.get("usage"), Mapping) else {}
    text = (choice.get("message") or {}).get("content") or ""
    content = [{"type": "text", "text": text}]
    return _message(completion, content, _stop_reason(choice.get("finish_reason")), _messages_usage(usage))


def _message(chat: Mapping[str, Any], content: list[Any], stop_reason: str | None, usage: Any) -> dict[str, Any]:
    """A Message with the id and model of `chat` (a completion or its first chunk)."""
    return {
        "id": str(chat.get("id", "")),
        "type": "message",
        "role": "assistant",
        "model": chat.get("model", ""),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def _stop_reason(finish: object) -> str | None:
    """A Chat Completions finish reason as a Messages stop reason."""
    return _CHAT_FINISH.get(str(finish), "end_turn") if finish else None


def _messages_usage(usage: Mapping[str, Any]) -> dict[str, int]:
    """Chat Completions usage as Messages usage: cached prompt tokens are cache reads, the rest of the prompt input."""
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {
        "input_tokens": (usage.get("prompt_tokens") or 0) - cached,
        "output_tokens": usage.get("completion_tokens") or 0,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def messages_error(payload: object, status: int) -> dict[str, Any]:
    """OpenAI's error body (or anything else a failed call answered) as the Messages API's."""
    kind, message = _error_fields(payload, status)
    return {"type": "error", "error": {"type": kind, "message": message}}


class MessageStream:
    """`chat.completion.chunk` SSE events, in pieces as they arrive, as the Messages API's SSE events, the inverse of
    `ChatStream`: the first chunk opens the message and its text block, each text delta is a `text_delta`, and
    `data: [DONE]` closes them with the finish reason and the usage (of the last chunk, which
    `stream_options.include_usage` asks for); an error chunk is an `error` event. A stream that stops before
    `[DONE]` gets no `message_stop`, so whoever reads the Messages stream sees it cut short."""

    def __init__(self) -> None:
        self._pending = b""
        self._started = False
        self._ended = False
        self._stop_reason: str | None = None
        self._usage = _messages_usage({})

    def feed(self, data: bytes) -> bytes:
        """The Messages events that the chunk events `data` completes translate to; an incomplete one waits."""
        if self._ended:
            return b""
        self._pending += data
        events, done = split_events(self._pending)
        out = bytearray()
        for raw in events:
            out += self._event(raw)
            if self._ended:
                break
        self._pending = b"" if self._ended else self._pending[done:]
        return bytes(out)

    def _event(self, raw: bytes) -> bytes:
        _, data = event_fields(raw)
        if data == b"[DONE]":
            self._ended = True
            delta = {"stop_reason": self._stop_reason, "stop_sequence": None}
            return self._start({}) + _frames(
                {"type": "content_block_stop", "index": 0},
                {"type": "message_delta", "delta": delta, "usage": self._usage},
                {"type": "message_stop"},
            )
        chunk = event_payload(data)
        if chunk.get("error") is not None:
            self._ended = True
            return _frames(messages_error(chunk, 500))
        if not chunk:
            return b""
        out = self._start(chunk)
        if isinstance(chunk.get("usage"), Mapping):
            self._usage = _messages_usage(chunk["usage"])
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], Mapping) else {}
        text = (choice.get("delta") or {}).get("content")
        if isinstance(text, str) and text:
            out += _frames({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})
        self._stop_reason = _stop_reason(choice.get("finish_reason")) or self._stop_reason
        return out

    def _start(self, chunk: Mapping[str, Any]) -> bytes:
        """`message_start` and the text block's start, once, named after the first chunk."""
        if self._started:
            return b""
        self._started = True
        return _frames(
            {"type": "message_start", "message": _message(chunk, [], None, _messages_usage({}))},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )


def _frames(*events: Mapping[str, Any]) -> bytes:
    """Messages events as the API sends them: `event:` their type, `data:` their JSON."""
    return b"".join(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode() for event in events)
