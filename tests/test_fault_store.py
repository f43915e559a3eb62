"""The tracking store under concurrent and killed commands: a new SQLite store opened by several processes at
once, two registrations claiming `champion` at once (SQLite and an MLflow server), and runs of killed commands.
"""

from __future__ import annotations

import multiprocessing
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from tierwise.registry.locks import StoreLockError, registry_lock
from tierwise.registry.models import CHALLENGER, CHAMPION, Registry
from tierwise.training.data.sample_logs import write_sample_logs
from tierwise.training.tracking.run_owner import ENDED_BY, KILLED, OWNER_HOST, OWNER_PID, end_orphaned_runs, owner_tags

from tests.claimant import claim_at_once
from tests.helpers import running_mlflow_server
from tierwise.cli import main

ROOT = Path(__file__).resolve().parents[1]
TIERWISE = (sys.executable, "-m", "tierwise")
NAME = "router"
REGISTERED = re.compile(rf"registered {NAME} version (\d+) as (\w+)")
ROUNDS = 3  # each round is a new store met by two commands at once; three keep the suite inside its time
CONCURRENT = 2  # the case: two commands on a new store at once
CLAIMANTS = 4


@pytest.fixture(scope="module")
def small_logs(tmp_path_factory) -> Path:
    return write_sample_logs(tmp_path_factory.mktemp("fault-logs"), 200, seed=3)


def train_args(logs: Path, out: Path, uri: str, *extra: str) -> list[str]:
    return ["train", str(logs), "--out", str(out), "--tracking-uri", uri, *extra]


def champions(uri: str) -> dict[str, str]:
    """Which version holds each alias of NAME now."""
    aliases = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model(NAME).aliases
    return {alias: str(version) for alias, version in aliases.items()}


@pytest.mark.fault
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_concurrent_registrations_on_a_new_store_never_break_it(small_logs, tmp_path):
    """Each round: two `train --register` processes started together on a new SQLite file, then a third command
    (in this process) reads the store."""
    for round_number in range(1, ROUNDS + 1):
        work = tmp_path / f"round{round_number}"
        uri = f"sqlite:///{work / 'mlflow.db'}"
        procs = [
            subprocess.Popen(
                [*TIERWISE, *train_args(small_logs, work / f"b{k}", uri, "--register", NAME)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for k in range(CONCURRENT)
        ]
        outputs = [proc.communicate(timeout=300)[0] for proc in procs]
        for proc, output in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, f"round {round_number}: {output}"
        printed = dict(REGISTERED.search(output).groups() for output in outputs)
        assert sorted(printed, key=int) == [str(v) for v in range(1, CONCURRENT + 1)]
        assert list(printed.values()).count(CHAMPION) == 1, printed
        held = champions(uri)
        assert printed[held[CHAMPION]] == CHAMPION
        assert printed[held[CHALLENGER]] == CHALLENGER
        after = CliRunner().invoke(main, ["compare", NAME, "--tracking-uri", uri])
        assert after.exit_code == 0, after.output
        assert re.search(r"version\s+v1\s+v2\s*$", after.output, re.MULTILINE), after.output


def versions_to_claim(uri: str, count: int) -> list[str]:
    """A registered model with `count` versions and no alias yet."""
    client = Registry(uri, create=True).client
    client.create_registered_model(NAME)
    experiment = client.create_experiment("claims")
    run = client.create_run(experiment).info.run_id
    return [str(client.create_model_version(NAME, f"runs:/{run}/model", run_id=run).version) for _ in range(count)]


def claim_concurrently(uri: str) -> None:
    """CLAIMANTS processes claim champion for their own version at the same instant: exactly one wins."""
    versions = versions_to_claim(uri, CLAIMANTS)
    context = multiprocessing.get_context("spawn")
    barrier, answers = context.Barrier(CLAIMANTS), context.Queue()
    procs = [context.Process(target=claim_at_once, args=(uri, NAME, v, barrier, answers)) for v in versions]
    for proc in procs:
        proc.start()
    got = dict(answers.get(timeout=180) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert sorted(got.values()) == sorted([CHAMPION] + [CHALLENGER] * (CLAIMANTS - 1)), got
    held = champions(uri)
    assert got[held[CHAMPION]] == CHAMPION
    assert got[held[CHALLENGER]] == CHALLENGER


@pytest.mark.fault
def test_claims_at_the_same_instant_give_one_champion_on_sqlite(tmp_path):
    claim_concurrently(f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (its own SQLite backend), as several hosts would share one."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


@pytest.mark.fault
def test_claims_at_the_same_instant_give_one_champion_on_a_server(mlflow_server):
    claim_concurrently(mlflow_server)


def test_a_dead_holders_registry_lock_expires(tmp_path):
    """The remote-store lock: held while its block runs, and a lock left by a dead holder is taken over."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = Registry(uri, create=True).client
    with registry_lock(client, NAME):
        assert client.get_registered_model(f"{NAME}.lock")
        with pytest.raises(StoreLockError, match=rf"{NAME}\.lock"), registry_lock(client, NAME, wait_s=0.5):
            pass
    assert not client.search_registered_models(f"name = '{NAME}.lock'")
    client.create_registered_model(f"{NAME}.lock")  # a holder that died inside its block
    started = time.monotonic()
    with registry_lock(client, NAME, stale_after_s=0.5, wait_s=10):
        waited = time.monotonic() - started
    assert 0.5 <= waited < 5
    assert not client.search_registered_models(f"name = '{NAME}.lock'")


def running_runs(client: MlflowClient) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, "attributes.status = 'RUNNING'") if experiments else []


def test_runs_whose_owner_is_gone_are_ended_and_no_others(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = Registry(uri, create=True)
    client = registry.client
    experiment = client.create_experiment("owners")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = gone.stdout.strip()
    dead = client.create_run(experiment, tags={**owner_tags(), OWNER_PID: dead_pid}).info.run_id
    alive = client.create_run(experiment, tags=owner_tags()).info.run_id
    elsewhere = client.create_run(experiment, tags={OWNER_PID: dead_pid, OWNER_HOST: "another-host"}).info.run_id
    untagged = client.create_run(experiment).info.run_id
    assert end_orphaned_runs(registry) == [dead]
    assert client.get_run(dead).info.status == KILLED
    assert f"process {dead_pid}" in client.get_run(dead).data.tags[ENDED_BY]
    assert {r.info.run_id for r in running_runs(client)} == {alive, elsewhere, untagged}


@pytest.mark.fault
@pytest.mark.timeout(600)
def test_a_killed_train_leaves_no_run_running_after_the_next_command(small_logs, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = Registry(uri, create=True).client
    victim = subprocess.Popen(
        [*TIERWISE, *train_args(small_logs, tmp_path / "killed", uri, "--register", NAME)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (found := running_runs(client)):
        assert victim.poll() is None, "train ended before its run could be caught RUNNING"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    (run,) = found
    assert run.data.tags[OWNER_PID] == str(victim.pid)
    assert client.get_run(run.info.run_id).info.status == "RUNNING"

    after = CliRunner().invoke(main, train_args(small_logs, tmp_path / "next", uri, "--register", NAME))
    assert after.exit_code == 0, after.output
    assert f"marked 1 run(s) of killed commands KILLED: {run.info.run_id}" in after.output
    assert client.get_run(run.info.run_id).info.status == KILLED
    assert running_runs(client) == []
