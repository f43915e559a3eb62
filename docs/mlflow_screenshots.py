"""Regenerate the screenshots of docs/mlflow.md: a store built from the shared data by tierwise's own commands,
served by a real `mlflow server` on 127.0.0.1, photographed by headless Chromium.

    python docs/mlflow_screenshots.py [--data ../shared/data] [--requests 1500] [--work DIR]

Two disjoint samples of the RouterBench logs (real per-attempt costs, four tiers from mistral-7b to gpt-4) are
written into the work directory (the data stay where they are) as two weeks of logs. v1 is trained on week 1,
v2 on week 1 with the absolute rule, v3 by `tierwise retrain` on both weeks, and `tierwise compare --logs`
scores the three on week 2. Needs Chromium (`apt-get install chromium`) and the `train` extra; a few minutes
on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
from mlflow import MlflowClient
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "mlflow"
DATASET = "routerbench"
MODEL = "routerbench-router"
WINDOW = (1400, 1000)
KEPT = 0.74  # of a page's width: the rest is MLflow's assistant chat, open on a first visit


def sample_weeks(data: Path, requests: int, work: Path) -> tuple[Path, Path]:
    """Two disjoint samples of `requests` requests each (whole requests, every attempt kept)."""
    attempts = pl.read_parquet(data / DATASET / "attempts.parquet")
    ids = attempts.select("request_id").unique().sort("request_id").sample(2 * requests, seed=7, shuffle=True)
    weeks = []
    for k in range(2):
        chosen = ids.slice(k * requests, requests)
        folder = work / f"{DATASET}-week{k + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        attempts.join(chosen, on="request_id").write_parquet(folder / "attempts.parquet")
        weeks.append(folder / "attempts.parquet")
    return weeks[0], weeks[1]


def tierwise(*args: str) -> str:
    """Run a tierwise command as a user would, from the repository root; its output."""
    done = subprocess.run([sys.executable, "-m", "tierwise", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"tierwise {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    print(done.stdout.strip().splitlines()[-1], file=sys.stderr)
    return done.stdout


def build_store(data: Path, requests: int, work: Path) -> str:
    """The store the screenshots show; its URI."""
    week1, week2 = sample_weeks(data, requests, work)
    store = ["--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", "--tiers", str(data / DATASET / "tiers.toml")]
    tierwise("train", str(week1), "--out", str(work / "v1"), "--register", MODEL, *store)
    tierwise(
        "train", str(week1), "--out", str(work / "v2"), "--register", MODEL, "--threshold-rule", "absolute", *store
    )
    tierwise("retrain", MODEL, str(week1), str(week2), *store)
    tierwise("compare", MODEL, "--logs", str(week2), *store)
    return f"sqlite:///{work / 'mlflow.db'}"


@contextmanager
def mlflow_server(store: str) -> Iterator[str]:
    """`mlflow server` over the store on a free port of 127.0.0.1; its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("mlflow server did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def screenshot(url: str, out: Path, size: tuple[int, int] = WINDOW) -> None:
    """One page as headless Chromium renders it once its scripts have run, without the assistant panel, saved
    as a small palette PNG."""
    with tempfile.TemporaryDirectory() as profile:
        raw = Path(profile) / "page.png"
        command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        command += [f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"]
        command += ["--virtual-time-budget=30000", f"--screenshot={raw}", url]
        subprocess.run(command, capture_output=True, timeout=180, check=True)
        image = Image.open(raw).convert("RGB")
        image = image.crop((0, 0, int(image.width * KEPT), image.height))
        image = image.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        image.save(out, optimize=True)
    print(f"{out.name}: {out.stat().st_size // 1024} KB", file=sys.stderr)


def pages(url: str, store: str) -> dict[str, tuple[str, tuple[int, int]]]:
    """File name -> (page URL, window size) of each screenshot docs/mlflow.md shows."""
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    training = client.get_experiment_by_name("tierwise").experiment_id
    comparisons = client.get_experiment_by_name("tierwise-comparisons").experiment_id
    versions = {v.version: v.run_id for v in client.search_model_versions(f"name='{MODEL}'")}
    retrain = client.search_runs([comparisons], "attributes.run_name LIKE 'retrain%'")[0].info.run_id
    compared = urllib.parse.quote(json.dumps({str(k): versions[k] for k in sorted(versions, key=int)}))
    runs = urllib.parse.quote(json.dumps([versions[k] for k in sorted(versions, key=int)]))
    return {
        "versions-compared.png": (f"{url}/#/compare-model-versions?name=%22{MODEL}%22&runs={compared}", (1400, 1400)),
        "model.png": (f"{url}/#/models/{MODEL}", WINDOW),
        "version.png": (f"{url}/#/models/{MODEL}/versions/{max(versions, key=int)}", WINDOW),
        "runs.png": (f"{url}/#/experiments/{training}/runs", (1900, 520)),
        "runs-compared.png": (f"{url}/#/compare-runs?runs={runs}&experiments=%5B%22{training}%22%5D", (1400, 1400)),
        "run.png": (f"{url}/#/experiments/{training}/runs/{versions[max(versions, key=int)]}", (1400, 1300)),
        "retrain-run.png": (f"{url}/#/experiments/{comparisons}/runs/{retrain}", (1400, 1300)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--requests", type=int, default=1500, help="requests in each week's sample")
    parser.add_argument("--work", type=Path, help="where the samples and the store go (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tierwise-screenshots-") as scratch:
        work = (args.work or Path(scratch)).resolve()
        store = build_store(args.data.resolve(), args.requests, work)
        OUT.mkdir(exist_ok=True)
        with mlflow_server(store) as url:
            for name, (page, size) in pages(url, store).items():
                screenshot(page, OUT / name, size)


if __name__ == "__main__":
    main()
