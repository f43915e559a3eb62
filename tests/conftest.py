"""Fixtures shared across the suite: small generated logs and trained bundles, made once per run and shared by
the xdist workers; each worker has its own MLflow store. Files holding a long test start first."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock
from tierwise.registry.store import prepare_store
from tierwise.training.data.sample_logs import write_sample_logs

from tests.helpers import train_files
from tests.image_build import BuiltEnv, read_stages, run_build_stage

SAMPLE_REQUESTS = 600
# A parallel run (pyproject.toml's addopts) hands out whole files in collection order: files holding a test with
# one of these marks go first, in this order, so no long test is left to run alone at the end.
LONG_FIRST = ("slow", "spark", "slow_install")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the files that hold long tests to the front, keeping each file's tests together and in order."""
    rank: dict[Path, int] = {}
    for item in items:
        marks = {mark.name for mark in item.iter_markers()}
        found = [LONG_FIRST.index(name) for name in marks if name in LONG_FIRST]
        rank[item.path] = min([rank.get(item.path, len(LONG_FIRST)), *found])
    items.sort(key=lambda item: rank[item.path])


def made_once(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], Path]) -> Path:
    """What `make(folder)` returns (a path inside folder), made once per test run: the first xdist worker to ask
    makes it under a file lock in the run's temporary root, the others reuse it. Treat it as read-only."""
    root = factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    folder, made = root / name, root / f"{name}.made"
    with FileLock(root / f"{name}.lock"):
        if not made.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed to make it
            folder.mkdir()
            made.write_text(str(make(folder).relative_to(folder)))
        return folder / made.read_text()


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Every MLflow run of the suite (each `tierwise train` is one) goes to one temporary SQLite store, made here
    (as `tierwise train` would) so a test that only registers or reads finds it whatever ran before."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    prepare_store(uri, create=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri


@pytest.fixture(scope="session")
def sample_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated attempt log (JSONL) with train and test splits, censored and unsolved requests."""
    return made_once(tmp_path_factory, "logs", lambda folder: write_sample_logs(folder, SAMPLE_REQUESTS, seed=7))


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory, sample_logs: Path) -> Path:
    """A static-encoder router bundle trained on `sample_logs`; treat it as read-only (copy it to modify)."""

    def train(folder: Path) -> Path:
        train_files([sample_logs], folder / "bundle", encoder="static")
        return folder / "bundle"

    return made_once(tmp_path_factory, "bundle", train)


@pytest.fixture(scope="session")
def other_bundle(tmp_path_factory: pytest.TempPathFactory, trained_bundle: Path) -> Path:
    """A second bundle trained on different logs, so it carries a different version (for reload tests)."""
    from tierwise.classifier.router import Router

    def train(work: Path) -> Path:
        logs = write_sample_logs(work / "logs", 300, seed=7)
        train_files([logs], work / "bundle", encoder="static")
        return work / "bundle"

    out = made_once(tmp_path_factory, "other-bundle", train)
    assert Router.load(out).version != Router.load(trained_bundle).version
    return out


@pytest.fixture(scope="session")
def untimed_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle with no time model: logs without latency_ms and a ladder without speed figures."""
    from tierwise.classifier.tiers import Tier, TierLadder
    from tierwise.training.data.logs import read_attempts
    from tierwise.training.data.sample_logs import generate_attempts
    from tierwise.training.fit.train import TrainOptions, train_bundle

    def train(work: Path) -> Path:
        logs = work / "attempts.jsonl"
        generate_attempts(300, seed=5).drop("latency_ms", "ttft_ms").write_ndjson(logs)
        ladder = TierLadder(
            tuple(Tier(t.name, t.models, t.input_usd_per_mtok, t.output_usd_per_mtok) for t in TierLadder.load().tiers)
        )
        train_bundle(read_attempts([logs]), work / "bundle", ladder, TrainOptions(encoder="static"))
        return work / "bundle"

    return made_once(tmp_path_factory, "untimed", train)


@pytest.fixture(scope="session")
def serving_image_env(tmp_path_factory: pytest.TempPathFactory) -> BuiltEnv:
    """The serving image's environment: deploy/Dockerfile's build stage run here (a real pip install: minutes)."""

    def build(scratch: Path) -> Path:
        built = run_build_stage(read_stages()[0], scratch)
        (scratch / "build.log").write_text(built.build_log)
        return built.venv

    venv = made_once(tmp_path_factory, "serving-image", build)
    return BuiltEnv(venv, (venv.parent / "build.log").read_text())
