"""The memory of conversations (the proxy's, and each routed client's): which tier served each one's last turn and
how much of its prompt that turn left in the provider's cache, so the next turn is decided knowing where its cache
is warm (`Conversation`, `Policy.keep_warm`). Each attempt that answers updates it (`Escalation.on_settled`), so a
turn's last answer, streamed or not, is what the next turn finds.

A conversation is named by the caller's `x-tierwise-session` header; without one, by its user (Anthropic's
`metadata.user_id`, OpenAI's `user`, which the Chat Completions translation carries over) together with its first
messages (the text of the system prompt and of the first turn), which every later turn repeats. Two conversations
that start alike without a user or session share an entry, as they share the provider's cache of that start. Only
a digest of the name is kept. An entry expires `ttl_s` after its last turn (the providers' prompt caches live five
minutes from their last use); at most `CONVERSATIONS` entries and `CONVERSATIONS_BYTES` are held, the least
recently used going first.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from tierwise.classifier.limits import CACHED_TOKENS, CONVERSATIONS, CONVERSATIONS_BYTES, IDENTIFIER
from tierwise.classifier.request import Conversation
from tierwise.classifier.text import content_text
from tierwise.classifier.tiers import CACHE_LIFETIME_S
from tierwise.serving.escalation import Attempt

SESSION_HEADER = "x-tierwise-session"
# What one entry holds in memory, measured (tests/test_conversations.py): a 16-byte digest, the Conversation, its
# expiry, and the ordered dict's own bookkeeping.
ENTRY_BYTES = 320


def conversation_key(headers: Mapping[str, str], params: Mapping[str, Any]) -> bytes:
    """The digest naming the conversation a Messages request belongs to (module docstring).

    A session header over the identifier limit is refused with a FieldError naming it.
    """
    session = headers.get(SESSION_HEADER)
    if session is not None:
        IDENTIFIER.check(session, SESSION_HEADER)
        named = ["session", session]
    else:
        metadata = params.get("metadata")
        user = metadata.get("user_id") if isinstance(metadata, dict) else None
        first = (params.get("messages") or [{}])[0]
        first = first if isinstance(first, dict) else {"content": first}
        # Their text only: a client moves its cache marks (`cache_control`) from turn to turn.
        named = ["start", user, _text(params.get("system")), first.get("role"), _text(first.get("content"))]
    text = json.dumps(named, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]


def _text(content: object) -> str | None:
    return None if content is None else content_text(content)


class Conversations:
    """Conversations' warm tiers by key, each forgotten `ttl_s` after its last turn; bounded in entries and bytes."""

    def __init__(
        self,
        ttl_s: float = CACHE_LIFETIME_S,
        max_entries: int = CONVERSATIONS,
        max_bytes: int = CONVERSATIONS_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ttl_s = ttl_s
        self.capacity = min(max_entries, max_bytes // ENTRY_BYTES)
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[Conversation, float]] = OrderedDict()
        self._lock = threading.Lock()  # the blocking client may be called from several threads

    def key(self, headers: Mapping[str, str], params: Mapping[str, Any]) -> bytes | None:
        """The conversation a Messages request belongs to (`conversation_key`), or None when none are followed."""
        return None if self.ttl_s <= 0 else conversation_key(headers, params)

    def named(self, headers: Mapping[str, str]) -> bool:
        """Whether the caller names its conversation with `x-tierwise-session` and conversations are followed: then
        the proxy marks a Chat Completions conversation for a Claude tier's cache (`chat_translation.cache_marked`),
        which a caller that names no session never pays for."""
        return self.ttl_s > 0 and SESSION_HEADER in headers

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes | None) -> Conversation | None:
        """The conversation's warm tier and cached prefix, while its cache is alive; None for a first turn (or no
        conversation followed: no key)."""
        if key is None:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[1] <= self._clock():
                del self._entries[key]
                return None
            return entry[0]

    def recorder(self, key: bytes | None) -> Callable[[Attempt], None] | None:
        """What remembers the attempts of a turn of conversation `key` (`Escalation.on_settled`); None without one."""
        return None if key is None else functools.partial(self.answered, key)

    def answered(self, key: bytes, attempt: Attempt) -> None:
        """Remember the tier of an attempt that answered (a turn's last one settles its conversation), what its
        answer left cached (reads plus writes) and its length; a failed attempt leaves the conversation as it was."""
        usage = attempt.usage
        if self.ttl_s <= 0 or usage is None or not attempt.tier:
            return
        cached = min(usage.cache_read_input_tokens + usage.cache_creation_input_tokens, CACHED_TOKENS.maximum)
        output = min(usage.output_tokens, CACHED_TOKENS.maximum)
        remembered = (Conversation(attempt.tier, cached, output), self._clock() + self.ttl_s)
        with self._lock:
            self._entries[key] = remembered
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
