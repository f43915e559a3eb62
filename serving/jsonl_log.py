"""An append-only JSONL file written off the request path, reopened on request for log rotation.

Requests only enqueue; a writer thread turns items into rows and appends them in batches, one O_APPEND
write() per batch, so several server processes sharing the file never interleave rows. `reopen()` (what
SIGHUP does) makes the writer open the path again: after logrotate renames the file, rows queued before
the signal end in the renamed file and later ones in a new file at the original path, none lost. A row
that cannot be written (a full disk) is counted through `on_dropped` and logged, never raised to a caller.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger("tierwise.serving")

Item = TypeVar("Item")
BATCH_ROWS = 1024


class _Marker:
    """A command for the writer thread, queued in order with the items."""


_REOPEN = _Marker()
_STOP = _Marker()


class JsonlAppender(Generic[Item]):
    """Appends `to_row(item)` as one JSON line per item to `path` from a background thread."""

    def __init__(
        self,
        path: str | Path,
        to_row: Callable[[Item], dict[str, object]],
        on_dropped: Callable[[int], None] = lambda rows: None,
    ):
        self.path = Path(path)
        self._to_row = to_row
        self._on_dropped = on_dropped
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = _open_append(self.path)
        self._torn = False  # the last write stopped inside a row: start the next one on a fresh line
        self._queue: queue.SimpleQueue[Item | _Marker] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"tierwise-log-{self.path.name}", daemon=True)
        self._thread.start()

    def add(self, item: Item) -> None:
        """Queue one item; never blocks on disk."""
        self._queue.put(item)

    def reopen(self) -> None:
        """Write later rows to a file opened afresh at `path` (after rotation); safe from a signal handler."""
        self._queue.put(_REOPEN)

    def close(self) -> None:
        """Write everything queued, then close the file."""
        self._queue.put(_STOP)
        self._thread.join()
        os.close(self._fd)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH_ROWS and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            rows: list[bytes] = []
            for item in batch:
                if isinstance(item, _Marker):
                    self._write(rows)
                    rows = []
                    if item is _STOP:
                        return
                    self._reopen()
                else:
                    rows.append(json.dumps(self._to_row(item)).encode("utf-8") + b"\n")
            self._write(rows)

    def _write(self, rows: list[bytes]) -> None:
        if not rows:
            return
        prefix = b"\n" if self._torn else b""
        data = memoryview(prefix + b"".join(rows))
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            # bounds[k]: the bytes taken by the prefix and the first k rows
            bounds = list(itertools.accumulate((len(row) for row in rows), initial=len(prefix)))
            complete = max(0, bisect.bisect_right(bounds, written) - 1)
            if written:
                self._torn = written != bounds[complete]
            log.error("%s: cannot write %d of %d rows: %s", self.path, len(rows) - complete, len(rows), exc)
            self._on_dropped(len(rows) - complete)
        else:
            self._torn = False

    def _reopen(self) -> None:
        try:
            fresh = _open_append(self.path)
        except OSError as exc:
            log.error("%s: cannot reopen (%s); rows keep going to the file already open", self.path, exc)
            return
        os.close(self._fd)
        self._fd, self._torn = fresh, False
        log.info("%s: reopened", self.path)


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
