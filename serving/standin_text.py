"""What the stand-in API answers, whichever API asks: a deterministic answer, a judge's verdict, token counts, and
an answer cut where the request says it stops (`max_tokens`, stop sequences).

Answers are deterministic per (model, prompt), so repeated runs agree and quoted outputs can be regenerated.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Answer = Callable[[dict[str, Any]], str]
Judge = Callable[[dict[str, Any]], dict[str, Any]]


def token_count(text: str) -> int:
    """About four characters a token, as the APIs' own rule of thumb; at least one."""
    return max(1, len(text) // 4)


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the `text` of its parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text") or "") for part in content if isinstance(part, dict))
    return ""


def default_answer(params: dict[str, Any]) -> str:
    """A deterministic answer per (model, prompt), so repeated runs agree."""
    prompt = "".join(text_of(m.get("content")) for m in params.get("messages", []))
    digest = hashlib.sha256(f"{params.get('model')}|{prompt}".encode()).hexdigest()[:8]
    return f"Answer {digest}."


def default_judge(params: dict[str, Any]) -> dict[str, Any]:
    """Pass a candidate answer when it contains the reference answer's text."""
    text = text_of(params["messages"][-1]["content"])
    reference = re.search(r"<reference_answer>\s*(.*?)\s*</reference_answer>", text, re.S)
    candidate = re.search(r"<candidate_answer>\s*(.*?)\s*</candidate_answer>", text, re.S)
    passed = bool(reference and candidate and reference.group(1).strip() in candidate.group(1))
    return {"passed": passed, "reason": "matches the reference" if passed else "differs from the reference"}


@dataclass(frozen=True)
class Finished:
    """An answer as the API returns it, and why it ended: `end`, `max_tokens` or `stop_sequence` (then `stop`)."""

    text: str
    reason: str
    stop: str | None = None


def finish(text: str, max_tokens: int | None, stops: list[str]) -> Finished:
    """Cut the answer at the first stop sequence it contains, else after `max_tokens` tokens (None: no limit)."""
    found = [(text.index(stop), stop) for stop in stops if stop and stop in text]
    if found:
        at, stop = min(found)
        if max_tokens is None or token_count(text[:at]) <= max_tokens:
            return Finished(text[:at], "stop_sequence", stop)
    if max_tokens is None or token_count(text) <= max_tokens:
        return Finished(text, "end")
    return Finished(text[: max_tokens * 4], "max_tokens")
