"""The model the server answers with and the workloads file it routes by, and their safe hot reload.

A new bundle is loaded and verified next to the serving one; only then is the reference swapped (a single
attribute assignment, atomic under the GIL). Calls already running keep the router they started with,
so no in-flight request is dropped. A bundle that fails to load is refused and the old one keeps serving.
A workloads file (`--workloads`) is reloaded the same way: read and checked in full, then swapped in; a bad
one is refused, logged and counted, and the old policy keeps serving.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from tierwise.classifier.router import Router
from tierwise.classifier.workloads import WorkloadError, Workloads
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


class WorkloadsFile:
    """The workloads file requests are routed by, reloaded when its content changes.

    A new version is read and checked in full (and its tiers against `tiers()`, the served model's, when known)
    before it becomes `current` and `on_swap` hears of it; a bad one is refused with an error on the log naming
    the entry and field, and the policy in use keeps serving. `on_result` hears `loaded` or `refused` (metrics).
    """

    def __init__(
        self,
        path: str | Path,
        on_swap: Callable[[Workloads], None] = lambda workloads: None,
        tiers: Callable[[], Sequence[str] | None] = lambda: None,
        on_result: Callable[[str], None] = lambda result: None,
    ):
        self.path = Path(path)
        self.current: Workloads | None = None
        self.last_refusal: str | None = None
        self._on_swap = on_swap
        self._tiers = tiers
        self._on_result = on_result
        self._token: str | None = None  # the content last loaded or refused
        self._lock = threading.Lock()

    def load(self) -> Workloads:
        """The first load: a file that cannot be used stops the command (WorkloadError, naming entry and field)."""
        with self._lock:
            workloads = self._read(changed_only=False)
            assert workloads is not None
            self._swap(workloads)
        return workloads

    def refresh(self, force: bool = False) -> ReloadResult:
        """Load the file if its content changed (or if forced); swap only once it has been checked."""
        with self._lock:
            try:
                workloads = self._read(changed_only=not force)
            except WorkloadError as exc:
                if str(exc) == self.last_refusal and not force:
                    return ReloadResult.UNCHANGED  # already reported; the file is still unreadable
                return self._refuse(str(exc))
            if workloads is None:
                return ReloadResult.UNCHANGED
            self._swap(workloads)
            return ReloadResult.LOADED

    def _read(self, changed_only: bool) -> Workloads | None:
        """The file's policy, checked; None when `changed_only` and its content is what was last tried."""
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise WorkloadError(f"cannot read workloads file {self.path}: {exc.strerror or exc}") from exc
        token = hashlib.sha256(data).hexdigest()
        if changed_only and token == self._token:
            return None
        self._token = token  # refused or loaded, this content is not tried again until it changes or a SIGHUP
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WorkloadError(f"{self.path}: not UTF-8 text") from exc
        workloads = Workloads.from_toml(text, source=str(self.path))
        tiers = self._tiers()
        if tiers is not None:
            workloads.check_tiers(tiers)
        return workloads

    def _swap(self, workloads: Workloads) -> None:
        self.current, self.last_refusal = workloads, None
        log.info("routing by workloads file %s: [default] and %d workloads", self.path, len(workloads.named))
        self._on_swap(workloads)
        self._on_result(ReloadResult.LOADED.value)

    def _refuse(self, reason: str) -> ReloadResult:
        keeping = "no workloads policy" if self.current is None else "the previous workloads policy"
        log.error("refused workloads file: %s; still routing by %s", reason, keeping)
        self.last_refusal = reason
        self._on_result(ReloadResult.REFUSED.value)
        return ReloadResult.REFUSED


class Refreshable(Protocol):
    def refresh(self, force: bool = False) -> ReloadResult: ...


class Reloader:
    """A background thread that polls the model source (and the workloads file) and reloads on change, or at once
    when asked."""

    def __init__(self, holders: Sequence[Refreshable], interval_s: float):
        self._holders = tuple(holders)
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
            for holder in self._holders:
                try:
                    holder.refresh(force=force)
                except Exception:
                    log.exception("reload failed unexpectedly; still serving what was loaded")
