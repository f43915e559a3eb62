"""The JSONL appender behind the decision log: rotation by reopen, and rows a failing disk refuses, counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tierwise.serving.jsonl_log import JsonlAppender

ROOT = Path(__file__).resolve().parents[1]


def row(i: int) -> dict[str, object]:
    return {"i": i}


def numbers(path: Path) -> list[int]:
    return [json.loads(line)["i"] for line in path.read_text().splitlines()]


def test_rows_go_to_the_renamed_file_until_reopen_then_to_a_new_file_at_the_path(tmp_path):
    path, rotated = tmp_path / "log.jsonl", tmp_path / "log.jsonl.1"
    appender = JsonlAppender(path, row)
    appender.add(0)
    appender.add(1)
    path.rename(rotated)
    appender.add(2)  # queued before the reopen: still the renamed file's
    appender.reopen()
    appender.add(3)
    appender.add(4)
    appender.close()
    assert numbers(rotated) == [0, 1, 2]
    assert numbers(path) == [3, 4]


def test_rows_a_full_disk_refuses_are_counted_not_raised():
    dropped: list[int] = []
    appender = JsonlAppender("/dev/full", row, dropped.append)
    for i in range(3):
        appender.add(i)
    appender.close()
    assert sum(dropped) == 3


def test_a_write_cut_short_drops_the_rows_it_cut_and_later_rows_start_on_a_fresh_line(tmp_path):
    """A file size limit (as a full disk would) stops a write inside a row; the rows after it stay readable."""
    path = tmp_path / "log.jsonl"
    script = textwrap.dedent(
        """
        import json, resource, signal, sys, time
        from tierwise.serving.jsonl_log import JsonlAppender

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (250, hard))
        dropped = []
        appender = JsonlAppender(sys.argv[1], lambda i: {"i": i, "pad": "x" * 80}, dropped.append)
        for i in range(5):  # 100 bytes a row: two fit, the third is cut at byte 250
            appender.add(i)
        deadline = time.monotonic() + 10
        while sum(dropped) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space again
        appender.add(5)
        appender.add(6)
        appender.close()
        print(json.dumps(dropped))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert sum(json.loads(result.stdout)) == 3
    lines = path.read_text().splitlines()
    readable = []
    for line in lines:
        try:
            readable.append(json.loads(line)["i"])
        except json.JSONDecodeError:
            assert line == '{"i": 2, "pad": "' + "x" * (250 - 200 - len('{"i": 2, "pad": "')), line
    assert readable == [0, 1, 5, 6]
    assert len(lines) == 5  # the cut row's start is the one line that does not parse
