"""The model the server answers with, and its safe hot reload.

A new bundle is loaded and verified next to the serving one; only then is the reference swapped (a single
attribute assignment, atomic under the GIL). Calls already running keep the router they started with,
so no in-flight request is dropped. A bundle that fails to load is refused and the old one keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from tierwise.classifier.router import Router
from tierwise.registry.sources import BundleRef, ModelSource

log = logging.getLogger("tierwise.serving")


class ReloadResult(Enum):
    LOADED = "loaded"
    UNCHANGED = "unchanged"
    REFUSED = "refused"


@dataclass(frozen=True)
class LoadedModel:
    """A verified router and the bundle it came from."""

    router: Router
    bundle: BundleRef


class ModelHolder:
    """Holds the serving model; `current` is read on every request without locking."""

    def __init__(
        self,
        source: ModelSource,
        on_swap: Callable[[LoadedModel], None] = lambda model: None,
        on_refuse: Callable[[str], None] = lambda reason: None,
    ):
        self.source = source
        self.current: LoadedModel | None = None
        self._on_swap = on_swap
        self._on_refuse = on_refuse
        self.last_refusal: str | None = None
        self._refused_token: str | None = None
        self._lock = threading.Lock()

    def refresh(self, force: bool = False) -> ReloadResult:
        """Load the source's bundle if its content changed (or if forced); swap only once it has loaded.

        A refused token is not retried until the content changes again or a reload is forced (SIGHUP).
        """
        with self._lock:
            try:
                bundle = self.source.resolve()
            except Exception as exc:
                reason = f"cannot resolve {self.source.describe()}: {exc}"
                if reason == self.last_refusal and not force:
                    return ReloadResult.UNCHANGED  # already reported; the source is still unavailable
                return self._refuse(reason)
            current = self.current
            if not force and (
                (current is not None and current.bundle.token == bundle.token) or bundle.token == self._refused_token
            ):
                return ReloadResult.UNCHANGED
            try:
                router = Router.load(bundle.path)
            except Exception as exc:
                self._refused_token = bundle.token
                return self._refuse(f"refused bundle {bundle.path}: {exc}")
            loaded = LoadedModel(router, bundle)
            self.current = loaded
            self._refused_token = self.last_refusal = None
            old = "none" if current is None else current.router.version
            log.info("serving model %s from %s (was %s)", router.version, bundle.path, old)
            self._on_swap(loaded)
            return ReloadResult.LOADED

    def _refuse(self, reason: str) -> ReloadResult:
        serving = "no model" if self.current is None else f"model {self.current.router.version}"
        log.error("%s; still serving %s", reason, serving)
        self.last_refusal = reason
        self._on_refuse(reason)
        return ReloadResult.REFUSED


class Reloader:
    """A background thread that polls the model source and reloads on change, or at once when asked."""

    def __init__(self, holder: ModelHolder, interval_s: float):
        self._holder = holder
        self._interval = interval_s if interval_s > 0 else None
        self._wake = threading.Event()
        self._force = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tierwise-reloader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request_reload(self) -> None:
        """Reload now even if the content looks unchanged (what SIGHUP does); safe from a signal handler."""
        self._force = True
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stopping:
                return
            force, self._force = self._force, False
            try:
                self._holder.refresh(force=force)
            except Exception:
                log.exception("model reload failed unexpectedly; still serving the old model")
