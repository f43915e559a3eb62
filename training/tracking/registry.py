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
from training.tracking.store import use_store

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


def current_version(ref: ModelRef, tracking: str | None = None) -> str:
    """The version number a reference points at now (an alias is looked up in the registry)."""
    if ref.version:
        return ref.version
    from mlflow.exceptions import MlflowException

    try:
        return str(client(tracking).get_model_version_by_alias(ref.name, ref.alias).version)
    except MlflowException as exc:
        raise RegistryError(f"{ref}: no such registered model or alias ({exc.message})") from exc


def alias_version(name: str, alias: str, tracking: str | None = None) -> str | None:
    """The version behind an alias, or None when the model or alias does not exist yet."""
    try:
        return current_version(ModelRef(name, alias=alias), tracking)
    except RegistryError:
        return None


def aliases_by_version(name: str, tracking: str | None = None) -> dict[str, list[str]]:
    """Which aliases each version holds."""
    held: dict[str, list[str]] = {}
    for alias, version in client(tracking).get_registered_model(name).aliases.items():
        held.setdefault(str(version), []).append(alias)
    return held


def set_alias(name: str, alias: str, version: str, tracking: str | None = None) -> None:
    """Point an alias at a version (moving it if another version held it)."""
    client(tracking).set_registered_model_alias(name, alias, str(version))


def promote(name: str, version: str, tracking: str | None = None) -> str | None:
    """Make a version the champion; returns the version that was champion before (None if there was none)."""
    from mlflow.exceptions import MlflowException

    previous = alias_version(name, CHAMPION, tracking)
    try:
        client(tracking).get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version} ({exc.message})") from exc
    set_alias(name, CHAMPION, version, tracking)
    return previous


def bundle_for_version(name: str, version: str, tracking: str | None = None) -> Path:
    """A local copy of a version's bundle directory, downloaded once and reused (versions never change)."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    store = hashlib.sha256(use_store(tracking).encode()).hexdigest()[:16]
    target = cache_dir() / "registry" / store / name / str(version)
    if (target / "manifest.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".download-"))
    try:
        root = Path(download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(staging)))
        bundle = _bundle_in_model(root)
        if bundle is None:
            raise RegistryError(f"models:/{name}/{version} holds no tierwise bundle")
        bundle.rename(target)
    except MlflowException as exc:
        raise RegistryError(f"cannot fetch models:/{name}/{version}: {exc.message}") from exc
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
    ref = ModelRef.parse(uri)
    return bundle_for_version(ref.name, current_version(ref, tracking), tracking)


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

        version = current_version(self.ref, self.tracking)
        return BundleRef(bundle_for_version(self.ref.name, version, self.tracking), f"{self.ref.name}/{version}")
