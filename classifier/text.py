"""Turning a request into the text the classifier reads, identically at training and serving time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def render_messages(messages: Iterable[Mapping[str, object]]) -> str:
    """Render a chat as text so the same conversation always embeds the same way.

    Each message becomes `role: content` on its own block; list-of-parts content keeps its text parts.
    """
    return "\n\n".join(
        f"{message.get('role', 'user')}: {content_text(message.get('content', ''))}" for message in messages
    )


def content_text(content: object) -> str:
    """A message's content as text: a string as it is, a list of parts as their text parts, one per line."""
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) if isinstance(part, Mapping) else str(part) for part in content)
    return str(content)


def clip_text(text: str, max_chars: int) -> str:
    """Cut a long prompt to the encoder's window before tokenising, keeping its head and its tail.

    Questions often come last (after instructions or worked examples), so both ends carry signal.
    """
    if len(text) <= max_chars:
        return text
    head = max_chars * 2 // 3
    tail = max_chars - head
    return text[:head] + "\n" + text[-tail:]
