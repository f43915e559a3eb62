"""The model registry: versions, their descriptions, the `champion` / `challenger` aliases, local copies of their
bundles, and the few reads and writes of runs that other modules need.

A `Registry` is bound to one store URI and talks to it through its own MlflowClient, which no other module
touches, so reading it (as a server's alias poll does every few seconds) never touches MLflow's process-wide
settings. Which version holds which alias is decided in `tierwise.training.tracking.promotion`, the only caller of
the alias methods. Alias changes that
depend on what the registry holds (a first version becoming champion, a promotion) are compare-and-sets
under the store's lock (`tierwise.registry.locks`), so two commands at once cannot both act on one reading.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tierwise.classifier.bundle import MANIFEST
from tierwise.classifier.errors import InputError
from tierwise.classifier.outputs import staging_dir
from tierwise.classifier.uris import masked
from tierwise.registry.cache import cache_dir
from tierwise.registry.locks import NOT_FOUND, refused_as_existing, registry_lock, sqlite_lock
from tierwise.registry.store import ARTIFACTS_DIR, prepare_store, quiet_mlflow, sqlite_file

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
BUNDLE_ARTIFACT = "bundle"  # the artifact of a registered version that holds its bundle (router_model.py reads it)
DESCRIPTION = "tierwise router: which LLM tier each request needs"
# How MLflow answers for a registered model or version (RESOURCE_DOES_NOT_EXIST) or an alias (INVALID_PARAMETER_VALUE)
# that does not exist.
ABSENT = (NOT_FOUND, "INVALID_PARAMETER_VALUE")


class RegistryError(InputError):
    """A registered model, version or alias that does not exist or cannot be fetched."""


class NotRegistered(RegistryError):
    """The store answered that a registered model, version or alias does not exist."""


@dataclass(frozen=True)
class ModelRef:
    """A registered model version, reached by alias or by number."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        """`models:/NAME@ALIAS` or `models:/NAME/VERSION`."""
        match = MODEL_URI.match(uri)
        if not match:
            raise RegistryError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
        return cls(match["name"], match["alias"], match["version"])

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


class Registry:
    """The model registry (and tracking store) at one URI.

    `create`: this command records training runs and may create or migrate the store; without it the store must
    exist with this MLflow's schema (`tierwise.registry.store`, where the rule and its users are named).
    """

    def __init__(self, uri: str, create: bool = False):
        self.uri = uri
        self.create = create
        quiet_mlflow()

    def __str__(self) -> str:
        """The store's URI as it may be shown (credentials masked)."""
        return masked(self.uri)

    @cached_property
    def client(self) -> Any:
        """An MlflowClient bound to this store for tracking and registry alike (the store checked or set up first)."""
        from mlflow import MlflowClient

        prepare_store(self.uri, self.create)
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the lock under which the aliases of registered model `name` are read and moved."""
        client = self.client
        database = sqlite_file(self.uri)
        with sqlite_lock(database) if database else registry_lock(client, name):
            yield

    def version(self, ref: ModelRef) -> Any:
        """The registered ModelVersion a reference points at now (an alias is looked up)."""
        from mlflow.exceptions import MlflowException

        try:
            if ref.version:
                return self.client.get_model_version(ref.name, ref.version)
            return self.client.get_model_version_by_alias(ref.name, ref.alias)
        except MlflowException as exc:
            raise self._failure(str(ref), exc) from exc

    def _failure(self, subject: str, exc: Any) -> RegistryError:
        """What went wrong asking the store about `subject`, by its real cause: a name it does not hold, a store it
        cannot reach, or whatever else it answered (credentials masked throughout)."""
        if getattr(exc, "error_code", None) in ABSENT:
            return NotRegistered(f"{subject}: no such registered model, version or alias in {self} ({exc.message})")
        unreachable = _connection_failure(exc)
        if unreachable is not None:
            return RegistryError(f"{subject}: cannot reach the tracking store {self} ({unreachable})")
        return RegistryError(f"{subject}: the tracking store {self} failed: {masked(str(exc.message))}")

    def alias_version(self, name: str, alias: str) -> str | None:
        """The version behind an alias, or None when the model or alias does not exist yet (a store that cannot
        be reached is an error, never taken for an empty one)."""
        try:
            return str(self.version(ModelRef(name, alias=alias)).version)
        except NotRegistered:
            return None

    def aliases_by_version(self, name: str) -> dict[str, list[str]]:
        """Which aliases each version holds."""
        from mlflow.exceptions import MlflowException

        try:
            registered = self.client.get_registered_model(name)
        except MlflowException as exc:
            raise self._failure(f"registered model {name!r}", exc) from exc
        held: dict[str, list[str]] = {}
        for alias, version in registered.aliases.items():
            held.setdefault(str(version), []).append(alias)
        return held

    def versions(self, name: str) -> dict[str, Any]:
        """Every registered version of `name`, by version number."""
        found = {str(v.version): v for v in self.client.search_model_versions(f"name='{name}'")}
        if not found:
            raise RegistryError(f"no registered model named {name!r}")
        return found

    def register(self, name: str, model_uri: str, run_id: str, model_id: str | None, tags: dict[str, str]) -> str:
        """A new version of registered model `name` (created on first use) from a logged model; its number."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name, description=DESCRIPTION)
        except MlflowException as exc:
            if not refused_as_existing(exc):
                raise
        created = self.client.create_model_version(name, model_uri, run_id=run_id, tags=tags, model_id=model_id)
        return str(created.version)

    def describe(self, name: str, version: str, text: str) -> None:
        """Replace a version's description (markdown, shown at the top of its page)."""
        self.client.update_model_version(name, str(version), description=text)

    def describe_model(self, name: str, text: str) -> None:
        """Replace a registered model's description (shown at the top of its page, above its versions)."""
        self.client.update_registered_model(name, description=text)

    def tag_version(self, name: str, version: str, key: str, value: str) -> None:
        """Set one tag of a version."""
        self.client.set_model_version_tag(name, str(version), key, value)

    def run(self, run_id: str) -> Any:
        """A tracked run (its params, metrics and tags)."""
        return self.client.get_run(run_id)

    def running_runs(self, host: str, owner_host_tag: str) -> list[Any]:
        """The runs still RUNNING, in any experiment, that `owner_host_tag` says this host started."""
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        if not experiments:
            return []
        found = f"attributes.status = 'RUNNING' and tags.`{owner_host_tag}` = '{host}'"
        return list(self.client.search_runs(experiments, filter_string=found))

    def end_run(self, run_id: str, status: str, tags: dict[str, str]) -> None:
        """End a run another process left open, with tags saying why."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)
        self.client.set_terminated(run_id, status=status)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point an alias at a version (moving it if another version held it)."""
        self.client.set_registered_model_alias(name, alias, str(version))

    def claim(self, name: str, version: str) -> str:
        """Give a new version `champion` when the model has none, else `challenger`; the alias it got.

        One compare-and-set under the model's lock: of two versions registered at once, one is champion.
        """
        with self.lock(name):
            alias = CHAMPION if self.alias_version(name, CHAMPION) is None else CHALLENGER
            self.set_alias(name, alias, version)
        return alias

    def promote(self, name: str, version: str) -> str | None:
        """Make a version the champion; returns the version that was champion before (None if there was none).

        A challenger alias on the promoted version is dropped: it is no longer a candidate.
        """
        self.version(ModelRef(name, version=str(version)))
        with self.lock(name):
            held = self.aliases_by_version(name)
            previous = next((v for v, names in held.items() if CHAMPION in names), None)
            self.set_alias(name, CHAMPION, version)
            if CHALLENGER in held.get(str(version), []):
                self.client.delete_registered_model_alias(name, CHALLENGER)
        return previous

    def bundle(self, ref: ModelRef) -> Path:
        """The local bundle directory behind a reference now (downloaded once, then reused)."""
        return self.bundle_dir(self.version(ref))

    def bundle_dir(self, found: Any) -> Path:
        """The local bundle of a registered ModelVersion, downloaded into the cache on first use.

        The cache key includes the store and the version's model source, which no other version shares, so a
        registry that was deleted and rebuilt never serves a stale copy under a reused version number. A SQLite
        store keeps its copies beside its artifacts (deleting the store's folder deletes them); any other
        store's copies go to the tierwise cache directory.
        """
        from mlflow.artifacts import download_artifacts
        from mlflow.exceptions import MlflowException

        key = hashlib.sha256(f"{self.uri}\0{found.source}".encode()).hexdigest()[:16]
        database = sqlite_file(self.uri)
        root = database.parent / ARTIFACTS_DIR / "bundle-cache" if database else cache_dir() / "registry"
        target = root / key / found.name / str(found.version)
        if (target / MANIFEST).exists():
            return target
        staging = staging_dir(target)
        ref = f"models:/{found.name}/{found.version}"
        try:
            where = self.client.get_model_version_download_uri(found.name, str(found.version))
            downloaded = download_artifacts(artifact_uri=where, dst_path=str(staging), tracking_uri=self.uri)
            bundle = _bundle_in_model(Path(downloaded))
            if bundle is None:
                raise RegistryError(f"{ref} holds no tierwise bundle")
            try:
                bundle.rename(target)
            except OSError:
                if not (target / MANIFEST).exists():  # else a concurrent download of the same version won
                    raise
        except MlflowException as exc:
            raise RegistryError(f"cannot fetch {ref} from {self}: {masked(str(exc.message))}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


def _connection_failure(exc: BaseException) -> str | None:
    """The operating system's reason (`Connection refused`, a name that does not resolve) when an MLflow error
    comes from a connection that could not be made, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None and current.strerror:
            return current.strerror
        links = (current.__cause__, current.__context__, getattr(current, "reason", None))
        current = next((link for link in links if isinstance(link, BaseException)), None)
    return None


def _bundle_in_model(root: Path) -> Path | None:
    """Where a downloaded pyfunc model keeps its `bundle` artifact (named in its MLmodel file).

    The MLmodel file is read as the YAML it is: MLflow's `Model.load` imports pandas, which a serving-only
    install does not have.
    """
    import yaml

    try:
        described = yaml.safe_load((root / "MLmodel").read_text())
        bundle = root / described["flavors"]["python_function"]["artifacts"][BUNDLE_ARTIFACT]["path"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return bundle if bundle.is_dir() else None
