"""Which MLflow tracking store and registry to use: a flag, MLFLOW_TRACKING_URI, or the embedded SQLite file.

The embedded default is MLflow's own: `mlflow.db` in the working directory, a real tracking store and model
registry in one SQLite file, no server needed. Artifacts of a SQLite store are kept in `mlruns/` next to
the database file (not next to wherever a command happens to run), so the two travel together.

MLflow sets up (migrates) a SQLite file's schema on first use, and two processes doing that at once break
the file, so every first use of a SQLite store in a process goes through `prepare_store`, which holds the
store's lock (`tierwise.training.tracking.locks`) while MLflow opens it.

Only the command line turns a `--tracking-uri` into a URI (`tracking_uri`); library code receives it inside a
`tierwise.training.tracking.registry.Registry`. MLflow's process-wide URI is set only where its fluent API must
be used (logging a training run), never by reads such as a server's alias poll.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path

from tierwise.training.tracking.locks import refused_as_existing, sqlite_lock

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "tierwise"
SQLITE_PREFIX = "sqlite:///"
ARTIFACTS_DIR = "mlruns"

_prepared: set[str] = set()
_preparing = threading.Lock()


def tracking_uri(explicit: str | None = None) -> str:
    """The store to talk to: `--tracking-uri`, else $MLFLOW_TRACKING_URI, else ./mlflow.db (no server needed).

    A relative SQLite path is made absolute, so the store stays the same if the working directory changes.
    """
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith(SQLITE_PREFIX) and not uri[len(SQLITE_PREFIX) :].startswith("/"):
        uri = SQLITE_PREFIX + os.path.abspath(uri[len(SQLITE_PREFIX) :])
    return uri


def sqlite_file(uri: str) -> Path | None:
    """The database file of a SQLite store URI; None for a server or any other store."""
    return Path(uri[len(SQLITE_PREFIX) :]) if uri.startswith(SQLITE_PREFIX) else None


def prepare_store(uri: str) -> None:
    """Open a SQLite store for the first time in this process under its lock, so its set-up runs once.

    MLflow creates or migrates the schema of a SQLite file when it first opens it; two processes doing that
    at once leave one of them dead and the file possibly unusable. Under the lock the first process sets the
    schema up and every later one finds it complete. Other stores (a server) set themselves up.
    """
    database = sqlite_file(uri)
    if database is None:
        return
    with _preparing:
        if uri in _prepared:
            return
        from mlflow import MlflowClient

        quiet_mlflow()
        database.parent.mkdir(parents=True, exist_ok=True)
        with sqlite_lock(database):
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        _prepared.add(uri)


def quiet_mlflow() -> None:
    """Keep MLflow's and alembic's INFO lines and warnings out of tierwise's output."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")


def activate(uri: str) -> None:
    """Point MLflow's fluent API (start_run, log_model) at one store, for the length of this process.

    MLflow's setters also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI; those are put back as they
    were, so one command's --tracking-uri never becomes the default of the next call in the same process.
    """
    import mlflow

    prepare_store(uri)
    exported = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for name, value in exported.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def use_experiment(name: str, uri: str) -> str:
    """Make `name` the active experiment (creating it, with its artifacts next to a SQLite store); its id.

    Another command may create the same experiment at the same moment; its create then counts as ours.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    found = mlflow.get_experiment_by_name(name)
    if found is None:
        database = sqlite_file(uri)
        location = (database.parent / ARTIFACTS_DIR).resolve().as_uri() if database else None
        try:
            mlflow.create_experiment(name, artifact_location=location)
        except MlflowException as exc:
            if not refused_as_existing(exc):
                raise
    return mlflow.set_experiment(name).experiment_id
