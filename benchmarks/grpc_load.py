"""gRPC load benchmark: client-observed latency and throughput of `tierwise serve` on loopback.

For each server variant (grpcio sync server with N threads, or the asyncio server; either as one process
or as W worker processes sharing the port, `--workers W`) it starts a real `tierwise serve` and, in the
same run, a trivial-handler gRPC server of the same variant (as many processes, same port sharing) that
answers a canned PredictResponse with no inference (the baseline: what gRPC + protobuf cost alone):

- sequential calls, one client, for short, medium and long prompts (real prompts from ../shared/data
  when present): client p50/p99 and requests/s, and the server-side inference time the responses report;
- N concurrent clients (default 8; each its own channel and connection) for short and mixed prompts;
- once, for the first variant: the same clients sharing one connection.

    python benchmarks/grpc_load.py [--model BUNDLE_DIR] [--variants sync:4,sync:4x2,aio] [--duration 6] [--pin]

A variant is `sync:THREADS` or `aio`, with `xWORKERS` appended for several processes (`sync:4x2`).

--pin keeps the load generator off the servers' CPUs (client on the first CPU, servers on the rest), as
a deployment with dedicated cores would; without it the scheduler moves everything across all CPUs.

Without --model it trains a static-encoder bundle on generated sample logs first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from tierwise.serving.config import DEFAULT_THREADS, ServeConfig, default_server_mode
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc
from tierwise.serving.workers import reserve_port

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Prompt sizes in characters (about 4 per token): ~20, ~80 and ~330 tokens.
SIZES = {"short": (60, 120), "medium": (280, 360), "long": (1200, 1500)}


@dataclass
class LoadResult:
    """What one load phase measured."""

    label: str
    client_us: list[float]
    server_us: list[int]
    seconds: float

    @property
    def rate(self) -> float:
        return len(self.client_us) / self.seconds


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# --- prompts and model ------------------------------------------------------------------------------


def load_prompts(per_size: int) -> dict[str, list[str]]:
    """Real prompts of each size from the shared data, else generated sample-log prompts padded to size."""
    texts: list[str] = []
    for name in ("mmlu_pro", "routerbench"):
        path = SHARED_DATA / name / "attempts.parquet"
        if path.exists():
            import polars as pl

            texts += pl.read_parquet(path, columns=["prompt"]).unique("prompt")["prompt"].to_list()
    if not texts:
        from tierwise.training.data.sample_logs import generate_attempts

        base = generate_attempts(400, seed=1)["prompt"].unique().to_list()
        texts = [(" ".join([b] * (n // len(b) + 1)))[:n] for b in base for n in (90, 320, 1350)]
    prompts = {}
    for size, (low, high) in SIZES.items():
        fitting = [t for t in texts if low <= len(t) <= high][:per_size]
        if not fitting:
            raise SystemExit(f"no prompts of {low}-{high} characters found")
        prompts[size] = fitting
    return prompts


def build_bundle(workdir: Path) -> Path:
    """Train a static-encoder bundle on generated sample logs (what `tierwise serve` would serve)."""
    from tierwise.classifier.tiers import TierLadder
    from tierwise.training.data.logs import read_attempts
    from tierwise.training.data.sample_logs import write_sample_logs
    from tierwise.training.fit.train import train_bundle

    logs = write_sample_logs(workdir / "logs", 1500, seed=0)
    out = workdir / "bundle"
    train_bundle(read_attempts([logs]), out, TierLadder.load())
    return out


# --- load generators -----------------------------------------------------------------------------------


def sequential(target: str, label: str, texts: list[str], calls: int, warmup: int = 100) -> LoadResult:
    """One client, one call at a time: the latency an application sees before each LLM call."""
    requests = [pb.PredictRequest(prompt=t) for t in texts]
    with grpc.insecure_channel(target) as channel:
        predict = pb_grpc.RouterStub(channel).Predict
        for i in range(warmup):
            predict(requests[i % len(requests)], timeout=10)
        client_us, server_us = [], []
        start = time.perf_counter()
        for i in range(calls):
            t0 = time.perf_counter()
            response = predict(requests[i % len(requests)], timeout=10)
            client_us.append((time.perf_counter() - t0) * 1e6)
            server_us.append(response.inference_us)
        seconds = time.perf_counter() - start
    return LoadResult(label, client_us, server_us, seconds)


def concurrent(
    target: str, label: str, texts: list[str], clients: int, duration_s: float, shared_connection: bool = False
) -> LoadResult:
    """`clients` callers in a closed loop (asyncio client, each its own channel) for `duration_s`."""
    return asyncio.run(_concurrent(target, label, texts, clients, duration_s, shared_connection))


async def _concurrent(
    target: str, label: str, texts: list[str], clients: int, duration_s: float, shared_connection: bool
) -> LoadResult:
    requests = [pb.PredictRequest(prompt=t) for t in texts]
    options = [] if shared_connection else [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(clients)]
    client_us: list[float] = []
    server_us: list[int] = []
    measuring = False

    async def caller(channel: grpc.aio.Channel, offset: int, until: float) -> None:
        predict = pb_grpc.RouterStub(channel).Predict
        i = offset
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            response = await predict(requests[i % len(requests)], timeout=10)
            if measuring:
                client_us.append((time.perf_counter() - t0) * 1e6)
                server_us.append(response.inference_us)
            i += 1

    warm_until = time.perf_counter() + 0.3
    await asyncio.gather(*(caller(c, k * 7, warm_until) for k, c in enumerate(channels)))
    measuring = True
    start = time.perf_counter()
    await asyncio.gather(*(caller(c, k * 7, start + duration_s) for k, c in enumerate(channels)))
    seconds = time.perf_counter() - start
    for channel in channels:
        await channel.close()
    return LoadResult(label, client_us, server_us, seconds)


Load = Callable[[str, int], LoadResult]


def loads(prompts: dict[str, list[str]], args: argparse.Namespace, with_shared: bool) -> list[Load]:
    """The load phases; each takes a target and a round count and measures one round's share of the load."""
    phases: list[Load] = [
        functools.partial(_sequential_round, f"sequential {size}", texts, args.calls) for size, texts in prompts.items()
    ]
    mixed = [t for group in zip(*prompts.values(), strict=False) for t in group]
    shapes = [
        (f"{args.clients} clients short", prompts["short"], False),
        (f"{args.clients} clients mixed", mixed, False),
    ]
    if with_shared:
        shapes.append((f"{args.clients} clients short, 1 connection", prompts["short"], True))
    phases += [
        functools.partial(_concurrent_round, label, texts, args.clients, args.duration, shared)
        for label, texts, shared in shapes
    ]
    return phases


def _sequential_round(label: str, texts: list[str], calls: int, target: str, rounds: int) -> LoadResult:
    return sequential(target, label, texts, calls // rounds)


def _concurrent_round(
    label: str, texts: list[str], clients: int, duration_s: float, shared: bool, target: str, rounds: int
) -> LoadResult:
    return concurrent(target, label, texts, clients, duration_s / rounds, shared)


def interleaved(load: Load, targets: Sequence[str], rounds: int) -> list[LoadResult]:
    """Run a load against each target in alternating rounds, so background noise hits them all alike."""
    parts: list[list[LoadResult]] = [[] for _ in targets]
    for _ in range(rounds):
        for part, target in zip(parts, targets, strict=True):
            part.append(load(target, rounds))
    return [
        LoadResult(
            part[0].label,
            [u for r in part for u in r.client_us],
            [u for r in part for u in r.server_us],
            sum(r.seconds for r in part),
        )
        for part in parts
    ]


# --- the trivial-handler baseline server --------------------------------------------------------------


def serve_trivial(variant: str, port: int) -> None:
    """A gRPC server of the same kind and options as `tierwise serve` whose Predict does no work.

    With workers, each of the variant's processes is one of these, all on `port` (SO_REUSEPORT).
    """
    mode, threads, workers = parse_variant(variant)
    canned = pb.PredictResponse(
        tier="haiku",
        model="claude-haiku-4-5",
        probabilities={"haiku": 0.91, "sonnet": 0.95, "opus": 0.97},
        fallback_chain=["haiku", "sonnet", "opus"],
        model_version="trivial",
        quality_target=0.9,
        mode=pb.THRESHOLD,
    )
    options = ServeConfig(model="-", reuse_port=workers > 1).grpc_options()

    def handlers(predict):
        return {
            "Predict": grpc.unary_unary_rpc_method_handler(
                predict,
                request_deserializer=pb.PredictRequest.FromString,
                response_serializer=pb.PredictResponse.SerializeToString,
            )
        }

    def announce(port: int) -> None:
        print(f"trivial server: listening on 127.0.0.1:{port} ({variant}), metrics off,", flush=True)

    address = f"127.0.0.1:{port}"

    if mode == "aio":

        async def predict_async(request, context):
            return canned

        async def main() -> None:
            server = grpc.aio.server(options=options)
            server.add_generic_rpc_handlers(
                [grpc.method_handlers_generic_handler("tierwise.v1.Router", handlers(predict_async))]
            )
            announce(server.add_insecure_port(address))
            await server.start()
            await server.wait_for_termination()

        asyncio.run(main())
    else:
        from concurrent import futures

        server = grpc.server(futures.ThreadPoolExecutor(threads), options=options)
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("tierwise.v1.Router", handlers(lambda request, context: canned))]
        )
        announce(server.add_insecure_port(address))
        server.start()
        server.wait_for_termination()


def parse_variant(variant: str) -> tuple[str, int, int]:
    """(server mode, threads, worker processes) of `sync:THREADS[xWORKERS]` or `aio[xWORKERS]`."""
    kind, _, workers = variant.partition("x")
    mode, _, threads = kind.partition(":")
    if mode not in ("sync", "aio") or not (threads or "0").isdigit() or not (workers or "1").isdigit():
        raise SystemExit(f"unknown server variant {variant!r}; use sync:THREADS or aio, optionally xWORKERS")
    return mode, int(threads or DEFAULT_THREADS), int(workers or 1)


def serve_args(variant: str, model: Path) -> list[str]:
    mode, threads, workers = parse_variant(variant)
    return [
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--metrics-port",
        "0",
        "--server-mode",
        mode,
        "--threads",
        str(threads),
        "--workers",
        str(workers),
    ]


@contextlib.contextmanager
def trivial_servers(variant: str) -> Iterator[ServerProcess]:
    """The variant's trivial-handler baseline: one process per worker, sharing a port; yields the first."""
    workers = parse_variant(variant)[2]
    port = reserve_port("127.0.0.1", 0) if workers > 1 else 0
    program = (sys.executable, str(Path(__file__).resolve()), "--serve-trivial", variant, "--trivial-port", str(port))
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(ServerProcess([], program=program)) for _ in range(workers)]
        yield servers[0]


# --- report -----------------------------------------------------------------------------------------------


def row(variant: str, result: LoadResult, baseline: LoadResult) -> str:
    server = [u for u in result.server_us if u > 0]
    return (
        f"| {variant:8} | {result.label:34} | {percentile(result.client_us, 0.5):7.0f} "
        f"| {percentile(result.client_us, 0.99):7.0f} | {result.rate:8.0f} "
        f"| {percentile(server, 0.5):6.0f} | {percentile(server, 0.99):6.0f} "
        f"| {percentile(baseline.client_us, 0.5):7.0f} | {baseline.rate:8.0f} | {result.rate / baseline.rate:5.2f} |"
    )


HEADER = (
    "| server   | load                               | p50 us  | p99 us  | req/s    "
    "| inf50  | inf99  | base50  | base/s   | ratio |\n"
    "|----------|------------------------------------|---------|---------|----------"
    "|--------|--------|---------|----------|-------|"
)


def target_checks(
    variant: str, pairs: list[tuple[LoadResult, LoadResult]], clients: int
) -> list[tuple[str, float, str, bool]]:
    """The issues' targets against what a variant measured: issue 4's absolute figures, and issue 17's
    ratios to the trivial server of the same variant (sequential p50 of a single process, throughput of two
    worker processes under `clients` clients)."""
    by_label = {result.label: (result, baseline) for result, baseline in pairs}
    checks = []
    for size in SIZES:
        server_us = by_label[f"sequential {size}"][0].server_us
        p50, p99 = percentile(server_us, 0.5), percentile(server_us, 0.99)
        checks += [
            (f"server-side Predict p50 us, {size}", p50, "<= 150", p50 <= 150),
            (f"server-side Predict p99 us, {size}", p99, "<= 1000", p99 <= 1000),
        ]
    client_p50 = percentile(by_label["sequential short"][0].client_us, 0.5)
    loaded, loaded_baseline = by_label[f"{clients} clients short"]
    ratio = loaded.rate / loaded_baseline.rate
    checks += [
        ("client p50 us, short prompts", client_p50, "< 1000", client_p50 < 1000),
        (f"Predict/s with {clients} clients, short", loaded.rate, ">= 3000", loaded.rate >= 3000),
        ("throughput / trivial baseline, same load", ratio, ">= 0.6", ratio >= 0.6),
    ]
    workers = parse_variant(variant)[2]
    if workers == 1:
        floor = by_label["sequential short"][1]
        over = client_p50 / percentile(floor.client_us, 0.5)
        checks.append(("sequential p50 / trivial floor, short (issue 17)", over, "<= 1.5", over <= 1.5))
    if workers == 2 and clients == 8:
        checks.append((f"throughput / trivial, {clients} clients, 2 workers (issue 17)", ratio, ">= 0.7", ratio >= 0.7))
    return checks


def pin(cpus: set[int]) -> None:
    os.sched_setaffinity(0, cpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="bundle directory (default: train one on sample logs)")
    parser.add_argument(
        "--variants",
        default="aio,sync:4,sync:4x2,aiox2",
        help="comma-separated server variants, sync:THREADS or aio (the first also gets the shared-connection load)",
    )
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per prompt size")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per concurrent load and server")
    parser.add_argument("--rounds", type=int, default=3, help="alternations between the server and its baseline")
    parser.add_argument(
        "--pin", action="store_true", help="run the clients on the first CPU and the servers on the others"
    )
    parser.add_argument("--serve-trivial", metavar="VARIANT", help=argparse.SUPPRESS)
    parser.add_argument("--trivial-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_trivial:
        serve_trivial(args.serve_trivial, args.trivial_port)
        return 0

    prompts = load_prompts(per_size=200)
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print("prompts:", ", ".join(f"{k} ~{statistics.mean(map(len, v)):.0f} chars" for k, v in prompts.items()))
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    cpus = sorted(os.sched_getaffinity(0))
    client_cpus, server_cpus = ({cpus[0]}, set(cpus[1:])) if args.pin and len(cpus) > 1 else (set(cpus), set(cpus))
    print(f"CPUs: client {sorted(client_cpus)}, servers {sorted(server_cpus)}")
    measured: dict[str, list[tuple[LoadResult, LoadResult]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_bundle(Path(tmp))
        for k, variant in enumerate(variants):
            pin(server_cpus)  # children inherit the CPU mask they are started with
            with ServerProcess(serve_args(variant, model)) as server, trivial_servers(variant) as baseline:
                pin(client_cpus)
                measured[variant] = [
                    tuple(interleaved(load, (server.target, baseline.target), args.rounds))
                    for load in loads(prompts, args, with_shared=k == 0)
                ]
            print(f"measured {variant}", file=sys.stderr)
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    default = "aio" if default_server_mode(1) == "aio" else f"sync:{DEFAULT_THREADS}"
    print("\nClient-observed latency (p50/p99 us) and throughput; server-side inference time (inf50/inf99 us, as")
    print("the responses report it); the trivial-handler server of the same variant (base50 us, base/s); ratio =")
    print(f"req/s / base/s. Default variant: {default}.\n")
    print(HEADER)
    for variant, pairs in measured.items():
        print("\n".join(row(variant, result, baseline) for result, baseline in pairs))
    for variant, pairs in measured.items():
        note = " (the default of `tierwise serve`)" if variant == default else ""
        print(f"\nTargets, {variant}{note}:")
        for name, value, limit, ok in target_checks(variant, pairs, args.clients):
            print(f"  {'PASS' if ok else 'FAIL'}  {name}: {value:.2f} (target {limit})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
