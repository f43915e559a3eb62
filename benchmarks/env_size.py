"""Environment size by job: what the serving-only install and the [train] install put in a fresh virtual
environment, and which distributions weigh most.

The serving-only environment is the serving image's (deploy/Dockerfile's build stage, run here as the tests
run it: a venv without pip, and the project installed into it with no extra). The training one follows the
README's main job: torch==2.13.0 (the CPU wheel) first, then `.[train]`, in a venv with pip. Sizes are disk
usage as `du` counts it, in MiB.

Run from the repository root (it reuses the tests' image build): python -m benchmarks.env_size [--no-train]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.image_build import ROOT, BuiltEnv, clean_env, read_stages, run_build_stage

GOAL_MIB = 400
TRAINING_LIBRARIES = ("torch", "transformers", "sentence_transformers", "sklearn", "matplotlib")
# Run inside an environment: disk usage of each installed distribution's files, in bytes.
SIZES_BY_DISTRIBUTION = """
import importlib.metadata as md, json, os
sizes = {}
for dist in md.distributions():
    total = 0
    for file in dist.files or []:
        try:
            total += os.lstat(dist.locate_file(file)).st_blocks * 512
        except OSError:
            pass
    sizes[dist.metadata["Name"]] = total
print(json.dumps(sizes))
"""


def training_env(scratch: Path) -> BuiltEnv:
    """A venv with the README's main-job install: torch==2.13.0, then the project with [train]."""
    source = scratch / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build"))
    venv = scratch / "venv"
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "-q", "torch==2.13.0"],
        [str(venv / "bin" / "pip"), "install", "-q", f"{source}[train]"],
    ]
    log = []
    for step in steps:
        done = subprocess.run(step, env=clean_env(), cwd=scratch, capture_output=True, text=True)
        log.append(f"$ {' '.join(step)}\n{done.stdout}{done.stderr}")
        if done.returncode != 0:
            raise SystemExit(f"install failed:\n{log[-1]}")
    return BuiltEnv(venv, "\n".join(log))


def describe(name: str, env: BuiltEnv, seconds: float) -> dict:
    sizes = json.loads(env.run(env.python, "-c", SIZES_BY_DISTRIBUTION).stdout)
    importable = [m for m in TRAINING_LIBRARIES if env.run(env.python, "-c", f"import {m}").returncode == 0]
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:6]
    return {
        "environment": name,
        "MiB": env.size_mib(),
        "distributions": len(sizes),
        "seconds": seconds,
        "training libraries": ", ".join(importable) or "none",
        "largest": ", ".join(f"{dist} {size / (1 << 20):.0f}" for dist, size in largest),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-train", action="store_true", help="measure the serving-only environment alone")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tierwise-env-size-") as scratch:
        started = time.perf_counter()
        serving = run_build_stage(read_stages()[0], Path(scratch) / "serving")
        rows.append(describe("serving image (tierwise, no extra)", serving, time.perf_counter() - started))
        if not args.no_train:
            started = time.perf_counter()
            train = training_env(Path(scratch) / "train")
            rows.append(describe("training (tierwise[train])", train, time.perf_counter() - started))
    print("| environment | MiB | distributions | install s | training libraries importable | largest (MiB) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['environment']} | {row['MiB']:,.0f} | {row['distributions']} | {row['seconds']:.0f} "
            f"| {row['training libraries']} | {row['largest']} |"
        )
    serving_mib = rows[0]["MiB"]
    verdict = "met" if serving_mib < GOAL_MIB else "MISSED"
    print(f"\ngoal: serving-only under {GOAL_MIB} MiB: {verdict} ({serving_mib:.0f} MiB)")


if __name__ == "__main__":
    main()
