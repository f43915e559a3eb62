"""Soak: a steady Predict rate for N minutes against a real `tierwise serve`, watching errors, latency and memory.

An open-loop client sends at a fixed rate whatever the server's answers do (several threads, each with its
own channel and connection, each on an absolute schedule), so a slow server meets the same load instead of
a politely slower one. It is bounded: a thread with --max-in-flight/--threads calls unanswered sends no
more until one ends, and counts the sends it skipped as `shed` (the rate was not held).

Prompts: a mix of short, medium and long (60/30/10), real ones from ../shared/data when present, else
generated sample-log prompts. Without --model it trains a static-encoder bundle on generated logs first.

Per minute it prints the calls sent, failed (by status) and shed, client-observed p50/p99, and the server's
RSS (the whole process tree, workers included) at the minute's end. It exits 1 if the server's RSS grows
more than 10% over its value after the first minute, or if any call failed or was shed.

    python benchmarks/soak.py [--minutes 10] [--rate 1000] [--threads 4] [--workers 1] [--decision-log]
                              [--long-ids] [--model BUNDLE]

--long-ids sends every call under its own request_id at the input limit's length (128 characters), the case
where an unbounded memory of recent decisions grew without limit: RSS must still level off.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_load import build_bundle, load_prompts, percentile
from tierwise.classifier.limits import REQUEST_ID
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

MIX = {"short": 6, "medium": 3, "long": 1}
RSS_GROWTH_LIMIT = 0.10
DEADLINE_S = 5.0


@dataclass
class Minute:
    """What one minute of sends came to (calls are filed under the minute they were sent in)."""

    sent: int = 0
    shed: int = 0
    done: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)


class Stats:
    """Per-minute outcomes shared by the sender threads and the gRPC callbacks, under one lock."""

    def __init__(self, minutes: int):
        self.minutes = [Minute() for _ in range(minutes)]
        self.lock = threading.Lock()

    def settled(self, index: int) -> bool:
        with self.lock:
            minute = self.minutes[index]
            return minute.done == minute.sent


class Sender(threading.Thread):
    """One channel sending `rate` Predicts a second on an absolute schedule, at most `bound` unanswered."""

    def __init__(
        self,
        target: str,
        requests: list[pb.PredictRequest],
        rate: float,
        bound: int,
        stats: Stats,
        id_prefix: str | None = None,
    ):
        super().__init__(daemon=True)
        self._id_prefix = id_prefix
        self._channel = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        self._predict = pb_grpc.RouterStub(self._channel).Predict
        self._requests = requests
        self._interval = 1.0 / rate
        self._slots = threading.BoundedSemaphore(bound)
        self._stats = stats
        self.start_at = 0.0

    def run(self) -> None:
        total = len(self._stats.minutes)
        next_send = self.start_at
        i = 0
        while True:
            minute = int((next_send - self.start_at) // 60)
            if minute >= total:
                break
            delay = next_send - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if self._slots.acquire(blocking=False):
                self._send(self._with_id(self._requests[i % len(self._requests)], i), minute)
            else:
                with self._stats.lock:
                    self._stats.minutes[minute].shed += 1
            i += 1
            next_send += self._interval

    def _with_id(self, request: pb.PredictRequest, i: int) -> pb.PredictRequest:
        """With --long-ids: the request under its own request_id, as long as the input limit allows."""
        if self._id_prefix is None:
            return request
        return pb.PredictRequest(
            prompt=request.prompt, request_id=f"{self._id_prefix}{i}".rjust(REQUEST_ID.maximum, "0")
        )

    def _send(self, request: pb.PredictRequest, minute: int) -> None:
        with self._stats.lock:
            self._stats.minutes[minute].sent += 1
        sent_at = time.perf_counter()
        call = self._predict.future(request, timeout=DEADLINE_S)
        call.add_done_callback(lambda done: self._finished(done, minute, sent_at))

    def _finished(self, call: grpc.Future, minute: int, sent_at: float) -> None:
        elapsed_ms = (time.perf_counter() - sent_at) * 1e3
        self._slots.release()
        code = call.code()
        with self._stats.lock:
            record = self._stats.minutes[minute]
            record.done += 1
            if code == grpc.StatusCode.OK:
                record.latencies_ms.append(elapsed_ms)
            else:
                record.failures[code.name] += 1

    def close(self) -> None:
        self._channel.close()


def mixed_requests(count: int, seed: int = 0) -> list[pb.PredictRequest]:
    """`count` requests drawn from the prompt sizes in MIX proportions, in a fixed shuffled order."""
    prompts = load_prompts(per_size=300)
    rng = random.Random(seed)
    sizes = rng.choices(list(MIX), weights=list(MIX.values()), k=count)
    return [pb.PredictRequest(prompt=rng.choice(prompts[size])) for size in sizes]


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (a worker pool's supervisor and workers)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) * 1024
        pending += [int(child) for child in children]
    return total


def serve_args(model: Path, workdir: Path, args: argparse.Namespace) -> list[str]:
    extra = ["--server-mode", args.server_mode] if args.server_mode else []
    if args.decision_log:
        extra += ["--decision-log", str(workdir / "decisions.jsonl")]
    return [
        *("--model", str(model), "--host", "127.0.0.1", "--port", "0", "--no-metrics"),
        *("--workers", str(args.workers), *extra),
    ]


def soak(target: str, server_pid: int, args: argparse.Namespace) -> tuple[Stats, list[int]]:
    """Run the load for args.minutes; return the per-minute outcomes and the server RSS at each minute's end."""
    stats = Stats(args.minutes)
    requests = mixed_requests(4096)
    bound = max(1, args.max_in_flight // args.threads)
    senders = [
        Sender(
            target,
            requests[k :: args.threads],
            args.rate / args.threads,
            bound,
            stats,
            f"{k}-" if args.long_ids else None,
        )
        for k in range(args.threads)
    ]
    start = time.perf_counter() + 0.5
    for k, sender in enumerate(senders):  # staggered, so the threads' sends interleave evenly
        sender.start_at = start + k / args.rate
        sender.start()
    rss: list[int] = []
    print(HEADER, flush=True)
    for minute in range(args.minutes):
        time.sleep(max(0.0, start + 60 * (minute + 1) - time.perf_counter()))
        rss.append(tree_rss_bytes(server_pid))
        settle_by = time.perf_counter() + DEADLINE_S + 2
        while not stats.settled(minute) and time.perf_counter() < settle_by:
            time.sleep(0.05)
        with stats.lock:
            print(row(minute, stats.minutes[minute], rss[minute]), flush=True)
    for sender in senders:
        sender.join()
        sender.close()
    return stats, rss


HEADER = (
    "| minute | sent   | failed | shed  | p50 ms | p99 ms | server RSS MB |\n"
    "|--------|--------|--------|-------|--------|--------|---------------|"
)


def row(index: int, minute: Minute, rss: int) -> str:
    failed = sum(minute.failures.values())
    return (
        f"| {index + 1:6} | {minute.sent:6} | {failed:6} | {minute.shed:5} "
        f"| {percentile(minute.latencies_ms, 0.5):6.2f} | {percentile(minute.latencies_ms, 0.99):6.2f} "
        f"| {rss / 2**20:13.1f} |"
    )


def verdict(stats: Stats, rss: list[int], rate: float) -> list[str]:
    """Why the soak failed (empty when it passed), after printing its summary."""
    minutes = stats.minutes
    failures = sum((m.failures for m in minutes), Counter())
    sent, shed = sum(m.sent for m in minutes), sum(m.shed for m in minutes)
    print(f"\n{sent} calls sent at a target of {rate:g}/s over {len(minutes)} min; {shed} shed")
    print("failed by status: " + (", ".join(f"{code} {n}" for code, n in failures.most_common()) or "none"))
    problems = []
    if len(rss) > 1:
        growth = max(rss[1:]) / rss[0] - 1
        print(f"server RSS after minute 1: {rss[0] / 2**20:.1f} MB; largest growth since: {growth:+.1%}")
        if growth > RSS_GROWTH_LIMIT:
            problems.append(f"server RSS grew {growth:.1%} after the first minute (limit {RSS_GROWTH_LIMIT:.0%})")
    if failures:
        problems.append(f"{sum(failures.values())} calls failed")
    if shed:
        problems.append(f"{shed} sends shed at the --max-in-flight bound: the rate was not held")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="bundle directory (default: train one on sample logs)")
    parser.add_argument("--minutes", type=int, default=10, help="length of the soak")
    parser.add_argument("--rate", type=float, default=1000.0, help="Predict calls per second, in total")
    parser.add_argument("--threads", type=int, default=4, help="sender threads, each with its own channel")
    parser.add_argument("--max-in-flight", type=int, default=256, help="unanswered calls allowed, in total")
    parser.add_argument("--workers", type=int, default=1, help="`tierwise serve --workers`")
    parser.add_argument("--server-mode", choices=["sync", "aio"], help="default: tierwise serve's own")
    parser.add_argument("--decision-log", action="store_true", help="the server also logs every decision")
    parser.add_argument(
        "--long-ids",
        action="store_true",
        help="every call carries its own request_id of the longest length allowed (classifier/limits.py), so the "
        "server's memory of recent decisions fills to its byte bound (README: Input limits)",
    )
    args = parser.parse_args(argv)
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_bundle(Path(tmp))
        with ServerProcess(serve_args(model, Path(tmp), args), capture_log=False) as server:
            print(f"server: {server.ready_line}")
            print(f"soak: {args.rate:g} Predict/s for {args.minutes} min, {args.threads} sender threads\n")
            stats, rss = soak(server.target, server.proc.pid, args)
            code = server.stop()
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    problems = verdict(stats, rss, args.rate)
    if code != 0:
        problems.append(f"the server exited with {code} on SIGTERM")
    for problem in problems:
        print(f"FAIL: {problem}")
    if problems:
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
