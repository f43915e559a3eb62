"""`tierwise serve --model models:/NAME@champion` follows the alias: a move hot-reloads under load, no failed call.
`tierwise proxy --model models:/NAME@champion` (the router inside the proxy) follows it the same way."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from tierwise.registry.models import Registry
from tierwise.serving.process import ServerProcess
from tierwise.serving.standin import StandIn
from tierwise.training.data.sample_logs import write_sample_logs
from tierwise.training.tracking.promotion import register_trained

from tests.helpers import PROXY, run_serve, train_files
from tests.test_grpc_reload import Hammer, serve_args, wait_for

NAME = "serving-test"
API_KEY = "sk-ant-registry-proxy-test"


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


class ProxyLoad:
    """A client sending routed requests to a proxy in a loop, keeping every answer that was not a 200."""

    def __init__(self, proxy: ServerProcess):
        self.failures: list[str] = []
        self._url = f"http://127.0.0.1:{proxy.port}/v1/messages"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> ProxyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        body = {"model": "tierwise", "max_tokens": 50, "messages": [{"role": "user", "content": "Say hi."}]}
        headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
        with httpx.Client(headers=headers, timeout=30) as client:
            while not self._stop.is_set():
                answer = client.post(self._url, json=body)
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code}: {answer.text[:200]}")


def versions_logged(log: Path) -> Counter[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(json.loads(line)["model_version"] for line in lines if line.endswith("}"))


def test_the_proxy_with_the_router_inside_follows_the_champion_alias_without_a_failed_request(
    versions, mlflow_store, tmp_path
):
    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    client.set_registered_model_alias(NAME, "champion", "1")
    old, new = versions
    log = tmp_path / "decisions.jsonl"
    router = [
        "--model",
        f"models:/{NAME}@champion",
        "--reload-interval",
        "0.2",
        "--no-metrics",
        "--decision-log",
        str(log),
    ]
    with StandIn(api_key=API_KEY) as fake:
        args = [*router, "--listen", "127.0.0.1:0", "--upstream", fake.url]
        with ServerProcess(args, program=PROXY) as proxy, ProxyLoad(proxy) as load:
            wait_for(lambda: versions_logged(log)[old] > 20)
            client.set_registered_model_alias(NAME, "champion", "2")
            wait_for(lambda: versions_logged(log)[new] > 20)
    assert load.failures == []
    assert f"model {old} from models:/{NAME}@champion" in proxy.ready_line
    assert f"serving model {new}" in proxy.log
