"""Locks that keep a tracking store consistent when several tierwise commands use it at the same time.

- A SQLite store (one host): an exclusive lock on the file `<database>.lock` beside the database. The
  operating system releases it when its holder exits or is killed, so it can never be left held.
- Any other store (an MLflow server, shared by several hosts): the hosts share no file, so the lock is a
  registered model named `<model>.lock`. The server creates a name once and refuses a second create of
  the same name, so one command at a time holds it. A holder that died leaves it behind; a waiter that sees
  the same lock (same creation time) held for `STALE_AFTER_S` on its own clock deletes it and tries again.
  The critical sections are a read and an alias write (milliseconds), so a lock that old is a dead holder's.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tierwise.classifier.errors import InputError

LOCK_WAIT_S = 120.0
STALE_AFTER_S = 30.0
POLL_S = 0.05
LOCK_SUFFIX = ".lock"
ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"


class StoreLockError(InputError):
    """Another command has held a store's lock for longer than a command waits for it."""


def refused_as_existing(exc: Exception) -> bool:
    """Whether an MLflow error is the store refusing to create something that already exists."""
    return getattr(exc, "error_code", None) == ALREADY_EXISTS


@contextmanager
def sqlite_lock(database: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the exclusive lock of a SQLite store (`<database>.lock`) for the block."""
    from filelock import FileLock, Timeout

    path = database.with_name(database.name + LOCK_SUFFIX)
    try:
        with FileLock(str(path), timeout=wait_s):
            yield
    except Timeout as exc:
        raise StoreLockError(f"{path}: held by another command for over {wait_s:g} s") from exc


@contextmanager
def registry_lock(
    client: Any, name: str, stale_after_s: float = STALE_AFTER_S, wait_s: float = LOCK_WAIT_S
) -> Iterator[None]:
    """Hold the lock of registered model `name` in a remote registry (the registered model `<name>.lock`)."""
    from mlflow.exceptions import MlflowException

    lock_name = name + LOCK_SUFFIX
    owner = f"{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + wait_s
    seen: tuple[int, float] | None = None  # (creation time of the lock we wait on, when we first saw it)
    while True:
        try:
            client.create_registered_model(lock_name, tags={"tierwise.lock_owner": owner})
            break
        except MlflowException as exc:
            # An MLflow server can answer a create that met the lock as it was being released with NOT_FOUND (it
            # looks the existing model up to refuse the create): held a moment ago, so it is tried again.
            if not refused_as_existing(exc) and getattr(exc, "error_code", None) != NOT_FOUND:
                raise
        created = _creation_time(client, lock_name)
        now = time.monotonic()
        if created is not None:
            if seen is None or seen[0] != created:
                seen = (created, now)
            elif now - seen[1] >= stale_after_s and _creation_time(client, lock_name) == created:
                _delete(client, lock_name)
                seen = None
                continue
        if now > deadline:
            raise StoreLockError(f"registered model {lock_name!r}: held by another command for over {wait_s:g} s")
        time.sleep(POLL_S)
    try:
        yield
    finally:
        _delete(client, lock_name)


def _creation_time(client: Any, lock_name: str) -> int | None:
    """When the lock now held was created (None if it was released meanwhile)."""
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_registered_model(lock_name).creation_timestamp)
    except MlflowException as exc:
        if getattr(exc, "error_code", None) == NOT_FOUND:
            return None
        raise


def _delete(client: Any, lock_name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_registered_model(lock_name)
    except MlflowException as exc:
        if getattr(exc, "error_code", None) != NOT_FOUND:
            raise
