"""Run `tierwise serve` as a child process and know when it is ready: for tests, benchmarks and demos.

The server prints one `listening on HOST:PORT ... metrics on :PORT` line once its model is loaded and it
answers; ports given as 0 are read back from that line.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

SERVE = (sys.executable, "-m", "tierwise", "serve")
_READY = re.compile(r"listening on \S+:(\d+) ")
_METRICS = re.compile(r"metrics on :(\d+)")


class ServerProcess:
    """A running `tierwise serve` child (or another `program` printing the same ready line).

    Its stderr (the server log) is collected in `log_lines`, or with `capture_log=False` goes straight to
    this process's stderr (a long-running parent must not hold a child's log in memory).
    """

    def __init__(
        self,
        args: Sequence[str],
        ready_timeout_s: float = 60.0,
        program: Sequence[str] = SERVE,
        capture_log: bool = True,
    ):
        command = [*program, *args]
        stderr = subprocess.PIPE if capture_log else None
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.log_lines: list[str] = []
        self.ready_line = ""
        self._terminating = False
        self._stdout: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stderr = threading.Thread(target=self._collect_log, daemon=True)
        if capture_log:
            self._stderr.start()
        threading.Thread(target=self._forward_stdout, daemon=True).start()
        self.port, self.metrics_port = self._wait_ready(ready_timeout_s)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return "".join(self.log_lines)

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)
        self._terminating = self._terminating or sig == signal.SIGTERM

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait for the drain, and return the exit code (killing it if it hangs).

        No second SIGTERM if one was already sent: landing while Python finalises, it would kill with -15.
        """
        if not self._terminating and self.proc.poll() is None:
            self.send(signal.SIGTERM)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float) -> int:
        """Wait for the process to exit and return its code, killing it if it still runs after timeout_s.

        Sends no signal of its own (for a caller that already sent SIGTERM, see `stop`).
        """
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._join_log()
        return code

    def wait_for_log(self, pattern: str, timeout_s: float = 30.0) -> re.Match[str]:
        """Block until the server log matches `pattern` (a regex); raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log)
            if found:
                return found
            time.sleep(0.05)
        raise TimeoutError(f"server log never matched {pattern!r}:\n{self.log}")

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self, timeout_s: float) -> tuple[int, int | None]:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._stdout.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            found = _READY.search(line)
            if found:
                self.ready_line = line.strip()
                metrics = _METRICS.search(line)
                return int(found.group(1)), int(metrics.group(1)) if metrics else None
        self.proc.kill()
        self.proc.wait()
        self._join_log()
        raise RuntimeError(f"tierwise serve did not start (exit {self.proc.returncode}):\n{self.log}")

    def _join_log(self) -> None:
        if self._stderr.is_alive():
            self._stderr.join(5)

    def _collect_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log_lines.append(line)

    def _forward_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._stdout.put(line)
        self._stdout.put(None)
