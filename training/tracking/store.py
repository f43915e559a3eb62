"""Which MLflow tracking store and registry to use: a flag, MLFLOW_TRACKING_URI, or the embedded SQLite file."""

from __future__ import annotations

import logging
import os
import warnings

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "tierwise"


SQLITE_PREFIX = "sqlite:///"


def tracking_uri(explicit: str | None = None) -> str:
    """The store to talk to: `--tracking-uri`, else $MLFLOW_TRACKING_URI, else ./mlflow.db (no server needed).

    A relative SQLite path is made absolute, so the store stays the same if the working directory changes.
    """
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith(SQLITE_PREFIX) and not uri[len(SQLITE_PREFIX) :].startswith("/"):
        uri = SQLITE_PREFIX + os.path.abspath(uri[len(SQLITE_PREFIX) :])
    return uri


def use_store(explicit: str | None = None) -> str:
    """Point MLflow's tracking and registry at one store, quietly, and return its URI."""
    import mlflow

    uri = tracking_uri(explicit)
    for name in ("mlflow", "alembic", "mlflow.store.db.utils", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri
