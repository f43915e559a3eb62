"""The model registry: versions, the `champion` / `challenger` aliases, and local copies of their bundles."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from training.encoders import cache_dir
from training.tracking.pyfunc import BUNDLE_ARTIFACT
from training.tracking.store import ARTIFACTS_DIR, sqlite_file, use_store

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class RegistryError(ValueError):
    """A registered model, version or alias that does not exist or cannot be fetched."""


@dataclass(frozen=True)
class ModelRef:
    """A registered model version, reached by alias or by number."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        match = MODEL_URI.match(uri)
        if not match:
            raise RegistryError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
        return cls(match["name"], match["alias"], match["version"])

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def client(tracking: str | None = None):
    """An MlflowClient on the chosen store."""
    from mlflow import MlflowClient

    use_store(tracking)
    return MlflowClient()


def model_version(ref: ModelRef, tracking: str | None = None):
    """The registered version a reference points at now (an alias is looked up in the registry)."""
    from mlflow.exceptions import MlflowException

    registry = client(tracking)
    try:
        if ref.version:
            return registry.get_model_version(ref.name, ref.version)
        return registry.get_model_version_by_alias(ref.name, ref.alias)
    except MlflowException as exc:
        raise RegistryError(f"{ref}: no such registered model, version or alias ({exc.message})") from exc


def current_version(ref: ModelRef, tracking: str | None = None) -> str:
    """The version number a reference points at now."""
    return str(model_version(ref, tracking).version)


def alias_version(name: str, alias: str, tracking: str | None = None) -> str | None:
    """The version behind an alias, or None when the model or alias does not exist yet."""
    try:
        return current_version(ModelRef(name, alias=alias), tracking)
    except RegistryError:
        return None


def aliases_by_version(name: str, tracking: str | None = None) -> dict[str, list[str]]:
    """Which aliases each version holds."""
    from mlflow.exceptions import MlflowException

    try:
        registered = client(tracking).get_registered_model(name)
    except MlflowException as exc:
        raise RegistryError(f"no registered model named {name!r} ({exc.message})") from exc
    held: dict[str, list[str]] = {}
    for alias, version in registered.aliases.items():
        held.setdefault(str(version), []).append(alias)
    return held


def register_version(
    name: str, model_uri: str, run_id: str, model_id: str | None, tags: dict[str, str], tracking: str | None = None
) -> str:
    """A new version of registered model `name` (created on first use) from a logged model; its number."""
    from mlflow.exceptions import MlflowException

    registry = client(tracking)
    try:
        registry.get_registered_model(name)
    except MlflowException:
        registry.create_registered_model(name, description="tierwise router: which LLM tier each request needs")
    created = registry.create_model_version(name, model_uri, run_id=run_id, tags=tags, model_id=model_id)
    return str(created.version)


def set_alias(name: str, alias: str, version: str, tracking: str | None = None) -> None:
    """Point an alias at a version (moving it if another version held it)."""
    client(tracking).set_registered_model_alias(name, alias, str(version))


def promote(name: str, version: str, tracking: str | None = None) -> str | None:
    """Make a version the champion; returns the version that was champion before (None if there was none).

    A challenger alias on the promoted version is dropped: it is no longer a candidate.
    """
    model_version(ModelRef(name, version=str(version)), tracking)
    held = aliases_by_version(name, tracking)
    previous = next((v for v, names in held.items() if CHAMPION in names), None)
    set_alias(name, CHAMPION, version, tracking)
    if CHALLENGER in held.get(str(version), []):
        client(tracking).delete_registered_model_alias(name, CHALLENGER)
    return previous


def bundle_for_version(name: str, version: str, tracking: str | None = None) -> Path:
    """A local copy of a version's bundle directory, downloaded once and reused."""
    return bundle_dir(model_version(ModelRef(name, version=str(version)), tracking), tracking)


def bundle_dir(found, tracking: str | None = None) -> Path:
    """The local bundle of a registered ModelVersion, downloaded into the cache on first use.

    The cache key includes the store and the version's model source, which no other version shares, so a
    registry that was deleted and rebuilt never serves a stale copy under a reused version number. A SQLite
    store keeps its copies beside its artifacts (deleting the store's folder deletes them); any other store's
    copies go to the tierwise cache directory.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    uri = use_store(tracking)
    key = hashlib.sha256(f"{uri}\0{found.source}".encode()).hexdigest()[:16]
    database = sqlite_file(uri)
    root = database.parent / ARTIFACTS_DIR / "bundle-cache" if database else cache_dir() / "registry"
    target = root / key / found.name / str(found.version)
    if (target / "manifest.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".download-"))
    ref = f"models:/{found.name}/{found.version}"
    try:
        root = Path(download_artifacts(artifact_uri=ref, dst_path=str(staging)))
        bundle = _bundle_in_model(root)
        if bundle is None:
            raise RegistryError(f"{ref} holds no tierwise bundle")
        try:
            bundle.rename(target)
        except OSError:
            if not (target / "manifest.json").exists():  # else a concurrent download of the same version won
                raise
    except MlflowException as exc:
        raise RegistryError(f"cannot fetch {ref}: {exc.message}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _bundle_in_model(root: Path) -> Path | None:
    """Where a downloaded pyfunc model keeps its `bundle` artifact (named in its MLmodel file)."""
    from mlflow.models import Model

    try:
        artifacts = Model.load(str(root / "MLmodel")).flavors["python_function"].get("artifacts", {})
        bundle = root / artifacts[BUNDLE_ARTIFACT]["path"]
    except (OSError, KeyError):
        return None
    return bundle if bundle.is_dir() else None


def resolve_bundle(uri: str, tracking: str | None = None) -> Path:
    """The local bundle directory behind `models:/NAME@ALIAS` or `models:/NAME/VERSION`."""
    return bundle_dir(model_version(ModelRef.parse(uri), tracking), tracking)


class RegistrySource:
    """A serving model source that follows an alias: its change token is the version the alias points at.

    The server polls it; when the alias moves, the new version's bundle is fetched and goes through the
    same verify-then-swap reload as a bundle directory.
    """

    def __init__(self, uri: str, tracking: str | None = None):
        self.ref = ModelRef.parse(uri)
        self.tracking = tracking

    def describe(self) -> str:
        return str(self.ref)

    def resolve(self):
        from serving.sources import BundleRef

        found = model_version(self.ref, self.tracking)
        return BundleRef(bundle_dir(found, self.tracking), f"{found.name}/{found.version}:{found.source}")
