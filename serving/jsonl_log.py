"""An append-only JSONL file written off the request path, reopened on request for log rotation.

Requests only enqueue; a writer thread turns items into rows and appends them in batches, one O_APPEND
write() per batch, so several server processes sharing the file never interleave rows. `reopen()` (what
SIGHUP does) makes the writer open the path again: after logrotate renames the file, rows queued before
the signal end in the renamed file and later ones in a new file at the original path, none lost.

A row that cannot be written (a full disk) is counted through `on_dropped`, never raised to a caller, and
logged at most once per `report_interval_s` with the count since the last line: a flood of failures is a few
lines, not one per row. A write cut short inside a row, or a file found ending inside one (a crash, a full
disk before a restart), makes the next row start on a fresh line, so a torn row never glues onto a good one:
it stays one bad line that `tierwise collect --skip-invalid` can step over.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import math
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from tierwise.serving.config import ServeError

log = logging.getLogger("tierwise.serving")

Item = TypeVar("Item")
BATCH_ROWS = 1024
REPORT_INTERVAL_S = 60.0  # the least time between two log lines about dropped rows


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
        report_interval_s: float = REPORT_INTERVAL_S,
    ):
        """Open `path` for appending (ServeError naming it if that cannot be done) and start the writer thread."""
        self.path = Path(path)
        self._to_row = to_row
        self._on_dropped = on_dropped
        self._report_interval_s = report_interval_s
        self._unreported = 0  # rows dropped since the last line about them
        self._reported_at = -math.inf  # monotonic time of that line
        self._reason = ""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = _open_append(self.path)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename and Path(exc.filename) != self.path else ""
            raise ServeError(f"{self.path}: cannot append a log there ({where}{exc.strerror or exc})") from exc
        self._torn = _ends_inside_a_row(self.path)  # start the next row on a fresh line
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
        if self._unreported:
            self._report("the log is closed")

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
            self._dropped(len(rows) - complete, exc)
        else:
            self._torn = False
            if self._unreported and self._report_due():
                self._report("writing works again")

    def _dropped(self, rows: int, exc: OSError) -> None:
        self._on_dropped(rows)
        self._unreported += rows
        self._reason = exc.strerror or str(exc)
        if self._report_due():
            self._report(
                f"rows that fail later are logged at most every {self._report_interval_s:g} s, with their count"
            )

    def _report_due(self) -> bool:
        return time.monotonic() - self._reported_at >= self._report_interval_s

    def _report(self, note: str) -> None:
        rows = f"{self._unreported} row{'' if self._unreported == 1 else 's'}"
        log.error("%s: %s dropped, not written (%s); %s", self.path, rows, self._reason, note)
        self._unreported = 0
        self._reported_at = time.monotonic()

    def _reopen(self) -> None:
        try:
            fresh = _open_append(self.path)
        except OSError as exc:
            log.error("%s: cannot reopen (%s); rows keep going to the file already open", self.path, exc)
            return
        os.close(self._fd)
        self._fd, self._torn = fresh, _ends_inside_a_row(self.path)
        log.info("%s: reopened", self.path)


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _ends_inside_a_row(path: Path) -> bool:
    """Whether a regular file's last byte is not a newline (a row cut short by a crash or a full disk)."""
    try:
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode) or handle.seek(0, os.SEEK_END) == 0:
                return False
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except OSError:
        return False
