"""Which MLflow tracking store and registry to use: a flag, MLFLOW_TRACKING_URI, or the embedded SQLite file.

The embedded default is MLflow's own: `mlflow.db` in the working directory, a real tracking store and model
registry in one SQLite file, no server needed. Artifacts of a SQLite store are kept in `mlruns/` next to
the database file (not next to wherever a command happens to run), so the two travel together.

Who may create or migrate a store (the one rule, applied by `prepare_store`): only commands that record
training runs (`train`, `retrain`, `demo`) open a store with `create=True`; MLflow then creates a missing
SQLite file or sets its schema up. Every other use (`serve`, `predict`, `eval`, `score`, `compare`,
`promote`, a `models:/` URI anywhere) opens an existing store whose schema is exactly this MLflow's: a
missing SQLite file is refused naming the tracking URI (no `mlflow.db` appears), and a schema of another
MLflow release is refused in one line naming both revisions, never migrated under an install that shares
the store. A store migrated by a newer MLflow is refused for every command alike: no older client can use it.

MLflow sets up (migrates) a SQLite file's schema on first use, and two processes doing that at once break
the file, so every first use of a SQLite store in a process goes through `prepare_store`, which holds the
store's lock (`tierwise.registry.locks`) while MLflow opens it.

Only the command line turns a `--tracking-uri` into a URI (`tracking_uri`); library code receives it inside a
`tierwise.registry.models.Registry`. MLflow's process-wide URI is set only where its fluent API must
be used (logging a training run), never by reads such as a server's alias poll. A store URI is shown only
through `tierwise.classifier.uris.masked` (its credentials masked).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import warnings
from pathlib import Path

from tierwise.classifier.errors import InputError
from tierwise.classifier.uris import masked, masked_record
from tierwise.registry.locks import refused_as_existing, sqlite_lock

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "tierwise"
# `--tracking-uri`'s help, for every command that takes one (training's and serving's alike).
TRACKING_HELP = (
    "MLflow tracking and registry store, also for models:/ URIs. Default: $MLFLOW_TRACKING_URI, else "
    "sqlite:///mlflow.db here."
)
SQLITE_PREFIX = "sqlite:///"
ARTIFACTS_DIR = "mlruns"
# A command that only reads a tracking server gives up on an unreachable one after this many retries (a few
# seconds), instead of MLflow's default 7 (about four minutes); MLFLOW_HTTP_REQUEST_MAX_RETRIES overrides it.
READ_RETRIES = "1"
RETRIES_VARIABLE = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"

_prepared: set[str] = set()
_preparing = threading.Lock()


class StoreError(InputError):
    """A tracking store this command may not open as it is: missing, or with another MLflow release's schema."""


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


def prepare_store(uri: str, create: bool) -> None:
    """Check a store against the rule of who may create or migrate it (module docstring), then open it once.

    `create`: this command records training runs, so MLflow may create the SQLite file or migrate its schema.
    Without it the store must exist with this MLflow's schema (`StoreError` otherwise, nothing touched), and a
    tracking server is given up on after `READ_RETRIES` unless the environment says otherwise.

    MLflow creates or migrates the schema of a SQLite file when it first opens it; two processes doing that
    at once leave one of them dead and the file possibly unusable. Under the lock the first process sets the
    schema up and every later one finds it complete. Other stores (a server) set themselves up.
    """
    database = sqlite_file(uri)
    if database is None:
        if not create:
            os.environ.setdefault(RETRIES_VARIABLE, READ_RETRIES)
        return
    with _preparing:
        if uri in _prepared:
            return
        from mlflow import MlflowClient

        quiet_mlflow()
        if not create and not database.is_file():
            raise StoreError(
                f"{masked(uri)}: no MLflow store there; only train, retrain and demo create one "
                "(give --tracking-uri or set MLFLOW_TRACKING_URI to the store that holds the model)"
            )
        database.parent.mkdir(parents=True, exist_ok=True)
        with sqlite_lock(database):
            check_schema(uri, database, create)
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        _prepared.add(uri)


def check_schema(uri: str, database: Path, create: bool) -> None:
    """Refuse a SQLite store whose schema revision this command may not use (read with sqlite3, unchanged).

    Any revision but this MLflow's own is refused without `create`; one this MLflow does not know (a newer
    release migrated the store) is refused always. A file without MLflow's tables is MLflow's to set up when
    `create`, else refused.
    """
    found = store_schema(database)
    if found is None and create:
        return
    if found is None:
        raise StoreError(
            f"{masked(uri)}: holds no MLflow store (no schema revision); only train, retrain and demo create one"
        )
    from mlflow.store.db.utils import _get_alembic_config, _get_latest_schema_revision

    head = _get_latest_schema_revision()
    if found == head:
        return
    from alembic.script import ScriptDirectory
    from mlflow.version import VERSION

    known = {script.revision for script in ScriptDirectory.from_config(_get_alembic_config("")).walk_revisions()}
    if found in known and create:
        return
    if found in known:
        advice = (
            "only train, retrain and demo may migrate a store: back it up and run `mlflow db upgrade` on it, "
            "or use the MLflow release it was made with"
        )
    else:
        advice = "a newer MLflow migrated it: no older one can use it; upgrade MLflow here to that release"
    raise StoreError(f"{masked(uri)}: the store's schema is {found}, MLflow {VERSION} here uses {head}; {advice}")


def store_schema(database: Path) -> str | None:
    """The alembic revision a SQLite store's schema is at (its `alembic_version` table); None if it has none."""
    if not database.exists():
        return None
    try:
        with sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True) as connection:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error as exc:
        if "no such table" in str(exc):
            return None
        raise StoreError(f"{database}: cannot be read as an MLflow store ({exc})") from exc
    return row[0] if row else None


def quiet_mlflow() -> None:
    """Keep MLflow's and alembic's INFO lines and warnings out of tierwise's output, and mask any URI's
    credentials in the error lines MLflow still prints through its own handler."""
    for name in ("mlflow", "alembic"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        for handler in logger.handlers:
            if masked_record not in handler.filters:
                handler.addFilter(masked_record)
    warnings.filterwarnings("ignore", module="mlflow")


def activate(uri: str) -> None:
    """Point MLflow's fluent API (start_run, log_model) at one store, for the length of this process.

    The fluent API records runs, so the store may be created or migrated here (`prepare_store`).

    MLflow's setters also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI; those are put back as they
    were, so one command's --tracking-uri never becomes the default of the next call in the same process.
    """
    import mlflow

    prepare_store(uri, create=True)
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
