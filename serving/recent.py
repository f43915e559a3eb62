"""The decisions this server made recently, by request_id: to flag outcomes for requests it never routed,
and to put each outcome next to the probability the router gave it (live calibration).

Bounded twice: the last `capacity` request_ids, and at most `max_bytes` (`RECENT_DECISIONS_BYTES` by default)
of memory for them, so no request_id length a caller picks can grow the server (the oldest are forgotten
first). An entry's bytes are its request_id string, its probabilities dict and its floats, and the memory's
own bookkeeping for it (`ENTRY_OVERHEAD_BYTES`): with ids of a few dozen characters and three tiers, about
0.4 KB. Remembering one is a few dictionary operations under a lock held for nothing else, and creates no
object the garbage collector has to walk: the probabilities dict holds only strings and floats, so a full
memory does not slow the collections that every request's allocations trigger.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict

from tierwise.classifier.limits import RECENT_DECISIONS_BYTES

FLOAT_BYTES = sys.getsizeof(0.5)
# The ordered dict's own share of one entry (hash table slot, index and its linked-list node), measured on
# CPython 3.11-3.13 as under 100 bytes; counted generously.
ENTRY_OVERHEAD_BYTES = 120


def entry_bytes(request_id: str, probabilities: dict[str, float]) -> int:
    """The memory one remembered decision takes (the tier names are the model's, shared by every entry)."""
    return (
        sys.getsizeof(request_id)
        + sys.getsizeof(probabilities)
        + FLOAT_BYTES * len(probabilities)
        + ENTRY_OVERHEAD_BYTES
    )


class RecentDecisions:
    """The per-tier probabilities of the last routed requests, by request_id, within `capacity` and `max_bytes`."""

    def __init__(self, capacity: int, max_bytes: int = RECENT_DECISIONS_BYTES):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, request_id: str, probabilities: dict[str, float]) -> None:
        """Keep a routed request's probabilities (a reused request_id: its latest), forgetting the oldest as needed."""
        size = entry_bytes(request_id, probabilities)
        with self._lock:
            entries = self._entries
            replaced = entries.pop(request_id, None)
            if replaced is not None:
                self.bytes -= entry_bytes(request_id, replaced)
            entries[request_id] = probabilities
            self.bytes += size
            while len(entries) > self.capacity or self.bytes > self.max_bytes:
                self.bytes -= entry_bytes(*entries.popitem(last=False))

    def get(self, request_id: str) -> dict[str, float] | None:
        """The probabilities the router gave a request_id, or None if this server never routed it (or forgot)."""
        return self._entries.get(request_id)

    def __len__(self) -> int:
        return len(self._entries)
