"""Hot reload: a new bundle replaces the old under load without a failed call; a bad one is refused."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
from tierwise.classifier.router import Router
from tierwise.registry.sources import DirectorySource
from tierwise.serving.process import ServerProcess
from tierwise.serving.reload import ModelHolder, ReloadResult
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

from tests.helpers import run_serve


def corrupt(bundle: Path) -> None:
    """Change a file the manifest's checksums cover, the way a half-finished copy would."""
    victim = max(
        (p for p in bundle.iterdir() if p.is_file() and p.name != "manifest.json"), key=lambda p: p.stat().st_size
    )
    with victim.open("r+b") as handle:
        handle.seek(victim.stat().st_size // 2)
        handle.write(b"\x00corrupt\x00")


def serve_args(model: Path, *extra: str) -> list[str]:
    return ["--model", str(model), "--host", "127.0.0.1", "--port", "0", "--no-metrics", *extra]


class Hammer:
    """Client threads calling Predict in a loop, counting the versions that answered and every failure."""

    def __init__(self, target: str, threads: int = 4):
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self._latest: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(target, i)) for i in range(threads)]

    def __enter__(self) -> Hammer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def latest_version(self) -> str | None:
        with self._lock:
            return self._latest

    def _run(self, target: str, k: int) -> None:
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            stub = pb_grpc.RouterStub(channel)
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    if i % 10 == 0:
                        batch = pb.PredictBatchRequest(
                            requests=[pb.PredictRequest(prompt=f"q{k} {i} {j}") for j in range(16)]
                        )
                        version = stub.PredictBatch(batch, timeout=10).model_version
                    else:
                        version = stub.Predict(pb.PredictRequest(prompt=f"question {k} {i}"), timeout=10).model_version
                except grpc.RpcError as exc:
                    with self._lock:
                        self.failures.append(f"{exc.code().name}: {exc.details()}")
                    continue
                with self._lock:
                    self.versions[version] += 1
                    self._latest = version


def wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_bundle_change_reloads_under_load_without_a_failed_call(tmp_path, trained_bundle, other_bundle):
    old, new = Router.load(trained_bundle).version, Router.load(other_bundle).version
    live = tmp_path / "live"
    live.symlink_to(trained_bundle)
    with ServerProcess(serve_args(live, "--reload-interval", "0.2")) as server, Hammer(server.target) as hammer:
        wait_for(lambda: hammer.versions[old] > 50)
        swap = tmp_path / "live.new"
        swap.symlink_to(other_bundle)
        swap.replace(live)  # atomic repoint, the way a deploy script switches bundles
        wait_for(lambda: hammer.latest_version() == new and hammer.versions[new] > 50)
    assert hammer.failures == []
    assert hammer.versions[old] > 0 and hammer.versions[new] > 0
    assert f"serving model {new}" in server.log


def test_sighup_reloads_under_load_without_a_failed_call(tmp_path, trained_bundle, other_bundle):
    old, new = Router.load(trained_bundle).version, Router.load(other_bundle).version
    live = tmp_path / "live"
    shutil.copytree(trained_bundle, live)
    # Polling off: only SIGHUP may reload, so the new content must not be picked up before it.
    with ServerProcess(serve_args(live, "--reload-interval", "0")) as server, Hammer(server.target) as hammer:
        wait_for(lambda: hammer.versions[old] > 50)
        staged = tmp_path / "staged"
        shutil.copytree(other_bundle, staged)
        shutil.rmtree(live)
        staged.rename(live)
        time.sleep(0.5)
        assert hammer.latest_version() == old
        server.send(signal.SIGHUP)
        wait_for(lambda: hammer.latest_version() == new and hammer.versions[new] > 50)
    assert hammer.failures == []


def test_a_corrupt_bundle_is_refused_and_the_old_model_keeps_serving(tmp_path, trained_bundle, other_bundle):
    old = Router.load(trained_bundle).version
    live = tmp_path / "live"
    shutil.copytree(trained_bundle, live)
    with ServerProcess(serve_args(live, "--reload-interval", "0.2")) as server, Hammer(server.target) as hammer:
        wait_for(lambda: hammer.versions[old] > 20)
        corrupt(live)
        server.wait_for_log(r"refused bundle .*; still serving model " + old)
        server.send(signal.SIGHUP)  # a forced reload of the same bad content is refused too
        wait_for(lambda: server.log.count("refused bundle") >= 2)
        served_before = hammer.versions[old]
        wait_for(lambda: hammer.versions[old] > served_before + 50)
        assert set(hammer.versions) == {old}
        shutil.rmtree(live)
        shutil.copytree(other_bundle, live)
        new = Router.load(other_bundle).version
        wait_for(lambda: hammer.latest_version() == new)
    assert hammer.failures == []


def test_serve_refuses_to_start_on_a_corrupt_bundle(tmp_path, trained_bundle):
    bad = tmp_path / "bad"
    shutil.copytree(trained_bundle, bad)
    corrupt(bad)
    result = run_serve(serve_args(bad))
    assert result.returncode == 2
    assert "cannot serve" in result.stderr and str(bad) in result.stderr


def test_holder_keeps_the_old_model_when_a_reload_fails(tmp_path, trained_bundle):
    live = tmp_path / "live"
    shutil.copytree(trained_bundle, live)
    holder = ModelHolder(DirectorySource(live))
    assert holder.refresh() is ReloadResult.LOADED
    serving = holder.current
    assert holder.refresh() is ReloadResult.UNCHANGED
    corrupt(live)
    assert holder.refresh() is ReloadResult.REFUSED
    assert holder.refresh() is ReloadResult.UNCHANGED  # the same bad content is not retried on every poll
    assert holder.refresh(force=True) is ReloadResult.REFUSED
    assert holder.current is serving
