"""OpenAI's Chat Completions API's shapes in the stand-in: what it refuses, completions, streamed chunks, usage,
error bodies, models, and a request's prompt as cache segments. Any model name is answered (a local model's too)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from tierwise.serving.standin_cache import Segment
from tierwise.serving.standin_text import Finished, text_of, token_count

ROLES = ("system", "developer", "user", "assistant", "tool")
FINISH_REASONS = {"end": "stop", "max_tokens": "length", "stop_sequence": "stop"}
ERROR_KINDS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}
FINGERPRINT = "fp_stand_in"


def error_body(status: int, message: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body for a status: `{"error": {"message", "type", "param", "code"}}`."""
    kind, code = ERROR_KINDS.get(status, ("server_error", None))
    text = message or {
        401: "Incorrect API key provided.",
        404: "The model does not exist or you do not have access to it.",
        429: "Rate limit reached for requests",
        500: "The server had an error while processing your request.",
        503: "The engine is currently overloaded, please try again later.",
    }.get(status, kind)
    return {"error": {"message": text, "type": kind, "param": param, "code": code}}


def check_params(body: Any) -> tuple[str, str] | None:
    """What Chat Completions would reject in this body, as (param, message), or None."""
    if not isinstance(body, dict):
        return "body", "must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model", "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages", "must be a non-empty array"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"messages.[{index}].role", f"must be one of {', '.join(ROLES)}"
        content = message.get("content")
        if not isinstance(content, str | list) and not message.get("tool_calls"):
            return f"messages.[{index}].content", "must be a string or an array of content parts"
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or value < 1):
            return name, "must be a positive integer"
    limits = {"temperature": 2, "top_p": 1}
    for name, top in limits.items():
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or not 0 <= value <= top):
            return name, f"must be a number from 0 to {top}"
    if body.get("n", 1) != 1:
        return "n", "the stand-in answers one choice (n=1)"
    stop = body.get("stop")
    strings = isinstance(stop, list) and len(stop) <= 4 and all(isinstance(item, str) for item in stop)
    if stop is not None and not isinstance(stop, str) and not strings:
        return "stop", "must be a string or an array of at most 4 strings"
    return None


def max_tokens(body: dict[str, Any]) -> int | None:
    """The request's output limit (`max_completion_tokens`, else the older `max_tokens`), None for none."""
    return body.get("max_completion_tokens") or body.get("max_tokens")


def stops(body: dict[str, Any]) -> list[str]:
    """The request's stop sequences."""
    stop = body.get("stop")
    return [stop] if isinstance(stop, str) else list(stop or [])


def usage_json(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    """A completion's usage, cached prompt tokens included in `prompt_tokens` as OpenAI counts them."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def completion_json(model: str, finished: Finished, usage: dict[str, Any]) -> dict[str, Any]:
    """A `chat.completion` with one choice."""
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": finished.text, "refusal": None},
                "logprobs": None,
                "finish_reason": FINISH_REASONS[finished.reason],
            }
        ],
        "usage": usage,
    }


def chunks(completion: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A completion as Chat Completions streams it: the role, the text in a few deltas, the finish reason, and with
    `stream_options.include_usage` a last chunk with no choices and the usage (every other chunk's usage null)."""
    choice = completion["choices"][0]
    text = choice["message"]["content"]
    step = max(1, len(text) // 3)
    deltas = [
        ({"role": "assistant", "content": "", "refusal": None}, None),
        *(({"content": text[at : at + step]}, None) for at in range(0, len(text), step)),
        ({}, choice["finish_reason"]),
    ]
    head = {key: completion[key] for key in ("id", "created", "model", "system_fingerprint")}
    usage = {"usage": None} if include_usage else {}
    out = [
        {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
            **usage,
        }
        for delta, reason in deltas
    ]
    if include_usage:
        out.append({**head, "object": "chat.completion.chunk", "choices": [], "usage": completion["usage"]})
    return out


def sse_frame(chunk: dict[str, Any] | None) -> bytes:
    """One streamed chunk as Chat Completions writes it; None is the `[DONE]` that ends the stream."""
    return b"data: [DONE]\n\n" if chunk is None else f"data: {json.dumps(chunk)}\n\n".encode()


def cache_segments(body: dict[str, Any]) -> list[Segment]:
    """The prompt in the order OpenAI caches it: tools, then each message whole."""
    tools = [json.dumps(tool, sort_keys=True) for tool in body.get("tools") or []]
    segments = [Segment(f"tool:{tool}", token_count(tool)) for tool in tools]
    for message in body["messages"]:
        text = text_of(message.get("content"))
        key = json.dumps({name: message.get(name) for name in ("role", "content", "tool_calls")}, sort_keys=True)
        segments.append(Segment(key, token_count(text) if text else 0))
    return segments


def prompt_tokens(segments: list[Segment]) -> int:
    """A prompt's tokens: its segments', at least one."""
    return max(1, sum(segment.tokens for segment in segments))


def models_page(models: list[str]) -> dict[str, Any]:
    """`GET /v1/models` as OpenAI lists models."""
    return {"object": "list", "data": [model_json(model) for model in models]}


def model_json(model: str) -> dict[str, Any]:
    """One model as OpenAI describes it."""
    return {"id": model, "object": "model", "created": 1735689600, "owned_by": "tierwise-stand-in"}
