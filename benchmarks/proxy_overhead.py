"""Proxy overhead benchmark: the latency `tierwise proxy` adds over calling the Anthropic API directly, and requests/s.

It starts four processes on loopback: the local stand-in API (`tierwise stand-in`, answering at
once), a real `tierwise serve`, `tierwise proxy --router` asking that server over gRPC, and
`tierwise proxy --model` with the router inside it. One client then sends the same request, in interleaved rounds
so that drift on a shared machine hits every path alike:

- `direct`: straight to the fake API (what the application pays without tierwise);
- `pass-through`: through the in-process proxy with a named model (no routing);
- `routed via gRPC`: through `proxy --router` with `"model": "tierwise"` (Predict over loopback, one upstream call,
  the judging, the outcome report queued for the background thread);
- `routed in-process`: the same through `proxy --model` (the decision made in the proxy's own process);
- `routed stream`, both ways: the same as SSE, timed to the last byte;
- `Predict` alone, from a Python gRPC client, for scale.

Added latency is each path's percentile minus the direct one's. Then C concurrent clients (asyncio, one
connection each) send for D seconds per path to measure requests/s.

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
from pathlib import Path

import grpc
import httpx
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-ant-bench"
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
PROMPT = "Summarize this email in one line: the meeting moved to Thursday at 3pm, room 4B."
FAKE = (sys.executable, "-m", "tierwise", "stand-in", "--port", "0", "--api-key", API_KEY)
PROXY = (sys.executable, "-m", "tierwise", "proxy")


def body(model: str, stream: bool = False) -> bytes:
    request = {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": PROMPT}], "stream": stream}
    return json.dumps(request).encode()


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


def http_call(client: httpx.Client, url: str, content: bytes) -> Callable[[], None]:
    def call() -> None:
        response = client.post(url, content=content, headers=HEADERS)
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


async def rate(url: str, content: bytes, clients: int, seconds: float) -> float:
    """Requests/s that `clients` concurrent clients (one connection each) get through in `seconds`."""
    done = 0

    async def client_loop(until: float) -> None:
        nonlocal done
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as client:
            while time.perf_counter() < until:
                response = await client.post(url, content=content, headers=HEADERS)
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
                times, rates = run(args, f"http://{fake.target}", via_grpc.target, in_process.target, router.target)
        report(times, rates, args, (load_before, os.getloadavg()))


def run(
    args: argparse.Namespace, fake_url: str, via_grpc: str, in_process: str, router_target: str
) -> tuple[dict[str, list[float]], dict[str, float]]:
    named, routed, streamed = body("claude-haiku-4-5"), body("tierwise"), body("tierwise", stream=True)
    with httpx.Client() as client:
        # name -> (one sequential call, and for the requests/s phase the base URL and body, if measured)
        paths: dict[str, tuple[Callable[[], None], str | None, bytes | None]] = {
            "direct to the API": (http_call(client, f"{fake_url}/v1/messages", named), fake_url, named),
            "pass-through (proxy --model)": (
                http_call(client, f"http://{in_process}/v1/messages", named),
                f"http://{in_process}",
                named,
            ),
            "routed via gRPC (proxy --router)": (
                http_call(client, f"http://{via_grpc}/v1/messages", routed),
                f"http://{via_grpc}",
                routed,
            ),
            "routed in-process (proxy --model)": (
                http_call(client, f"http://{in_process}/v1/messages", routed),
                f"http://{in_process}",
                routed,
            ),
            "routed stream via gRPC (last byte)": (
                http_call(client, f"http://{via_grpc}/v1/messages", streamed),
                None,
                None,
            ),
            "routed stream in-process (last byte)": (
                http_call(client, f"http://{in_process}/v1/messages", streamed),
                None,
                None,
            ),
            "Predict alone (gRPC, Python client)": (predict_call(router_target), None, None),
        }
        times: dict[str, list[float]] = {name: [] for name in paths}
        for call, _, _ in paths.values():
            timed_ms(call, 50)  # warm connections, caches and the proxies' price books
        for _ in range(args.rounds):
            for name, (call, _, _) in paths.items():
                times[name].extend(timed_ms(call, args.requests))
        rates = {
            name: asyncio.run(rate(f"{base}/v1/messages", content, args.concurrency, args.duration))
            for name, (_, base, content) in paths.items()
            if base is not None and content is not None
        }
    return times, rates


def report(
    times: dict[str, list[float]],
    rates: dict[str, float],
    args: argparse.Namespace,
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> None:
    base = times["direct to the API"]
    base50, base99 = statistics.median(base), percentile(base, 0.99)
    print(
        f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average (1 min) {load[0][0]:.2f} before, {load[1][0]:.2f} after; "
        f"{args.rounds} x {args.requests} sequential requests per path, {args.concurrency} clients x "
        f"{args.duration:.0f} s for requests/s"
    )
    print()
    print(f"| path | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s ({args.concurrency} clients) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, values in times.items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        direct = name.startswith("direct") or name.startswith("Predict")
        added = ("", "") if direct else (f"{p50 - base50:+.2f}", f"{p99 - base99:+.2f}")
        throughput = f"{rates[name]:,.0f}" if name in rates else ""
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {added[0]} | {added[1]} | {throughput} |")


if __name__ == "__main__":
    main()
