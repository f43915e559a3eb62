"""The Anthropic Messages API's shapes in the stand-in: what it refuses, messages, usage, streamed events, error
envelopes, models, and a request's prompt as cache segments."""

from __future__ import annotations

import json
import secrets
from typing import Any

from tierwise.serving.standin_cache import Segment
from tierwise.serving.standin_text import Finished, text_of, token_count

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
STOP_REASONS = {"end": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence"}
MODEL_PREFIX = "claude-"


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """The API's error envelope for a status."""
    kind = ERROR_TYPES.get(status, "api_error")
    text = message or {
        429: "Number of request tokens has exceeded your per-minute rate limit",
        529: "Overloaded",
        500: "Internal server error",
    }.get(status, kind)
    return {"type": "error", "error": {"type": kind, "message": text}, "request_id": f"req_01{secrets.token_hex(12)}"}


def check_params(params: Any) -> str | None:
    """What the Messages API would reject in these params (`field: why`), or None."""
    if not isinstance(params, dict):
        return "params: must be an object"
    if not isinstance(params.get("model"), str) or not params["model"]:
        return "model: field required"
    if not isinstance(params.get("max_tokens"), int) or params["max_tokens"] < 1:
        return "max_tokens: field required (a positive integer)"
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: field required (a non-empty list)"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{index}.role: must be 'user' or 'assistant'"
        if not text_of(message.get("content")) and not _has_blocks(message.get("content")):
            return f"messages.{index}.content: must be non-empty"
    stops = params.get("stop_sequences", [])
    if not isinstance(stops, list) or not all(isinstance(stop, str) and stop for stop in stops):
        return "stop_sequences: must be a list of non-empty strings"
    for name in ("temperature", "top_p"):
        value = params.get(name)
        if value is not None and (not isinstance(value, int | float) or not 0 <= value <= 1):
            return f"{name}: must be a number from 0 to 1"
    return None


def _has_blocks(content: Any) -> bool:
    return isinstance(content, list) and any(isinstance(block, dict) and block.get("type") for block in content)


def message_json(model: str, content: list[dict[str, Any]], finished: Finished | None) -> dict[str, Any]:
    """A Message; `finished` None for a tool call."""
    return {
        "id": f"msg_01{secrets.token_hex(12)}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS[finished.reason] if finished else "tool_use",
        "stop_sequence": finished.stop if finished else None,
    }


def usage_json(input_tokens: int, output_tokens: int, service_tier: str = "batch") -> dict[str, Any]:
    """A Message's usage, with no cache use."""
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": service_tier,
    }


def cache_segments(params: dict[str, Any]) -> list[Segment]:
    """The prompt in the order the API caches it (tools, system, messages), breakpoints at `cache_control` blocks."""
    segments = [_segment("tool", tool) for tool in params.get("tools") or []]
    system = params.get("system")
    if isinstance(system, str) and system:
        segments.append(Segment(f"system:{system}", token_count(system)))
    elif isinstance(system, list):
        segments.extend(_segment("system", block) for block in system if isinstance(block, dict))
    for message in params["messages"]:
        content = message.get("content")
        role = message.get("role")
        if isinstance(content, str):
            segments.append(Segment(f"{role}:{content}", token_count(content)))
        else:
            segments.extend(_segment(str(role), block) for block in content if isinstance(block, dict))
    return segments


def _segment(where: str, block: dict[str, Any]) -> Segment:
    plain = {name: value for name, value in block.items() if name != "cache_control"}
    text = plain.get("text") if isinstance(plain.get("text"), str) else json.dumps(plain, sort_keys=True)
    return Segment(f"{where}:{json.dumps(plain, sort_keys=True)}", token_count(text), "cache_control" in block)


def sse_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message as the Messages API streams it: start, one text block in a few deltas, delta with usage, stop."""
    usage = message["usage"]
    text = message["content"][0]["text"]
    step = max(1, len(text) // 3)
    return [
        {
            "type": "message_start",
            "message": {
                **message,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {**usage, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text[at : at + step]}}
            for at in range(0, len(text), step)
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
        {"type": "message_stop"},
    ]


def sse_frame(event: dict[str, Any]) -> bytes:
    """One server-sent event as the Messages API writes it."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def model_json(model: str) -> dict[str, Any]:
    """A model as `GET /v1/models` lists it."""
    return {"type": "model", "id": model, "display_name": model, "created_at": "2025-01-01T00:00:00Z"}


def models_page(models: list[str]) -> dict[str, Any]:
    """`GET /v1/models`: every model on one page."""
    return {
        "data": [model_json(model) for model in models],
        "has_more": False,
        "first_id": models[0] if models else None,
        "last_id": models[-1] if models else None,
    }
