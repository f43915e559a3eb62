"""Progress for long work: a live bar on a terminal, one summary line per stage when stderr is piped.

Piped output (CI logs, `| cat`, files) never gets `\\r` redraws; a terminal user still sees work move.
Third-party libraries' own bars and load reports go through `library_stage`, which applies the same rule.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator

from tqdm.auto import tqdm

Update = Callable[[int], None]
# Piped stages quicker than this leave no line: a log full of "0.0s" stages says nothing.
REPORTED_AFTER_S = 0.5


def on_terminal() -> bool:
    """Whether progress can be drawn in place (stderr is an interactive terminal)."""
    return sys.stderr.isatty()


@contextlib.contextmanager
def progress(
    total: int, desc: str, unit: str, initial: int = 0, quiet_below: int = 1, report_after_s: float = REPORTED_AFTER_S
) -> Iterator[Update]:
    """Yield `update(n)` for a stage of `total` items; stages under `quiet_below` items print nothing at all.

    Piped, the stage prints its one summary line at the end, if it took `report_after_s` or longer (a command's
    whole run, its one summary line, passes 0).
    """
    if total < quiet_below or total <= initial:
        yield lambda n: None
        return
    if on_terminal():
        with tqdm(total=total, initial=initial, desc=desc, unit=unit) as bar:
            yield bar.update
        return
    started = time.perf_counter()
    yield lambda n: None
    elapsed = time.perf_counter() - started
    if elapsed >= report_after_s:
        print(f"{desc}: {total - initial:,} {unit}s in {elapsed:.1f}s", file=sys.stderr)


@contextlib.contextmanager
def _ticking(desc: str, every_s: float = 1.0) -> Iterator[None]:
    """On a terminal, a line that counts the seconds of a stage whose length nobody can tell in advance."""
    done = threading.Event()
    with tqdm(total=None, desc=desc, bar_format="{desc}: {elapsed} elapsed", leave=False) as ticker:

        def tick() -> None:
            while not done.wait(every_s):
                ticker.refresh()

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


@contextlib.contextmanager
def library_stage(desc: str) -> Iterator[None]:
    """Run third-party loading or conversion quietly: no load reports; bars only on a terminal.

    Hugging Face libraries report harmless load details (the MiniLM "LOAD REPORT" table with raw ANSI codes)
    as warnings; they are silenced. When stderr is piped, whatever the library draws there is dropped and
    one line says the stage ran and how long it took.
    """
    loggers = [logging.getLogger(name) for name in ("transformers", "sentence_transformers", "huggingface_hub")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    started = time.perf_counter()
    try:
        if on_terminal():
            with _ticking(desc):
                yield
        else:
            with contextlib.redirect_stderr(io.StringIO()):
                yield
            print(f"{desc}: done in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
