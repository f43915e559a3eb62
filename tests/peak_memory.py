"""The peak resident memory of one command, as the kernel counts it for that command alone.

A child's `ru_maxrss` includes the memory its parent held when it forked (the kernel carries the high-water
mark across exec), so a command started straight from pytest or a benchmark would be charged for theirs. A
bare Python launcher starts the command instead and reports the command's own usage.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


@dataclass(frozen=True)
class Measured:
    """How a command ended, what it printed (stdout and stderr together), its wall time and peak RSS."""

    returncode: int
    output: str
    wall_s: float
    peak_rss_mb: float


def run_measured(
    command: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | Path | None = None
) -> Measured:
    """Run a command to its end and measure it (Linux: ru_maxrss is in KiB)."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "usage"
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, str(report), *command],
            env=None if env is None else dict(env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        wall = time.perf_counter() - started
        returncode, peak_kib = (int(value) for value in report.read_text().split())
    assert done.returncode == 0, f"the launcher failed: {done.stdout}"
    return Measured(returncode, done.stdout, wall, peak_kib / 1024)
