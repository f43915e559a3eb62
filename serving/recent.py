"""The decisions this server made recently, by request_id: to flag outcomes for requests it never routed,
and to put each outcome next to the probability the router gave it (live calibration).

Bounded: a ring of the last `capacity` request_ids, each with the router's per-tier probabilities.
Remembering one is a few dict and list stores with no lock (each is atomic under the GIL; a race between two
requests can at worst forget an entry early) and creates no object the garbage collector has to walk: the
probabilities dict holds only strings and floats, so a full ring does not slow the collections that every
request's allocations trigger.
"""

from __future__ import annotations

import itertools


class RecentDecisions:
    """The per-tier probabilities of the last `capacity` routed requests, by request_id."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._ring: list[str | None] = [None] * capacity
        self._count = itertools.count()
        self._probabilities: dict[str, dict[str, float]] = {}
        self._remembered_at: dict[str, int] = {}

    def remember(self, request_id: str, probabilities: dict[str, float]) -> None:
        """Keep a routed request's probabilities, forgetting the oldest request when full."""
        number = next(self._count)
        slot = number % self.capacity
        old = self._ring[slot]
        self._ring[slot] = request_id
        self._probabilities[request_id] = probabilities
        self._remembered_at[request_id] = number
        # The old request leaves unless it was routed again since (then a later slot holds it).
        if old is not None and old != request_id and self._remembered_at.get(old) == number - self.capacity:
            self._probabilities.pop(old, None)
            self._remembered_at.pop(old, None)

    def get(self, request_id: str) -> dict[str, float] | None:
        """The probabilities the router gave a request_id, or None if this server never routed it (or forgot)."""
        return self._probabilities.get(request_id)

    def __len__(self) -> int:
        return len(self._probabilities)
