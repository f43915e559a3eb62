"""Small builders the tests share: hand-made attempt logs in every supported format, and server runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl
from click.testing import CliRunner
from tierwise.classifier.tiers import TierLadder
from tierwise.serving.process import SERVE, ServerProcess
from tierwise.training.data.labels import Labels, label_requests
from tierwise.training.data.logs import AttemptLog, read_attempts
from tierwise.training.data.sample_logs import write_sample_logs
from tierwise.training.fit.train import TrainOptions, TrainResult, train_bundle

from tierwise.cli import main

PROXY = (sys.executable, "-m", "tierwise", "proxy")  # `tierwise proxy` as a child process of the tests


def start_proxy(router: str, upstream: str, *args: str) -> ServerProcess:
    """`tierwise proxy` asking the router at `router`, in front of `upstream`, on a free loopback port."""
    return ServerProcess(["--router", router, "--listen", "127.0.0.1:0", "--upstream", upstream, *args], program=PROXY)


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_rows(rows: list[dict], path: Path) -> Path:
    """Write attempt rows to `path` in the format its extension names."""
    frame = pl.DataFrame(rows)
    if path.suffix == ".jsonl":
        frame.write_ndjson(path)
    elif path.suffix == ".csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    return path


def run_serve(args: Sequence[str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `tierwise serve` until it exits, capturing its output: for starts that must fail."""
    return subprocess.run([*SERVE, *args], capture_output=True, text=True, timeout=timeout_s)


@contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port something already listens on, for as long as the block runs."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def closed_port() -> int:
    """A loopback port nothing listens on (a server that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def shuffled_labels(logs: Path, out: Path, seed: int = 0) -> Path:
    """The same logs with prompts permuted across the training requests: labels no longer follow the text.

    Test-split requests are untouched, so champion and challenger are still judged on true outcomes.
    """
    frame = pl.read_ndjson(logs)
    train = frame.filter(pl.col("split") == "train").unique("request_id", keep="first").sort("request_id")
    order = np.random.default_rng(seed).permutation(train.height)
    moved = pl.DataFrame({"request_id": train["request_id"], "moved": train["prompt"].to_numpy()[order]})
    frame = frame.join(moved, on="request_id", how="left")
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.with_columns(pl.coalesce("moved", "prompt").alias("prompt")).drop("moved").write_ndjson(out)
    return out


def gated_retrains(work: Path, name: str, tracking_uri: str) -> dict[str, str]:
    """`tierwise retrain NAME` three times on 1,500 sample requests (the README's retrain example is the second), each
    one's output: "first" on shuffled labels (an empty registry: champion), "better" on the last 20 days of the true
    logs (promoted), "worse" on the shuffled labels again (kept as challenger).

    The logs leave out the support-triage workload: its requests share one long system prompt, so a router trained
    on shuffled labels moves them all up or down together and is provably below the static mix, which the
    fitness rule refuses as a first champion (`test_a_version_provably_below_the_static_mix_is_not_made_champion`).
    """

    def retrain(*args: str) -> str:
        result = CliRunner().invoke(main, ["retrain", name, *args, "--tracking-uri", tracking_uri])
        assert result.exit_code == 0, result.output
        return result.output

    generated = pl.read_ndjson(write_sample_logs(work / "generated", 1500, seed=11))
    true_logs = work / "true" / "attempts.jsonl"
    true_logs.parent.mkdir(parents=True)
    generated.filter(pl.col("workload") != "support-triage").write_ndjson(true_logs)
    noise = shuffled_labels(true_logs, work / "shuffled" / "attempts.jsonl")
    return {
        "first": retrain(str(noise)),
        "better": retrain(str(true_logs), "--window", "20"),
        "worse": retrain(str(noise)),
    }


def label_files(
    paths: Sequence[str | Path], tiers: str | Path | None = None, **read: object
) -> tuple[AttemptLog, Labels]:
    """Read attempt log files and label them with a ladder file (default: the shipped Claude ladder)."""
    log = read_attempts(paths, **read)
    return log, label_requests(log, TierLadder.load(tiers))


def train_files(paths: Sequence[str | Path], out: Path, **options: object) -> TrainResult:
    """Train a bundle on attempt log files with the shipped ladder and these TrainOptions."""
    return train_bundle(read_attempts(paths), out, TierLadder.load(), TrainOptions(**options))


@contextmanager
def running_mlflow_server(work: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with a SQLite backend and proxied artifacts; yields its URI."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        *(sys.executable, "-m", "mlflow", "server"),
        *("--backend-store-uri", f"sqlite:///{work / 'server.db'}"),
        *("--artifacts-destination", str(work / "artifacts")),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.3)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def logged_rows(path: Path, request_ids: Sequence[str], timeout_s: float = 15.0) -> list[dict]:
    """A JSONL log's rows for these request_ids, once each has as many rows as it is listed (the server writes
    its decision and outcome logs off the request path)."""
    wanted = Counter(request_ids)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        rows = [row for line in lines if line.strip() and (row := json.loads(line))["request_id"] in wanted]
        if Counter(row["request_id"] for row in rows) >= wanted:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"{path} never held rows {dict(wanted)}")
