"""Server-sent events as both APIs stream them: where an event ends, its type and data, its JSON object.

The proxy reads streams as they pass (`proxy_upstream.SseScanner`) and translates them both ways
(`chat_translation`); all read events here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def split_events(pending: bytes) -> tuple[list[bytes], int]:
    """The whole events in `pending` (each its lines, without the blank line that ends it) and the offset just past
    the last one; what follows is an event not yet ended, for the caller to keep until the rest of it arrives."""
    events, done = [], 0
    while (end := _EVENT_END.search(pending, done)) is not None:
        events.append(pending[done : end.start()])
        done = end.end()
    return events, done


def event_fields(raw: bytes) -> tuple[str, bytes]:
    """One event's type (`event:`) and data (`data:`), each empty when it has none."""
    kind, data = "", b""
    for line in raw.splitlines():
        if line.startswith(b"event:"):
            kind = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            data = line[5:].strip()
    return kind, data


def event_payload(data: bytes) -> Mapping[str, Any]:
    """An event's JSON data as an object; anything else (none, not JSON, not an object) as an empty one."""
    try:
        payload = json.loads(data) if data else {}
    except (ValueError, RecursionError):
        payload = {}
    return payload if isinstance(payload, Mapping) else {}
