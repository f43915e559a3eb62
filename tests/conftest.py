"""Fixtures shared across the suite: small generated logs and one trained bundle, made once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tierwise.training.sample_logs import write_sample_logs
from tierwise.training.tracking.store import prepare_store

from tests.helpers import train_files
from tests.image_build import BuiltEnv, read_stages, run_build_stage

SAMPLE_REQUESTS = 600


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
    return write_sample_logs(tmp_path_factory.mktemp("logs"), SAMPLE_REQUESTS, seed=7)


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory, sample_logs: Path) -> Path:
    """A static-encoder router bundle trained on `sample_logs`; treat it as read-only (copy it to modify)."""
    out = tmp_path_factory.mktemp("bundle") / "bundle"
    train_files([sample_logs], out, encoder="static")
    return out


@pytest.fixture(scope="session")
def other_bundle(tmp_path_factory: pytest.TempPathFactory, trained_bundle: Path) -> Path:
    """A second bundle trained on different logs, so it carries a different version (for reload tests)."""
    from tierwise.classifier.router import Router

    work = tmp_path_factory.mktemp("other-bundle")
    logs = write_sample_logs(work / "logs", 300, seed=7)
    out = work / "bundle"
    train_files([logs], out, encoder="static")
    assert Router.load(out).version != Router.load(trained_bundle).version
    return out


@pytest.fixture(scope="session")
def untimed_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle with no time model: logs without latency_ms and a ladder without speed figures."""
    from tierwise.classifier.tiers import Tier, TierLadder
    from tierwise.training.logs import read_attempts
    from tierwise.training.sample_logs import generate_attempts
    from tierwise.training.train import TrainOptions, train_bundle

    work = tmp_path_factory.mktemp("untimed")
    logs = work / "attempts.jsonl"
    generate_attempts(300, seed=5).drop("latency_ms", "ttft_ms").write_ndjson(logs)
    ladder = TierLadder(
        tuple(Tier(t.name, t.models, t.input_usd_per_mtok, t.output_usd_per_mtok) for t in TierLadder.load().tiers)
    )
    train_bundle(read_attempts([logs]), work / "bundle", ladder, TrainOptions(encoder="static"))
    return work / "bundle"


@pytest.fixture(scope="session")
def serving_image_env(tmp_path_factory: pytest.TempPathFactory) -> BuiltEnv:
    """The serving image's environment: deploy/Dockerfile's build stage run here (a real pip install: minutes)."""
    return run_build_stage(read_stages()[0], tmp_path_factory.mktemp("serving-image"))
