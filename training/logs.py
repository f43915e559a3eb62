"""Reading attempt logs (JSONL, CSV, Parquet) into one validated polars frame, losing nothing silently.

Rules a row must keep (else the error names file, row and column, or --skip-invalid counts it): the
request_id, model and prompt (or messages) present; `success` a boolean word; `score` a finite number (NaN
and infinities are refused: NaN compares above every threshold and would count as success); the measures
(`cost_usd`, tokens, latency, output_chars) finite and non-negative. Logs that hold no attempt at all are
refused too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

from classifier.bundle import sha256_file
from classifier.errors import InputError
from classifier.text import render_messages
from training.attempts import MEASURES, REQUIRED, SOURCE_FILE, SOURCE_ROW
from training.unreadable_rows import csv_problem, untabulated_row

SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
TRUE_WORDS = ("true", "t", "yes", "y", "1", "1.0")
FALSE_WORDS = ("false", "f", "no", "n", "0", "0.0")


class LogError(InputError):
    """Attempt logs that cannot be read as the attempt-log format; the message names file, row and column."""


@dataclass
class AttemptLog:
    """Validated attempt rows plus an account of everything that was read and dropped.

    `selection` says which part of the files the rows are when they are not all of them (a time window),
    so the data fingerprint tells two selections of the same files apart.
    """

    frame: pl.DataFrame
    files: list[Path]
    rows_read: int
    skipped: Counter[str] = field(default_factory=Counter)
    success_threshold: float = 1.0
    selection: str = ""

    @property
    def rows_skipped(self) -> int:
        return sum(self.skipped.values())

    def fingerprint(self) -> dict[str, Any]:
        """Content fingerprint of the rows' files (and selection), so a model can be traced to its exact data."""
        entries = [{"path": str(p), "sha256": sha256_file(p)} for p in self.files]
        combined = hashlib.sha256(("".join(e["sha256"] for e in entries) + self.selection).encode()).hexdigest()
        found: dict[str, Any] = {"fingerprint": combined[:16], "files": entries}
        return found | ({"selection": self.selection} if self.selection else {})

    def last_days(self, days: float) -> AttemptLog:
        """The requests last attempted within `days` of the newest timestamp in the logs.

        Whole requests are kept or dropped (by their latest attempt), so a request's label never loses the
        attempts that made it. The window ends at the newest timestamp in the logs, not at today, so the same
        logs always give the same window.
        """
        if "timestamp" not in self.frame.columns:
            raise LogError("--window needs a timestamp column in the logs")
        stamps = self.frame["timestamp"]
        if stamps.dtype == pl.String:
            stamps = stamps.str.to_datetime(time_zone="UTC", strict=False)
        newest = stamps.max()
        if newest is None:
            raise LogError("--window: no attempt has a readable timestamp")
        latest = pl.DataFrame({"stamp": stamps, "request_id": self.frame["request_id"]}).select(
            pl.col("stamp").max().over("request_id")
        )
        recent = self.frame.filter((latest["stamp"] >= newest - timedelta(days=days)).fill_null(False))
        kept, total = recent["request_id"].n_unique(), self.frame["request_id"].n_unique()
        selection = f"{kept} of {total} requests last tried within {days:g} days of {newest}"
        return dataclasses.replace(self, frame=recent, selection=selection)


def find_log_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and directories into the attempt-log files they hold, in a stable order."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIX_FORMATS)
            if not found:
                raise LogError(f"{path}: directory holds no .jsonl, .csv or .parquet files")
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIX_FORMATS:
                raise LogError(f"{path}: unknown log format {path.suffix!r}; use .jsonl, .csv or .parquet")
            files.append(path)
        else:
            raise LogError(f"{path}: no such file or directory")
    if not files:
        raise LogError("no log files given")
    return files


def _read_jsonl(path: Path) -> pl.DataFrame:
    rows = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise LogError(f"{path}: row {number}: not valid JSON ({exc})") from exc
            if not isinstance(row, dict):
                raise LogError(f"{path}: row {number}: expected a JSON object, got {type(row).__name__}")
            row[SOURCE_ROW] = number
            if "messages" in row and not isinstance(row["messages"], str) and row["messages"] is not None:
                row["messages"] = json.dumps(row["messages"], ensure_ascii=False)
            rows.append(row)
    if not rows:
        return pl.DataFrame(schema={SOURCE_ROW: pl.Int64()})
    try:
        return pl.from_dicts(rows, infer_schema_length=None, strict=False)
    except pl.exceptions.PolarsError as exc:
        raise LogError(f"{path}: {untabulated_row(rows, SOURCE_ROW)}") from exc


def _read_csv(path: Path) -> pl.DataFrame:
    """Every CSV value as text (the normaliser parses it); a file polars refuses is searched for its bad row."""
    try:
        return pl.read_csv(path, infer_schema=False).with_row_index(SOURCE_ROW, offset=2)
    except pl.exceptions.NoDataError as exc:
        raise LogError(f"{path}: the file is empty: no header, no attempts") from exc
    except pl.exceptions.PolarsError as exc:
        where = csv_problem(path) or f"cannot read as csv: {str(exc).splitlines()[0]}"
        raise LogError(f"{path}: {where}") from exc


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path).with_row_index(SOURCE_ROW, offset=1)
    except pl.exceptions.PolarsError as exc:
        raise LogError(f"{path}: cannot read as parquet: {exc}") from exc


READERS = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}


def _read_one(path: Path) -> pl.DataFrame:
    """Read one file into a frame with its source file and 1-based source row (line for JSONL, data row for CSV)."""
    try:
        frame = READERS[SUFFIX_FORMATS[path.suffix.lower()]](path)
    except OSError as exc:
        raise LogError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if "messages" in frame.columns and frame.schema["messages"] != pl.String:
        frame = frame.with_columns(
            pl.col("messages").map_elements(
                lambda v: json.dumps(v.to_list() if hasattr(v, "to_list") else v, ensure_ascii=False),
                return_dtype=pl.String,
            )
        )
    return frame.with_columns(pl.lit(str(path)).alias(SOURCE_FILE), pl.col(SOURCE_ROW).cast(pl.Int64))


def _as_bool(column: str) -> pl.Expr:
    text = pl.col(column).cast(pl.String).str.strip_chars().str.to_lowercase()
    return (
        pl.when(text.is_in(TRUE_WORDS))
        .then(True)
        .when(text.is_in(FALSE_WORDS))
        .then(False)
        .otherwise(None)
        .cast(pl.Boolean)
    )


def _as_float(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)


def _not_finite(column: str) -> pl.Expr:
    """Whether a parsed number is NaN or infinite (null stays null: it is checked elsewhere)."""
    value = pl.col(f"_parsed_{column}")
    return value.is_nan() | value.is_infinite()


def _render_message_column(messages: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Render JSON chat lists to text; the second series flags rows whose messages are not a chat list."""
    texts: list[str | None] = []
    bad: list[bool] = []
    for raw in messages.to_list():
        if raw is None:
            texts.append(None)
            bad.append(False)
            continue
        try:
            chat = json.loads(raw)
            ok = isinstance(chat, list) and all(isinstance(m, dict) and "content" in m for m in chat)
        except json.JSONDecodeError:
            ok = False
        texts.append(render_messages(chat) if ok and chat else None)
        bad.append(not ok)
    return pl.Series(texts, dtype=pl.String), pl.Series(bad, dtype=pl.Boolean)


def _normalise(frame: pl.DataFrame, success_threshold: float) -> pl.DataFrame:
    """Coerce the contract columns to their types and attach an `_error` column naming what is wrong with a row.

    Parsed values go to `_parsed_<column>` first, so each check can compare the raw value with its parse.
    """
    columns = set(frame.columns)
    problems: list[tuple[pl.Expr, str]] = []
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c in ("request_id", "prompt", "model") if c in columns)
    if "prompt" not in columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("prompt"))
    parsed: dict[str, pl.Expr] = {}

    if "messages" in columns:
        rendered, bad_messages = _render_message_column(frame["messages"])
        frame = frame.with_columns(rendered.alias("_rendered"), bad_messages.alias("_bad_messages"))
        prompt = pl.col("prompt")
        parsed["prompt"] = (
            pl.when(prompt.is_null() | (prompt.str.len_chars() == 0)).then(pl.col("_rendered")).otherwise(prompt)
        )
        problems.append((pl.col("_bad_messages"), "column messages: not a list of {role, content} objects"))
        frame = frame.with_columns(parsed.pop("prompt").alias("prompt"))

    for column in ("request_id", "model", "prompt"):
        problems.append((pl.col(column).is_null() | (pl.col(column).str.len_chars() == 0), f"column {column}: missing"))
    if "score" in columns:
        parsed["score"] = _as_float("score")
        problems.append(
            (pl.col("score").is_not_null() & pl.col("_parsed_score").is_null(), "column score: not a number")
        )
        problems.append((_not_finite("score"), "column score: not a finite number (NaN or infinity)"))
    if "success" in columns:
        parsed["success"] = _as_bool("success")
        problems.append(
            (
                pl.col("success").is_not_null() & pl.col("_parsed_success").is_null(),
                "column success: not a boolean",
            )
        )
    for column in MEASURES:
        if column in columns:
            parsed[column] = _as_float(column)
            value = pl.col(f"_parsed_{column}")
            problems.append(
                (
                    pl.col(column).is_not_null() & (value.is_null() | _not_finite(column) | (value < 0)),
                    f"column {column}: not a finite non-negative number",
                )
            )
    frame = frame.with_columns(expr.alias(f"_parsed_{name}") for name, expr in parsed.items())

    success = pl.col("_parsed_success") if "success" in columns else pl.lit(None, dtype=pl.Boolean)
    if "score" in columns:
        success = pl.when(success.is_null()).then(pl.col("_parsed_score") >= success_threshold).otherwise(success)
    frame = frame.with_columns(success.alias("_parsed_success"))
    problems.append((pl.col("_parsed_success").is_null(), "column success: missing (and no score)"))

    error = pl.lit(None, dtype=pl.String)
    for condition, message in reversed(problems):
        error = pl.when(condition.fill_null(False)).then(pl.lit(message)).otherwise(error)
    frame = frame.with_columns(error.alias("_error"))
    frame = frame.with_columns(pl.col(f"_parsed_{name}").alias(name) for name in {*parsed, "success"})
    return frame.drop([c for c in frame.columns if c.startswith("_parsed_") or c in ("_rendered", "_bad_messages")])


def read_attempts(
    paths: Sequence[str | Path], success_threshold: float = 1.0, skip_invalid: bool = False
) -> AttemptLog:
    """Read attempt logs in any supported format into one frame, validating every row.

    A bad row raises LogError naming its file, row and column, unless skip_invalid drops it and counts why.
    """
    files = find_log_files(paths)
    frames = []
    for path in files:
        frame = _read_one(path)
        if frame.height == 0 and frame.columns == [SOURCE_ROW, SOURCE_FILE]:
            continue  # an empty JSONL file: no rows, so no columns to check
        missing = [c for c in REQUIRED if c not in frame.columns]
        if "prompt" not in frame.columns and "messages" not in frame.columns:
            missing.append("prompt (or messages)")
        if "success" not in frame.columns and "score" not in frame.columns:
            missing.append("success (or score)")
        if missing:
            raise LogError(f"{path}: missing required column(s): {', '.join(missing)}")
        frames.append(_normalise(frame, success_threshold))
    named = ", ".join(str(p) for p in files)
    if sum(f.height for f in frames) == 0:
        raise LogError(f"{named}: the logs hold no attempts (no data rows)")
    frame = pl.concat(frames, how="diagonal_relaxed")
    bad = frame.filter(pl.col("_error").is_not_null())
    skipped: Counter[str] = Counter()
    if bad.height:
        if not skip_invalid:
            first = bad.row(0, named=True)
            more = f" ({bad.height - 1} more bad rows; --skip-invalid drops them)" if bad.height > 1 else ""
            raise LogError(f"{first[SOURCE_FILE]}: row {first[SOURCE_ROW]}: {first['_error']}{more}")
        skipped.update(dict(bad.group_by("_error").len().iter_rows()))
        frame = frame.filter(pl.col("_error").is_null())
    if frame.height == 0:
        raise LogError(f"{named}: the logs hold no attempts (all {bad.height} rows are invalid and were skipped)")
    return AttemptLog(
        frame=frame.drop("_error"),
        files=files,
        rows_read=frame.height + bad.height,
        skipped=skipped,
        success_threshold=success_threshold,
    )
