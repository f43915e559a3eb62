"""Where commands write: one rule for output directories and one atomic write for files.

Nothing a user already has is lost. An output directory may be missing, empty, or a previous output of the
same kind (which is then replaced whole); anything else is refused before any work starts, naming what is
there. A file output is written beside its target and renamed over it only once complete and synced, so an
interrupted or failed run leaves the earlier output as it was and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import InputError

SHOWN_ENTRIES = 3


class OutputError(InputError):
    """An output path tierwise will not write to, or could not write; the message names the path and why."""


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


def staging_dir(target: Path) -> Path:
    """A new private directory beside `target` to build an output in, on the same filesystem."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
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
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{target}: cannot write here ({exc.strerror or exc})") from exc
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _sync(tmp)
        tmp.chmod(_mode_for_new(0o666))
        os.replace(tmp, target)
        _sync_dir(target.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reason = exc.strerror or exc
        raise OutputError(f"{target}: could not be written ({reason}); the earlier file is unchanged") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
