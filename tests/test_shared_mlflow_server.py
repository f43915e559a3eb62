"""The scale-out topology: one `mlflow server` shared over HTTP (SQLite backend, proxied artifacts), training
commands against it, and two stateless `tierwise serve` replicas on `models:/NAME@champion` that both move to
the new version when the alias moves, with no failed call while clients keep calling."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from tierwise.classifier.router import Router
from tierwise.serving.process import ServerProcess
from tierwise.training.data.sample_logs import write_sample_logs

from tests.helpers import running_mlflow_server
from tests.test_grpc_reload import Hammer, wait_for
from tierwise.cli import main

NAME = "shared"
pytestmark = pytest.mark.slow  # a real `mlflow server`, three training commands, two replicas


@pytest.fixture(scope="module")
def server_uri(tmp_path_factory) -> Iterator[str]:
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


def tierwise(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def versions(server_uri, tmp_path_factory) -> dict[str, str]:
    """`train --register` then `retrain` over HTTP: the bundle version of v1 and v2, and what each printed."""
    work = tmp_path_factory.mktemp("shared-work")
    first = write_sample_logs(work / "first", 400, seed=41)
    second = write_sample_logs(work / "second", 600, seed=42)
    trained = tierwise("train", str(first), "--out", str(work / "v1"), "--register", NAME, "--tracking-uri", server_uri)
    retrained = tierwise("retrain", NAME, str(second), "--out", str(work / "v2"), "--tracking-uri", server_uri)
    return {
        "1": Router.load(work / "v1").version,
        "2": Router.load(work / "v2").version,
        "trained": trained,
        "retrained": retrained,
        "second_logs": str(second),
    }


def test_train_retrain_and_compare_work_against_a_shared_server(versions, server_uri):
    assert f"registered {NAME} version 1 as champion" in versions["trained"]
    assert re.search(r"decision: v2 (PROMOTED to champion|kept as challenger)", versions["retrained"])
    compared = tierwise("compare", NAME, "--logs", versions["second_logs"], "--tracking-uri", server_uri)
    assert re.search(r"^version\s+v1\s+v2$", compared, re.MULTILINE)


def replica(server_uri: str) -> ServerProcess:
    args = ["--model", f"models:/{NAME}@champion", "--tracking-uri", server_uri, "--port", "0", "--no-metrics"]
    return ServerProcess([*args, "--reload-interval", "0.3"], ready_timeout_s=120)


def test_two_replicas_follow_the_champion_alias_with_no_failed_call(versions, server_uri, tmp_path: Path):
    tierwise("promote", NAME, "1", "--tracking-uri", server_uri)
    old, new = versions["1"], versions["2"]
    with (
        replica(server_uri) as first,
        replica(server_uri) as second,
        Hammer(first.target, threads=2) as one,
        Hammer(second.target, threads=2) as two,
    ):
        wait_for(lambda: one.versions[old] > 20 and two.versions[old] > 20, timeout_s=60)
        tierwise("promote", NAME, "2", "--tracking-uri", server_uri)
        wait_for(lambda: one.latest_version() == new and two.latest_version() == new, timeout_s=60)
        wait_for(lambda: one.versions[new] > 20 and two.versions[new] > 20, timeout_s=60)
    assert one.failures == [] and two.failures == []
    for server in (first, second):
        assert f"serving model {new}" in server.log
