"""Who may create or migrate a tracking store, and what a store problem is called.

Serving, predicting and scoring open an existing store at this MLflow's schema or refuse it in one line: a
missing SQLite file (no `mlflow.db` appears), a schema of another MLflow release (named with both revisions,
the file left as it was). A model the store does not hold is named with the store. Both installs pin one MLflow
release line.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import mlflow
import pytest
from alembic.script import ScriptDirectory
from packaging.requirements import Requirement
from packaging.version import Version
from tierwise.registry.models import ModelRef, Registry, RegistryError
from tierwise.training.data.sample_logs import write_sample_logs

from tests.helpers import closed_port

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[1]
TIERWISE = (sys.executable, "-m", "tierwise")
MODEL = "models:/router@champion"


def tierwise(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A tierwise command run in `cwd` with no MLFLOW_TRACKING_URI: the default store is `cwd/mlflow.db`."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([*TIERWISE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def schema_of(database: Path) -> str:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def set_schema(database: Path, revision: str) -> None:
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def made_store(tmp_path_factory) -> Path:
    """A SQLite store set up by this MLflow (as `train` would), holding no model."""
    database = tmp_path_factory.mktemp("made") / "mlflow.db"
    Registry(f"sqlite:///{database}", create=True).client.search_registered_models()
    return database


@pytest.fixture
def store(made_store, tmp_path) -> Path:
    """A copy of the made store, for one test to change."""
    database = tmp_path / "store" / "mlflow.db"
    database.parent.mkdir()
    shutil.copyfile(made_store, database)
    return database


def older_revision(head: str) -> str:
    """The schema revision before `head` in MLflow's own migrations (a store of an older release)."""
    migrations = ScriptDirectory(str(Path(mlflow.__file__).parent / "store" / "db_migrations"))
    return migrations.get_revision(head).down_revision


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "--model", MODEL, "--port", "0", "--no-metrics"],
        ["predict", "hello", "--model", MODEL],
        ["score", "LOGS", "--model", MODEL, "--out", "decisions.parquet"],
    ],
    ids=["serve", "predict", "score"],
)
def test_a_missing_store_is_refused_naming_it_and_none_is_created(command, tmp_path):
    logs = write_sample_logs(tmp_path / "logs", 20, seed=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = tierwise(empty, *[str(logs) if arg == "LOGS" else arg for arg in command])
    assert result.returncode == 2, result.stderr
    assert error_lines(result) == [
        f"Error: sqlite:///{empty}/mlflow.db: no MLflow store there; only train, retrain and demo create one "
        "(give --tracking-uri or set MLFLOW_TRACKING_URI to the store that holds the model)"
    ]
    assert list(empty.iterdir()) == []


def test_a_store_of_an_older_mlflow_is_refused_in_one_line_and_not_migrated(store, tmp_path):
    head = schema_of(store)
    older = older_revision(head)
    set_schema(store, older)
    before = digest(store)
    result = tierwise(tmp_path, "predict", "hello", "--model", MODEL, "--tracking-uri", f"sqlite:///{store}")
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert f"sqlite:///{store}: the store's schema is {older}, MLflow {mlflow.__version__} here uses {head}" in line
    assert "no such registered model" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert schema_of(store) == older and digest(store) == before


@pytest.mark.parametrize("command", [["predict", "hello", "--model", MODEL], ["promote", "router", "1"]])
def test_a_store_a_newer_mlflow_migrated_is_refused_in_one_line(command, store, tmp_path):
    head = schema_of(store)
    set_schema(store, "f4a9b2c7d1e6")
    before = digest(store)
    result = tierwise(tmp_path, *command, "--tracking-uri", f"sqlite:///{store}")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"Error: sqlite:///{store}: the store's schema is f4a9b2c7d1e6, MLflow {mlflow.__version__} here uses "
        f"{head}; a newer MLflow migrated it: no older one can use it; upgrade MLflow here to that release"
    ]
    assert digest(store) == before


def test_a_model_the_store_does_not_hold_is_called_so_naming_the_store(store):
    registry = Registry(f"sqlite:///{store}")
    with pytest.raises(RegistryError, match=rf"^{MODEL}: no such registered model, version or alias in sqlite:///"):
        registry.version(ModelRef.parse(MODEL))


def test_an_unreachable_store_is_never_taken_for_an_empty_one(monkeypatch):
    """A first version becomes champion when the model has none: a refused connection must not look like none."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    registry = Registry(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(
        RegistryError, match=r"cannot reach the tracking store http://127\.0\.0\.1:\d+ \(Connection refused\)"
    ):
        registry.alias_version("router", "champion")


def test_both_installs_pin_one_mlflow_release_line_and_it_is_installed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {Requirement(r).name: Requirement(r) for r in project["dependencies"]}["mlflow-skinny"]
    train = {Requirement(r).name: Requirement(r) for r in project["optional-dependencies"]["train"]}["mlflow"]
    assert base.specifier == train.specifier
    bounds = {spec.operator: Version(spec.version) for spec in base.specifier}
    assert set(bounds) == {">=", "<"}
    lower, upper = bounds[">="], bounds["<"]
    assert (upper.major, upper.minor) == (lower.major, lower.minor + 1), "one release line: >=X.Y,<X.Y+1"
    for distribution in ("mlflow-skinny", "mlflow"):
        assert importlib.metadata.version(distribution) in base.specifier
