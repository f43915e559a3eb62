"""The decisions this server made recently, by request_id: to flag outcomes for requests it never routed,
and to put each outcome next to the probability the router gave it (live calibration).

Bounded: a ring of the last `capacity` decisions. Remembering one is a slot assignment and a dict store,
with no lock (each step is atomic under the GIL; a race between two requests can at worst evict an entry
early), so the Predict hot path pays well under a microsecond.
"""

from __future__ import annotations

import itertools
from typing import Generic, Protocol, TypeVar


class Keyed(Protocol):
    request_id: str


Entry = TypeVar("Entry", bound=Keyed)


class RecentDecisions(Generic[Entry]):
    """The last `capacity` entries, looked up by their request_id."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._ring: list[Entry | None] = [None] * capacity
        self._slots = itertools.count()
        self._by_id: dict[str, Entry] = {}

    def remember(self, entry: Entry) -> None:
        """Keep `entry`, forgetting the oldest one when full."""
        slot = next(self._slots) % self.capacity
        old = self._ring[slot]
        self._ring[slot] = entry
        self._by_id[entry.request_id] = entry
        if old is not None and self._by_id.get(old.request_id) is old:
            self._by_id.pop(old.request_id, None)

    def get(self, request_id: str) -> Entry | None:
        """The remembered entry for a request_id, or None if this server never routed it (or forgot it)."""
        return self._by_id.get(request_id)

    def __len__(self) -> int:
        return len(self._by_id)
