"""`tierwise serve --model models:/NAME@champion` follows the alias: a move hot-reloads under load, no failed call."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from tierwise.registry.models import Registry
from tierwise.serving.process import ServerProcess
from tierwise.training.data.sample_logs import write_sample_logs
from tierwise.training.tracking.promotion import register_trained

from tests.helpers import run_serve, train_files
from tests.test_grpc_reload import Hammer, serve_args, wait_for

NAME = "serving-test"


@pytest.fixture(scope="module")
def versions(tmp_path_factory, mlflow_store) -> list[str]:
    """Two registered versions (v1 champion, v2 challenger) trained on different logs: their bundle versions."""
    work = tmp_path_factory.mktemp("serving-registry")
    bundle_versions = []
    for seed in (3, 4):
        logs = write_sample_logs(work / f"logs{seed}", 300, seed=seed)
        result = train_files([logs], work / f"bundle{seed}")
        register_trained(result, Registry(mlflow_store), NAME)
        bundle_versions.append(result.router.version)
    assert bundle_versions[0] != bundle_versions[1]
    return bundle_versions


def test_serve_follows_the_champion_alias_under_load_without_a_failed_call(versions, mlflow_store):
    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    old, new = versions
    args = serve_args(f"models:/{NAME}@champion", "--reload-interval", "0.2")
    with ServerProcess(args) as server, Hammer(server.target) as hammer:
        wait_for(lambda: hammer.versions[old] > 50)
        client.set_registered_model_alias(NAME, "champion", "2")
        wait_for(lambda: hammer.latest_version() == new and hammer.versions[new] > 50)
    assert hammer.failures == []
    assert hammer.versions[old] > 0 and hammer.versions[new] > 0
    assert f"serving model {new}" in server.log


def test_serve_refuses_to_start_on_an_alias_that_does_not_exist(versions):
    result = run_serve(serve_args(f"models:/{NAME}@nope"), timeout_s=120)
    assert result.returncode == 2
    assert "cannot serve" in result.stderr and "nope" in result.stderr
