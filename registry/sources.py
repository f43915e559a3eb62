"""Where the served model bundle comes from, and how the server notices that it changed.

A `ModelSource` answers one question cheaply and often: which bundle directory should be serving now, and
a token that changes whenever that bundle's content does. The server polls it and hot-reloads on a new
token. A bundle directory on disk is the source here; a registry alias (`models:/NAME@ALIAS`) is another.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tierwise.classifier.errors import InputError

if TYPE_CHECKING:
    from tierwise.registry.models import ModelRef, Registry

MODEL_URI_PREFIX = "models:/"


class SourceError(InputError):
    """The model source cannot be resolved (missing path, unknown scheme, unreachable registry)."""


@dataclass(frozen=True)
class BundleRef:
    """A bundle directory to load, and the change token of its content at the time it was resolved."""

    path: Path
    token: str


class ModelSource(Protocol):
    """Resolves to the bundle that should be serving now; called at startup and on every reload poll."""

    def describe(self) -> str:
        """Human-readable origin of the model, for logs and GetModelInfo."""
        ...

    def resolve(self) -> BundleRef:
        """The current bundle; raises SourceError when there is none to be had."""
        ...


class DirectorySource:
    """A bundle directory on disk; its token covers every file's name, size and modification time.

    The path may be a symlink that a deploy script repoints at a new bundle: it is resolved on each poll.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def describe(self) -> str:
        return str(self.path)

    def resolve(self) -> BundleRef:
        real = self.path.resolve()
        if not real.is_dir():
            raise SourceError(f"model bundle {self.path} is not a directory")
        digest = hashlib.sha256(str(real).encode())
        for file in sorted(p for p in real.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"\0{file.relative_to(real)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
        return BundleRef(real, digest.hexdigest()[:16])


class RegistrySource:
    """A registered version, followed through its alias: the change token is the version the alias points at.

    The server polls it; when the alias moves, the new version's bundle is fetched and goes through the
    same verify-then-swap reload as a bundle directory.
    """

    def __init__(self, ref: ModelRef, registry: Registry):
        self.ref = ref
        self.registry = registry

    def describe(self) -> str:
        return str(self.ref)

    def resolve(self) -> BundleRef:
        found = self.registry.version(self.ref)
        return BundleRef(self.registry.bundle_dir(found), f"{found.name}/{found.version}:{found.source}")


def open_model_source(spec: str, tracking_uri: str | None = None) -> ModelSource:
    """The source behind a `--model` argument: a bundle directory, or `models:/NAME@ALIAS` / `models:/NAME/V`.

    The one place a model argument is understood, for `serve`, `predict`, `eval` and the rest. A registry
    source follows its alias: when the alias moves, a server hot-reloads the new version. Registry specs
    need MLflow, which is imported only for them (`tracking_uri` None: $MLFLOW_TRACKING_URI, else ./mlflow.db).
    Reading a model never creates or migrates its store: a missing store, or one with another MLflow's schema,
    is refused here, before anything starts (`tierwise.registry.store`).
    """
    if not spec.startswith(MODEL_URI_PREFIX):
        return DirectorySource(spec)
    from tierwise.registry.models import ModelRef, Registry
    from tierwise.registry.store import prepare_store
    from tierwise.registry.store import tracking_uri as store_uri

    ref, uri = ModelRef.parse(spec), store_uri(tracking_uri)
    prepare_store(uri, create=False)
    return RegistrySource(ref, Registry(uri, create=False))
