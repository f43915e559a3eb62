"""Proxy overhead benchmark: the latency `tierwise proxy` adds over calling the API directly, and requests/s, for
both APIs it serves: Anthropic's Messages (`POST /v1/messages`) and OpenAI's Chat Completions
(`POST /v1/chat/completions`).

It starts four processes on loopback: the local stand-in API (`tierwise stand-in`, answering both APIs at once), a
real `tierwise serve`, `tierwise proxy --router` asking that server over gRPC, and `tierwise proxy --model` with the
router inside it. One client then sends the same short request down each path of each API, in interleaved rounds so
that drift on a shared machine hits every path alike:

- `direct`: straight to the stand-in (what the application pays without tierwise);
- `pass-through`: through the in-process proxy with a named model (no routing; the same code in both proxies);
- `routed via gRPC`: through `proxy --router` with `"model": "tierwise"` (Predict over loopback, one upstream call,
  the judging, the outcome report queued for the background thread); a Chat Completions request is translated to
  a Messages call upstream and its answer back;
- `routed in-process`: the same through `proxy --model` (the decision made in the proxy's own process);
- `routed stream`, both ways: the same as a stream (SSE), timed to the last byte;
- `Predict` alone, from a Python gRPC client, for scale.

Added latency is each path's percentile minus the direct one's of the same API. Then C concurrent clients (asyncio,
one connection each) send for D seconds down each path that is not a stream, to measure requests/s.

    python benchmarks/proxy_overhead.py [--model BUNDLE] [--requests 400] [--rounds 5] [--concurrency 8] [--duration 8]

Without --model it trains a static-encoder bundle on generated sample logs first. The first line says the machine's
load average before and after the run (the paths share its cores with whatever else runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-ant-bench"
PROMPT = "Summarize this email in one line: the meeting moved to Thursday at 3pm, room 4B."
NAMED_MODEL = "claude-haiku-4-5"
FAKE = (sys.executable, "-m", "tierwise", "stand-in", "--port", "0", "--api-key", API_KEY)
PROXY = (sys.executable, "-m", "tierwise", "proxy")


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a key of the tables below
class Api:
    """One API the proxy serves: where its requests go and the headers its clients send."""

    name: str
    path: str
    headers: dict[str, str]

    def body(self, model: str, stream: bool = False) -> bytes:
        """The benchmark's request (the two APIs take the same fields for it)."""
        request = {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": PROMPT}]}
        return json.dumps({**request, "stream": stream}).encode()


JSON = {"content-type": "application/json"}
APIS = (
    Api("Messages", "/v1/messages", {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", **JSON}),
    Api("Chat Completions", "/v1/chat/completions", {"authorization": f"Bearer {API_KEY}", **JSON}),
)


@dataclass(frozen=True, eq=False)
class Lane:
    """One row of the table: a path of an API (`api` None: not HTTP), timed request by request through `call`."""

    api: Api | None
    name: str
    call: Callable[[], None]
    load: tuple[str, bytes] | None = None  # the URL and body the requests/s phase sends, if it measures this path

    @property
    def direct(self) -> bool:
        return self.name.startswith("direct")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build_bundle(workdir: Path) -> Path:
    """Train a static-encoder bundle on generated sample logs (what `tierwise serve` would serve)."""
    from tierwise.classifier.tiers import TierLadder
    from tierwise.training.data.logs import read_attempts
    from tierwise.training.data.sample_logs import write_sample_logs
    from tierwise.training.fit.train import TrainOptions, train_bundle

    logs = write_sample_logs(workdir / "logs", 1500, seed=0)
    out = workdir / "bundle"
    train_bundle(read_attempts([logs]), out, TierLadder.load(), TrainOptions(encoder="static"))
    return out


def http_call(client: httpx.Client, url: str, content: bytes, headers: dict[str, str]) -> Callable[[], None]:
    def call() -> None:
        response = client.post(url, content=content, headers=headers)
        response.read()
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")

    return call


def predict_call(target: str) -> Callable[[], None]:
    stub = pb_grpc.RouterStub(grpc.insecure_channel(target))
    request = pb.PredictRequest(prompt=PROMPT)
    return lambda: stub.Predict(request, timeout=5)


def timed_ms(call: Callable[[], None], count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


async def rate(url: str, content: bytes, headers: dict[str, str], clients: int, seconds: float) -> float:
    """Requests/s that `clients` concurrent clients (one connection each) get through in `seconds`."""
    done = 0

    async def client_loop(until: float) -> None:
        nonlocal done
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as client:
            while time.perf_counter() < until:
                response = await client.post(url, content=content, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"{url}: {response.status_code}")
                done += 1

    start = time.perf_counter()
    await asyncio.gather(*(client_loop(start + seconds) for _ in range(clients)))
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="Bundle to serve (default: train one on sample logs).")
    parser.add_argument("--requests", type=int, default=400, help="Sequential requests per path per round.")
    parser.add_argument("--rounds", type=int, default=5, help="Interleaved rounds over the paths.")
    parser.add_argument("--concurrency", type=int, default=8, help="Clients for the requests/s phase.")
    parser.add_argument("--duration", type=float, default=8.0, help="Seconds per path in the requests/s phase.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        model = args.model or build_bundle(Path(work))
        load_before = os.getloadavg()
        with ServerProcess([], program=FAKE) as fake:
            upstream = ["--listen", "127.0.0.1:0", "--upstream", f"http://{fake.target}"]
            with (
                ServerProcess(["--model", str(model), "--port", "0", "--no-metrics"]) as router,
                ServerProcess(["--router", router.target, *upstream], program=PROXY) as via_grpc,
                ServerProcess(["--model", str(model), "--no-metrics", *upstream], program=PROXY) as in_process,
            ):
                paths, times, rates = run(
                    args, f"http://{fake.target}", via_grpc.target, in_process.target, router.target
                )
        report(paths, times, rates, args, (load_before, os.getloadavg()))


def lanes(client: httpx.Client, fake_url: str, via_grpc: str, in_process: str, router_target: str) -> list[Lane]:
    """Every path of every API, then Predict alone."""
    found = []
    for api in APIS:
        named, routed, streamed = api.body(NAMED_MODEL), api.body("tierwise"), api.body("tierwise", stream=True)
        # name -> (base URL, body, measured for requests/s)
        paths = {
            "direct to the API": (fake_url, named, True),
            "pass-through (proxy --model)": (f"http://{in_process}", named, True),
            "routed via gRPC (proxy --router)": (f"http://{via_grpc}", routed, True),
            "routed in-process (proxy --model)": (f"http://{in_process}", routed, True),
            "routed stream via gRPC (last byte)": (f"http://{via_grpc}", streamed, False),
            "routed stream in-process (last byte)": (f"http://{in_process}", streamed, False),
        }
        for name, (base, content, rated) in paths.items():
            url = base + api.path
            call = http_call(client, url, content, api.headers)
            found.append(Lane(api, name, call, (url, content) if rated else None))
    found.append(Lane(None, "Predict alone (gRPC, Python client)", predict_call(router_target)))
    return found


def run(
    args: argparse.Namespace, fake_url: str, via_grpc: str, in_process: str, router_target: str
) -> tuple[list[Lane], dict[Lane, list[float]], dict[Lane, float]]:
    with httpx.Client() as client:
        paths = lanes(client, fake_url, via_grpc, in_process, router_target)
        times: dict[Lane, list[float]] = {lane: [] for lane in paths}
        for lane in paths:
            timed_ms(lane.call, 50)  # warm connections, caches and the proxies' price books
        for _ in range(args.rounds):
            for lane in paths:
                times[lane].extend(timed_ms(lane.call, args.requests))
        rates = {
            lane: asyncio.run(rate(*lane.load, lane.api.headers, args.concurrency, args.duration))
            for lane in paths
            if lane.api is not None and lane.load is not None
        }
    return paths, times, rates


def report(
    paths: list[Lane],
    times: dict[Lane, list[float]],
    rates: dict[Lane, float],
    args: argparse.Namespace,
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> None:
    print(
        f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average (1 min) {load[0][0]:.2f} before, {load[1][0]:.2f} after; "
        f"{args.rounds} x {args.requests} sequential requests per path, {args.concurrency} clients x "
        f"{args.duration:.0f} s for requests/s"
    )
    print()
    print(f"| API | path | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s ({args.concurrency} clients) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    direct = {lane.api: times[lane] for lane in paths if lane.direct}
    for lane in paths:
        values = times[lane]
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        added = ("", "")
        if lane.api is not None and not lane.direct:
            base = direct[lane.api]
            added = (f"{p50 - statistics.median(base):+.2f}", f"{p99 - percentile(base, 0.99):+.2f}")
        throughput = f"{rates[lane]:,.0f}" if lane in rates else ""
        api = lane.api.name if lane.api else "(gRPC)"
        print(f"| {api} | {lane.name} | {p50:.2f} | {p99:.2f} | {added[0]} | {added[1]} | {throughput} |")


if __name__ == "__main__":
    main()
