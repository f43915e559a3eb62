"""Where commands write: one rule for output directories and one atomic write for files.

Nothing a user already has is lost. An output directory may be missing, empty, or a previous output of the
same kind (which is then replaced whole); anything else is refused before any work starts, naming what is
there. A file output is written beside its target and renamed over it only once complete and synced, so an
interrupted or failed run leaves the earlier output as it was and no temporary file behind: a failed run
removes its own, and what a killed one (kill -9) left is removed by the next run that writes the same output.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

SHOWN_ENTRIES = 3
# The file that marks a directory as a tierwise output of one kind (a bundle is known by its manifest instead).
MARKER = ".tierwise-output"
# What a writer of `name` leaves beside it while it works: `.<name>-<pid>-<8 random characters>[.tmp]`.
TEMPORARY = r"\.{name}-(?P<pid>\d+)-[a-z0-9_]{{8}}(\.tmp)?"


class OutputError(InputError):
    """An output path tierwise will not write to, or could not write; the message names the path and why.

    `failure` is why a write failed (a full disk), for a caller that words it for the output as a whole."""

    def __init__(self, message: str, failure: str | None = None):
        super().__init__(message)
        self.failure = failure


def check_output_dir(path: Path, is_previous_output: Callable[[Path], bool], what: str) -> None:
    """Refuse `path` unless it is missing, an empty directory, or a previous `what` (replaced whole later)."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or path.is_symlink():
        raise OutputError(f"{path}: exists and is not a directory; name a missing or empty directory or a {what}")
    entries = sorted(p.name for p in path.iterdir())
    if not entries or is_previous_output(path):
        return
    more = len(entries) - SHOWN_ENTRIES
    shown = ", ".join(entries[:SHOWN_ENTRIES]) + (f" and {more} more" if more > 0 else "")
    raise OutputError(
        f"{path}: holds {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} ({shown}) and is not a {what}; "
        f"name a missing or empty directory, or an existing {what} to replace it; nothing was touched"
    )


@dataclass(frozen=True)
class OutputDir:
    """A kind of output directory other than a bundle, such as the demo's work directory.

    A previous output of the kind is recognised conservatively: it carries the kind's MARKER file, and holds
    nothing but the `entries` its command writes (and what a killed run of it left while writing them), so a
    directory a user put anything else in is never replaced.
    """

    kind: str
    entries: frozenset[str]

    def check(self, path: Path) -> None:
        """Refuse `path` unless it is missing, empty or a previous output of this kind; nothing is touched."""
        check_output_dir(path, self.is_previous, self.kind)

    def is_previous(self, path: Path) -> bool:
        marker = path / MARKER
        try:
            kind = marker.read_text().strip() if marker.is_file() and not marker.is_symlink() else None
        except (OSError, UnicodeDecodeError):
            return False
        return kind == self.kind and all(self._written(entry.name) for entry in path.iterdir())

    def _written(self, name: str) -> bool:
        if name == MARKER or name in self.entries:
            return True
        return any(re.fullmatch(TEMPORARY.format(name=re.escape(entry)), name) for entry in self.entries)

    @contextlib.contextmanager
    def building(self, path: Path) -> Iterator[Path]:
        """Check `path`, then yield a new marked directory beside it to write the output in; when the block
        succeeds, it replaces `path` whole (a previous output is removed only then), else it is removed."""
        self.check(path)
        staging = staging_dir(path)
        kept = "the earlier output is unchanged" if path.exists() else "nothing was left"
        try:
            (staging / MARKER).write_text(self.kind + "\n")
            yield staging
            replace_dir(staging, path)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            failure = _write_failure(exc)
            if failure is None:
                raise
            raise OutputError(f"{path}: could not be written ({failure}); {kept}", failure) from exc

    def start(self, path: Path) -> None:
        """Make `path` an empty output of this kind to write into in place (a previous one is removed)."""
        with self.building(path):
            pass


def staging_dir(target: Path) -> Path:
    """A new directory beside `target` to build an output in, on the same filesystem, with the user's umask.

    What killed builders of `target` left beside it is removed first."""
    _make_parent(target)
    _remove_orphans(target)
    try:
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-{os.getpid()}-"))
    except OSError as exc:
        raise OutputError(f"{target}: cannot write here ({exc.strerror or exc})") from exc
    staging.chmod(_mode_for_new(0o777))
    return staging


def replace_dir(staging: Path, target: Path) -> None:
    """Move a finished `staging` directory to `target`, the previous output (if any) removed only afterwards."""
    if not target.exists():
        staging.rename(target)
        return
    retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-old-"))
    target.rename(retired / target.name)
    try:
        staging.rename(target)
    except BaseException:
        (retired / target.name).rename(target)
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; when the block succeeds, sync it and rename it over `target`.

    On any failure the temporary file is removed and `target` keeps what it held. An OSError (a full disk,
    a read-only directory) is reported as an `OutputError` naming the target.
    """
    target = Path(target)
    if target.is_symlink():
        target = target.resolve()  # the file a link names is the one written, as a plain write would
    if target.exists() and not target.is_file():
        raise OutputError(f"{target}: exists and is not a regular file; name a file to write")
    _make_parent(target)
    _remove_orphans(target)
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-{os.getpid()}-", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{target}: cannot write here ({exc.strerror or exc})") from exc
    os.close(fd)
    tmp = Path(name)
    kept = "the earlier file is unchanged" if target.exists() else "no file was left"
    try:
        yield tmp
        _sync(tmp)
        tmp.chmod(_mode_for_new(0o666))
        os.replace(tmp, target)
        _sync_dir(target.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        failure = str(exc.strerror or exc)
        raise OutputError(f"{target}: could not be written ({failure}); {kept}", failure) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_failure(exc: BaseException) -> str | None:
    """Why a write failed, when it failed on the filesystem (a full disk); None for anything else."""
    if isinstance(exc, OutputError):
        return exc.failure
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return None


def _make_parent(target: Path) -> None:
    """Create the directory `target` goes in, or say why it cannot be."""
    for parent in reversed((target.parent, *target.parent.parents)):
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{target}: cannot write here ({parent} is a file, not a directory)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write here ({exc.strerror or exc})") from exc


def _remove_orphans(target: Path) -> None:
    """Remove the temporary files and staging directories that writers of `target`, killed (kill -9, a power
    cut) before they could clean up, left beside it. A writer still running on this host keeps its own."""
    pattern = re.compile(TEMPORARY.format(name=re.escape(target.name)))
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            found = pattern.fullmatch(entry.name)
            if found is None or _alive(int(found["pid"])):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _read_umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _read_umask()  # read once, at import: setting it to read it is not safe while threads run


def _mode_for_new(full: int) -> int:
    """The mode a plain `open`/`mkdir` would give under the user's umask (mkstemp and mkdtemp give 0600/0700)."""
    return full & ~_UMASK


def _sync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _sync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
