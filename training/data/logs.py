"""Reading attempt logs (JSONL, CSV, Parquet) into one validated lazy scan, losing nothing silently.

Rules a row must keep (else the error names file, row and column, or --skip-invalid counts it): the
request_id, model and prompt (or messages) present; a `workload` no longer than an identifier may be; a plain
value, never a list or an object, in each of
those and the other contract columns (`PLAIN_COLUMNS`); `success` a boolean word; `score` a finite number (NaN
and infinities are refused: NaN compares above every threshold and would count as success); the measures
(`cost_usd`, tokens, latency, output_chars) finite and non-negative; `timestamp` an ISO 8601 date and time at
most `FUTURE_TOLERANCE` ahead; the prompt of the first row with its request_id (across files: two requests
under one id would be merged). A JSONL line that is no JSON object (torn by a crash or a full disk) is a bad
row too. Logs that hold no attempt at all are refused.

Logs may be larger than memory, so no file is read whole. Each is scanned lazily and checked in one pass of
polars' streaming engine (rows counted by what is wrong with them, the first bad row kept for the message),
then the ids and the prompts' hashes of all files in one more; the log then holds the lazy plan of its valid
rows, which labelling and training scan again. JSONL goes through polars' ndjson reader; a file it cannot take
(invalid JSON, a NaN literal, a line that is not an object), or whose text columns hold JSON objects or lists,
is read line by line instead, which names each bad line and refuses an extra column mixing objects with plain
values, as it always has.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl
from tierwise.classifier.bundle import sha256_file
from tierwise.classifier.errors import InputError
from tierwise.classifier.limits import IDENTIFIER
from tierwise.classifier.text import render_messages
from tierwise.training.data.attempts import IDENTIFIERS, MEASURES, REQUIRED, SOURCE_FILE, SOURCE_ROW
from tierwise.training.data.unreadable_rows import csv_problem, untabulated_row

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
STREAMING = "streaming"
# How polars' ndjson reader writes an object or a list into a text column: such a column needs the line reader.
JSON_TEXT = r"(?s)^\s*(\{\s*[\"}]|\[\s*[\[{\"\-0-9tfn\]]).*[}\]]\s*$"
ERROR = "_error"
# The attempt-log columns that hold JSON (a chat list), kept as JSON text in every format.
CHAT_COLUMNS = ("messages",)
# The attempt-log columns that hold one plain value, never a list or an object, and what each one holds.
PLAIN_COLUMNS = {
    **dict.fromkeys(("request_id", "prompt", "model"), "text"),
    "success": "true or false",
    **dict.fromkeys(("score", *MEASURES), "a number"),
    "timestamp": "a date and time",
}
JSON_FLAG = "_json_text"
# Per row, the first plain column that held a list or an object, and what belongs there: "<column>: <problem>".
NESTED = "_nested"
# Why a JSONL line is no row at all (a line torn by a crash or a full disk, a line that is not an object).
NOT_JSON = "not valid JSON"
NOT_OBJECT = "not a JSON object"
# Timestamps: ISO 8601 text, with a zone (an offset or Z) or without one (UTC), or a date alone.
TIMESTAMP_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d",
)
# A timestamp later than this after now is refused: no attempt was made in the future, and one such row would
# make a --window keep only itself. The margin allows for clocks a little ahead and a zone written wrongly.
FUTURE_TOLERANCE = timedelta(days=1)
DIFFERING_PROMPT = "column prompt: differs from the prompt of the first row with this request_id"
HASH, FILE_INDEX, PLACE = "_hash", "_file_index", "_place"  # internal columns of the prompt check


class LogError(InputError):
    """Attempt logs that cannot be read as the attempt-log format; the message names file, row and column."""


@dataclass
class AttemptLog:
    """Validated attempt rows, as a lazy scan of their files, plus an account of everything read and dropped.

    `attempts` is re-read from the files each time it is collected, so logs larger than memory are labelled
    and trained on through the streaming engine; `frame` holds every row in memory, for small-log consumers.
    `selection` says which part of the files the rows are when they are not all of them (a time window),
    so the data fingerprint tells two selections of the same files apart.
    """

    attempts: pl.LazyFrame
    files: list[Path]
    rows_read: int
    skipped: Counter[str] = field(default_factory=Counter)
    success_threshold: float = 1.0
    selection: str = ""

    @cached_property
    def frame(self) -> pl.DataFrame:
        """Every valid attempt row in memory (read once)."""
        return self.attempts.collect(engine=STREAMING)

    @property
    def columns(self) -> list[str]:
        """The attempt rows' columns, without reading any row."""
        return self.attempts.collect_schema().names()

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
        if "timestamp" not in self.columns:
            raise LogError("--window needs a timestamp column in the logs")
        stamp = as_timestamp("timestamp", self.attempts.collect_schema()["timestamp"])
        stamps = self.attempts.select("request_id", stamp.alias("timestamp")).collect(engine=STREAMING)
        newest = stamps["timestamp"].max()
        if newest is None:
            raise LogError("--window: no attempt has a readable timestamp")
        latest = stamps.group_by("request_id").agg(pl.col("timestamp").max())
        recent = latest.filter(pl.col("timestamp") >= newest - timedelta(days=days))["request_id"]
        selection = f"{recent.len()} of {latest.height} requests last tried within {days:g} days of {newest}"
        kept = self.attempts.filter(pl.col("request_id").is_in(recent.implode()))
        return dataclasses.replace(self, attempts=kept, selection=selection)


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


@dataclass(frozen=True)
class LinesRead:
    """What the line reader made of a JSONL file: its rows, and the lines that are no row at all (torn by a
    crash or a full disk, or not an object), each as (line, reason, problem in full)."""

    frame: pl.DataFrame
    unreadable: list[tuple[int, str, str]]


def _read_jsonl_lines(path: Path, as_text: Sequence[str], plain: Mapping[str, str]) -> LinesRead:
    """The line reader: every JSONL line parsed in Python, so each line that breaks the file is named.

    The `as_text` columns keep JSON lists and objects as JSON text, as the scan does. In the `plain` columns a
    list or an object is no value at all: it is left out, and the row's NESTED column says where it was."""
    rows = []
    unreadable = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                unreadable.append((number, NOT_JSON, f"{NOT_JSON} ({exc})"))
                continue
            if not isinstance(row, dict):
                unreadable.append((number, NOT_OBJECT, f"{NOT_OBJECT}, got {type(row).__name__}"))
                continue
            row[SOURCE_ROW] = number
            for name in as_text:
                if isinstance(row.get(name), list | dict):
                    row[name] = json.dumps(row[name], ensure_ascii=False)
            for name, holds in plain.items():
                if isinstance(row.get(name), list | dict):
                    row.setdefault(NESTED, _nested(name, holds, isinstance(row[name], dict)))
                    row[name] = None
            rows.append(row)
    if not rows:
        return LinesRead(pl.DataFrame(schema={SOURCE_ROW: pl.Int64()}), unreadable)
    try:
        return LinesRead(pl.from_dicts(rows, infer_schema_length=None, strict=False), unreadable)
    except pl.exceptions.PolarsError as exc:
        raise LogError(f"{path}: {untabulated_row(rows, SOURCE_ROW)}") from exc


def _line_number(path: Path, record: int) -> int:
    """The line of a JSONL file's `record`-th non-blank line (polars' ndjson reader numbers only those)."""
    seen = 0
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            seen += bool(line.strip())
            if seen == record:
                return number
    return record


def _scan(path: Path, kind: str, as_text: Sequence[str]) -> pl.LazyFrame:
    """A lazy scan of one file with its 1-based source row (JSONL: non-blank line; CSV: the header is row 1).

    JSONL's `as_text` columns are read as text: polars keeps a JSON list or object there as its JSON text."""
    if kind == "jsonl":
        schema = pl.scan_ndjson(path, infer_schema_length=None).collect_schema()
        text = {name: pl.String() for name in as_text if name in schema}
        return pl.scan_ndjson(path, schema={**schema, **text}, row_index_name=SOURCE_ROW, row_index_offset=1)
    if kind == "csv":
        return pl.scan_csv(path, infer_schema=False).with_row_index(SOURCE_ROW, offset=2)
    return pl.scan_parquet(path).with_row_index(SOURCE_ROW, offset=1)


def as_bool(column: str) -> pl.Expr:
    """A column's boolean words (TRUE_WORDS, FALSE_WORDS) as booleans; anything else null."""
    text = pl.col(column).cast(pl.String).str.strip_chars().str.to_lowercase()
    return (
        pl.when(text.is_in(TRUE_WORDS))
        .then(True)
        .when(text.is_in(FALSE_WORDS))
        .then(False)
        .otherwise(None)
        .cast(pl.Boolean)
    )


def as_float(column: str) -> pl.Expr:
    """A column's numbers (or numbers written as text) as floats; anything else null."""
    return pl.col(column).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)


def too_long_identifier(value: pl.Expr) -> tuple[pl.Expr, str]:
    """(whether a text value is longer than an identifier may be, the problem to name): the one bound on the
    names callers pick (`IDENTIFIERS`), in attempt logs and in the decision logs collect reads."""
    return value.cast(pl.String).str.len_chars() > IDENTIFIER.maximum, (
        f"longer than the limit of {IDENTIFIER.maximum:,} {IDENTIFIER.unit}"
    )


def _not_finite(column: str) -> pl.Expr:
    """Whether a parsed number is NaN or infinite (null stays null: it is checked elsewhere)."""
    value = pl.col(f"_parsed_{column}")
    return value.is_nan() | value.is_infinite()


def as_timestamp(column: str, dtype: pl.DataType) -> pl.Expr:
    """A column's dates and times as UTC datetimes: ISO 8601 text (`TIMESTAMP_FORMATS`; without a zone, UTC),
    or a date or datetime column (Parquet); anything else (a number, "yesterday") null."""
    utc = pl.Datetime("us", "UTC")
    if dtype == pl.Date:
        return pl.col(column).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if isinstance(dtype, pl.Datetime):
        stamp = pl.col(column).dt.cast_time_unit("us")
        return stamp.dt.replace_time_zone("UTC") if dtype.time_zone is None else stamp.dt.convert_time_zone("UTC")
    if dtype not in (pl.String, pl.Null):
        return pl.lit(None, dtype=utc)
    text = pl.col(column).cast(pl.String).str.strip_chars()
    return pl.coalesce(
        [text.str.to_datetime(f, time_unit="us", time_zone="UTC", strict=False) for f in TIMESTAMP_FORMATS]
    ).cast(utc)


def _nested(name: str, holds: str, is_object: bool) -> str:
    return f"{name}: expected {holds}, got {'an object' if is_object else 'a list'}"


def without_nested(frame: pl.LazyFrame, plain: Mapping[str, str]) -> pl.LazyFrame:
    """The rows with every list or object in a `plain` column (as polars read one: a list or struct column) left
    out, and NESTED naming the first such column of each row ("<column>: <problem>", kept where the line reader
    set it), so checks see only plain values and a row that held one is a bad row."""
    schema = frame.collect_schema()
    found = pl.col(NESTED) if NESTED in schema else pl.lit(None, dtype=pl.String)
    nested = [name for name in plain if name in schema and schema[name].is_nested()]
    for name in reversed(nested):
        said = pl.lit(_nested(name, plain[name], isinstance(schema[name], pl.Struct)))
        found = pl.when(found.is_null() & pl.col(name).is_not_null()).then(said).otherwise(found)
    return frame.with_columns(found.alias(NESTED), *(pl.lit(None, dtype=pl.String).alias(name) for name in nested))


CHAT = pl.Struct({"text": pl.String(), "bad": pl.Boolean()})


def _render_chats(messages: pl.Series) -> pl.Series:
    """Render JSON chat lists to text (`text`), flagging values that are not a chat list (`bad`)."""
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
    return pl.DataFrame({"text": texts, "bad": bad}, schema=dict(CHAT.to_schema())).to_struct()


def json_as_text(schema: pl.Schema, names: Sequence[str]) -> list[pl.Expr]:
    """Columns of lists or structs (Parquet) written as JSON text, as the line reader and the scan keep them."""
    return [
        pl.col(name).map_elements(
            lambda v: json.dumps(v.to_list() if hasattr(v, "to_list") else v, ensure_ascii=False),
            return_dtype=pl.String,
        )
        for name in names
        if name in schema and schema[name] not in (pl.String, pl.Null)
    ]


def _normalise(frame: pl.LazyFrame, schema: pl.Schema, success_threshold: float) -> pl.LazyFrame:
    """Coerce the contract columns to their types and attach an `_error` column naming what is wrong with a row.

    Parsed values go to `_parsed_<column>` first, so each check can compare the raw value with its parse.
    """
    columns = set(schema.names())
    problems: list[tuple[pl.Expr, pl.Expr | str]] = []
    frame = without_nested(frame.with_columns(json_as_text(schema, CHAT_COLUMNS)), PLAIN_COLUMNS)
    schema = frame.collect_schema()
    problems.append((pl.col(NESTED).is_not_null(), pl.concat_str(pl.lit("column "), pl.col(NESTED))))
    text = ("request_id", "prompt", "model", *IDENTIFIERS)
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c in text if c in columns)
    if "prompt" not in columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("prompt"))
    parsed: dict[str, pl.Expr] = {}

    if "messages" in columns:
        chat = pl.col("messages").map_batches(_render_chats, return_dtype=CHAT, is_elementwise=True)
        frame = frame.with_columns(chat.alias("_chat"))
        prompt = pl.col("prompt")
        rendered = pl.col("_chat").struct.field("text")
        frame = frame.with_columns(
            pl.when(prompt.is_null() | (prompt.str.len_chars() == 0)).then(rendered).otherwise(prompt).alias("prompt")
        )
        problems.append((pl.col("_chat").struct.field("bad"), "column messages: not a list of {role, content} objects"))

    for column in ("request_id", "model", "prompt"):
        problems.append((pl.col(column).is_null() | (pl.col(column).str.len_chars() == 0), f"column {column}: missing"))
    for column in IDENTIFIERS:
        if column in columns:
            too_long, problem = too_long_identifier(pl.col(column))
            problems.append((too_long, f"column {column}: {problem}"))
    if "score" in columns:
        parsed["score"] = as_float("score")
        problems.append(
            (pl.col("score").is_not_null() & pl.col("_parsed_score").is_null(), "column score: not a number")
        )
        problems.append((_not_finite("score"), "column score: not a finite number (NaN or infinity)"))
    if "success" in columns:
        parsed["success"] = as_bool("success")
        problems.append(
            (
                pl.col("success").is_not_null() & pl.col("_parsed_success").is_null(),
                "column success: not a boolean",
            )
        )
    for column in MEASURES:
        if column in columns:
            parsed[column] = as_float(column)
            value = pl.col(f"_parsed_{column}")
            problems.append(
                (
                    pl.col(column).is_not_null() & (value.is_null() | _not_finite(column) | (value < 0)),
                    f"column {column}: not a finite non-negative number",
                )
            )
    if "timestamp" in columns:
        frame = frame.with_columns(as_timestamp("timestamp", schema["timestamp"]).alias("_timestamp"))
        given = pl.col("timestamp").is_not_null()
        if schema["timestamp"] == pl.String:
            given = pl.col("timestamp").str.strip_chars() != ""
        problems.append((given & pl.col("_timestamp").is_null(), "column timestamp: not an ISO 8601 date and time"))
        latest = datetime.now(UTC) + FUTURE_TOLERANCE
        problems.append(
            (
                pl.col("_timestamp") > latest,
                f"column timestamp: in the future (later than {FUTURE_TOLERANCE.days} day from now)",
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
        said = pl.lit(message) if isinstance(message, str) else message
        error = pl.when(condition.fill_null(False)).then(said).otherwise(error)
    frame = frame.with_columns(error.alias(ERROR))
    frame = frame.with_columns(pl.col(f"_parsed_{name}").alias(name) for name in {*parsed, "success"})
    internal = [f"_parsed_{name}" for name in {*parsed, "success"}] + [NESTED]
    internal += ["_chat"] if "messages" in columns else []
    internal += ["_timestamp"] if "timestamp" in columns else []
    return frame.drop(internal)


@dataclass(frozen=True)
class CheckedFile:
    """One file after its validation pass: the plan of its normalised rows and what the pass counted."""

    path: Path
    rows: pl.LazyFrame | None  # None: a JSONL file with no line at all
    counts: dict[str | None, int]  # rows per problem (None: valid rows)
    first_bad: tuple[int, str] | None = None  # the first bad row (as the user counts: a line, a CSV record) and why
    json_text: bool = False  # a text column holds what polars' ndjson reader made of a JSON object or list
    records: bool = False  # SOURCE_ROW counts a JSONL file's non-blank lines (polars' reader), not its lines

    @property
    def valid_rows(self) -> pl.LazyFrame | None:
        if self.rows is None:
            return None
        if self.first_bad is None:
            return self.rows.drop(ERROR, JSON_FLAG)
        return self.rows.filter(pl.col(ERROR).is_null()).drop(ERROR, JSON_FLAG)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def shown_row(self, row: int) -> int:
        """A SOURCE_ROW as the user counts rows: a JSONL file's line."""
        return _line_number(self.path, row) if self.records else row

    def with_bad_rows(self, rows: list[int], problem: str, detail: str) -> CheckedFile:
        """This file with more bad rows (at SOURCE_ROW `rows`, valid so far): found across files, after its pass."""
        assert self.rows is not None
        bad = pl.col(SOURCE_ROW).is_in(rows) & pl.col(ERROR).is_null()
        marked = self.rows.with_columns(pl.when(bad).then(pl.lit(problem)).otherwise(pl.col(ERROR)).alias(ERROR))
        counts = Counter(self.counts)
        counts[None] -= len(rows)
        counts[problem] += len(rows)
        first = (self.shown_row(min(rows)), f"{problem} {detail}")
        first_bad = min(filter(None, [self.first_bad, first]))
        return dataclasses.replace(self, rows=marked, counts=dict(counts), first_bad=first_bad)


def skipped_rows(
    checked: Sequence[CheckedFile], skip_invalid: bool, where: Callable[[CheckedFile, int, str], str]
) -> Counter[str]:
    """The bad rows of these files counted by problem: with `skip_invalid` they are dropped and counted; without
    it the first stops the run (LogError; `where` words its file, row and problem) saying how to drop them."""
    skipped: Counter[str] = Counter()
    for one in checked:
        skipped.update({problem: rows for problem, rows in one.counts.items() if problem is not None})
    first = next((c for c in checked if c.first_bad is not None), None)
    if first is not None and first.first_bad is not None and not skip_invalid:
        bad = sum(skipped.values())
        more = f"{bad - 1} more bad rows; --skip-invalid drops them" if bad > 1 else "--skip-invalid drops it"
        raise LogError(f"{where(first, *first.first_bad)} ({more})")
    return skipped


def mark_differing_prompts(checked: list[CheckedFile]) -> list[CheckedFile]:
    """Mark as bad the rows whose prompt differs from the prompt of their request_id's first row (across files):
    two requests logged under one id would otherwise be merged into one, with the first one's prompt.

    One streaming pass over the ids and the prompts' hashes; the rows are found only if a request has two."""
    plans = [
        plan.select("request_id", pl.col("prompt").hash().alias(HASH), pl.lit(index).alias(FILE_INDEX), SOURCE_ROW)
        for index, one in enumerate(checked)
        if (plan := one.valid_rows) is not None
    ]
    if not plans:
        return checked
    keys = pl.concat(plans).with_row_index(PLACE)
    twice = keys.group_by("request_id").agg(pl.col(HASH).n_unique()).filter(pl.col(HASH) > 1)
    ids = twice.select("request_id").collect(engine=STREAMING)["request_id"]
    if ids.len() == 0:
        return checked
    rows = keys.filter(pl.col("request_id").is_in(ids.implode())).collect(engine=STREAMING).sort(PLACE)
    first = rows.group_by("request_id", maintain_order=True).agg(pl.all().first())
    differing = rows.join(first, on="request_id", suffix="_first").filter(pl.col(HASH) != pl.col(f"{HASH}_first"))
    marked = list(checked)
    for (index,), found in differing.sort(PLACE).partition_by(FILE_INDEX, as_dict=True).items():
        at = checked[found[f"{FILE_INDEX}_first"][0]]
        detail = f"({at.path}: row {at.shown_row(found[f'{SOURCE_ROW}_first'][0])})"
        marked[index] = checked[index].with_bad_rows(found[SOURCE_ROW].to_list(), DIFFERING_PROMPT, detail)
    return marked


# How a reader normalises one file's raw rows (path, rows, search_json_text) into its checked rows.
Check = Callable[[Path, pl.LazyFrame, bool], CheckedFile]


def locate(path: Path, raw: pl.LazyFrame, search_json_text: bool, as_text: Sequence[str] = ()) -> pl.LazyFrame:
    """The raw rows with their source row as Int64, their file, and (with `search_json_text`) the JSON_FLAG of
    rows whose text columns (other than `as_text`) hold what polars' ndjson reader made of JSON objects or lists."""
    schema = raw.collect_schema()
    texts = [c for c, dtype in schema.items() if dtype == pl.String and c not in as_text] if search_json_text else []
    looks_like_json = pl.any_horizontal(pl.lit(False), *(pl.col(c).str.contains(JSON_TEXT) for c in texts))
    return raw.with_columns(
        pl.col(SOURCE_ROW).cast(pl.Int64), pl.lit(str(path)).alias(SOURCE_FILE), looks_like_json.alias(JSON_FLAG)
    )


def tally(path: Path, rows: pl.LazyFrame) -> CheckedFile:
    """Count a file's normalised rows (with ERROR and JSON_FLAG columns) by problem, in one streaming pass."""
    counted = (
        rows.group_by(ERROR)
        .agg(pl.len().alias("rows"), pl.col(SOURCE_ROW).min().alias("first"), pl.col(JSON_FLAG).any())
        .collect(engine=STREAMING)
    )
    bad = counted.filter(pl.col(ERROR).is_not_null()).sort("first")
    return CheckedFile(
        path,
        rows,
        counts=dict(zip(counted[ERROR].to_list(), counted["rows"].to_list(), strict=True)),
        first_bad=(int(bad["first"][0]), str(bad[ERROR][0])) if bad.height else None,
        json_text=bool(counted[JSON_FLAG].any()),
    )


def _missing_columns(schema: pl.Schema) -> list[str]:
    columns = set(schema.names())
    missing = [c for c in REQUIRED if c not in columns]
    if "prompt" not in columns and "messages" not in columns:
        missing.append("prompt (or messages)")
    if "success" not in columns and "score" not in columns:
        missing.append("success (or score)")
    return missing


def _check(success_threshold: float, path: Path, raw: pl.LazyFrame, search_json_text: bool) -> CheckedFile:
    """Normalise one attempt-log file's rows and count them by problem, in one streaming pass.

    With `search_json_text`, the pass also looks for text values that polars' ndjson reader made from JSON
    objects or lists (`JSON_TEXT`).
    """
    schema = raw.collect_schema()
    if missing := _missing_columns(schema):
        raise LogError(f"{path}: missing required column(s): {', '.join(missing)}")
    located = locate(path, raw, search_json_text, CHAT_COLUMNS)
    return tally(path, _normalise(located, schema, success_threshold))


def check_file(path: Path, check: Check, as_text: Sequence[str], plain: Mapping[str, str]) -> CheckedFile:
    """Scan and check one file; what polars cannot read is reported by its row, or read line by line (JSONL).

    `as_text` names the columns that hold JSON lists or objects, kept as their JSON text in every format;
    `plain` those that hold one plain value and what it is (the line reader marks a list or an object there)."""
    kind = SUFFIX_FORMATS[path.suffix.lower()]
    try:
        checked = check(path, _scan(path, kind, as_text), kind == "jsonl")
    except pl.exceptions.NoDataError as exc:
        if kind != "csv":
            raise LogError(f"{path}: cannot read as {kind}: {exc}") from exc
        raise LogError(f"{path}: the file is empty: no header, no attempts") from exc
    except pl.exceptions.PolarsError as exc:
        if kind == "parquet":
            raise LogError(f"{path}: cannot read as parquet: {exc}") from exc
        if kind == "csv":
            where = csv_problem(path) or f"cannot read as csv: {str(exc).splitlines()[0]}"
            raise LogError(f"{path}: {where}") from exc
        return _check_lines(path, check, as_text, plain)
    except OSError as exc:
        raise LogError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if checked.json_text:
        return _check_lines(path, check, as_text, plain)
    if kind != "jsonl":
        return checked
    counted = dataclasses.replace(checked, records=True)
    if checked.first_bad is None:
        return counted
    row, problem = checked.first_bad
    return dataclasses.replace(counted, first_bad=(counted.shown_row(row), problem))


def _check_lines(path: Path, check: Check, as_text: Sequence[str], plain: Mapping[str, str]) -> CheckedFile:
    """Check a JSONL file read by the line reader (in memory: for the files polars' reader cannot take); a line
    that is no JSON object is a bad row like any other."""
    try:
        lines = _read_jsonl_lines(path, as_text, plain)
    except OSError as exc:
        raise LogError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if lines.frame.columns == [SOURCE_ROW]:
        checked = CheckedFile(path, None, {})  # no row at all, so no columns to check
    else:
        checked = check(path, lines.frame.lazy(), False)
    if not lines.unreadable:
        return checked
    counts = Counter(checked.counts)
    counts.update(reason for _, reason, _ in lines.unreadable)
    line, _, problem = lines.unreadable[0]
    first_bad = min(filter(None, [checked.first_bad, (line, problem)]))
    return dataclasses.replace(checked, counts=dict(counts), first_bad=first_bad)


def read_attempts(
    paths: Sequence[str | Path], success_threshold: float = 1.0, skip_invalid: bool = False
) -> AttemptLog:
    """Read attempt logs in any supported format as one lazy scan, validating every row on the way.

    A bad row raises LogError naming its file, row and column, unless skip_invalid drops it and counts why.
    """
    files = find_log_files(paths)
    check = functools.partial(_check, success_threshold)
    checked = mark_differing_prompts([check_file(path, check, CHAT_COLUMNS, PLAIN_COLUMNS) for path in files])
    named = ", ".join(str(p) for p in files)
    total = sum(c.total for c in checked)
    if total == 0:
        raise LogError(f"{named}: the logs hold no attempts (no data rows)")
    skipped = skipped_rows(checked, skip_invalid, lambda one, row, problem: f"{one.path}: row {row}: {problem}")
    bad_rows = sum(skipped.values())
    if bad_rows == total:
        raise LogError(f"{named}: the logs hold no attempts (all {bad_rows} rows are invalid and were skipped)")
    plans = [plan for c in checked if (plan := c.valid_rows) is not None]
    return AttemptLog(
        attempts=pl.concat(plans, how="diagonal_relaxed"),
        files=files,
        rows_read=total,
        skipped=skipped,
        success_threshold=success_threshold,
    )
