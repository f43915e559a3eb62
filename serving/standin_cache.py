"""Prompt caching in the stand-in API, as the real APIs report it, so routing that keeps a conversation on one tier
can be measured offline.

A prompt is a list of segments (tools, system blocks, messages, in order). Prefixes are remembered per model for
five minutes, each use renewing them (both providers' default lifetime):
- Anthropic: a prefix ends at each block marked `cache_control`. A request reads the longest remembered one
  (`cache_read_input_tokens`) and writes the rest up to its last mark (`cache_creation_input_tokens`). No minimum
  length is enforced.
- OpenAI: automatic, for prompts of 1,024 tokens or more; a prefix ends after each message, and the longest
  remembered one is read, counted in steps of 128 tokens (`prompt_tokens_details.cached_tokens`).
The same prefix on another model is a miss, as on the real APIs: caches are per model.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from tierwise.classifier.tiers import CACHE_LIFETIME_S

OPENAI_MIN_TOKENS = 1024
OPENAI_STEP_TOKENS = 128


@dataclass(frozen=True)
class Segment:
    """One piece of a prompt: what identifies it, its tokens, and whether a cache breakpoint follows it."""

    key: str
    tokens: int
    breakpoint: bool = False


@dataclass(frozen=True)
class CacheUse:
    """Tokens of a request read from the cache and written to it."""

    read: int = 0
    written: int = 0


class PromptCache:
    """Remembered prefixes per model, each expiring `ttl_s` after its last use; at most `max_entries` (oldest go)."""

    def __init__(
        self, ttl_s: float = CACHE_LIFETIME_S, clock: Callable[[], float] = time.monotonic, max_entries: int = 100_000
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_entries = max_entries
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def anthropic(self, model: str, segments: list[Segment]) -> CacheUse:
        """Read the longest remembered prefix ending at a breakpoint; write the rest up to the last breakpoint."""
        ends = [index + 1 for index, segment in enumerate(segments) if segment.breakpoint]
        hit, last = self._use(model, segments, ends)
        return CacheUse(read=hit, written=last - hit)

    def openai(self, model: str, segments: list[Segment]) -> int:
        """Cached tokens of a prompt: the longest remembered message prefix, in 128-token steps, from 1,024 tokens."""
        total, ends = 0, []
        for index, segment in enumerate(segments):
            total += segment.tokens
            if total >= OPENAI_MIN_TOKENS:
                ends.append(index + 1)
        hit, _ = self._use(model, segments, ends)
        return hit - hit % OPENAI_STEP_TOKENS

    def _use(self, model: str, segments: list[Segment], ends: list[int]) -> tuple[int, int]:
        """Tokens of the longest remembered prefix among `ends` and of the longest prefix; all are now remembered."""
        keys, tokens = [], [0]
        digest = hashlib.sha256(model.encode())
        for segment in segments:
            digest.update(b"\0" + segment.key.encode())
            keys.append(digest.hexdigest())
            tokens.append(tokens[-1] + segment.tokens)
        now = self.clock()
        hit = 0
        with self._lock:
            for end in ends:
                key = keys[end - 1]
                if self._expiry.get(key, now) > now:
                    hit = tokens[end]
                self._expiry[key] = now + self.ttl_s
                self._expiry.move_to_end(key)
            while len(self._expiry) > self.max_entries:
                self._expiry.popitem(last=False)
        return hit, tokens[ends[-1]] if ends else 0
