"""Finding the row that makes a whole attempt-log file unreadable, so the error can name it.

polars reads a file at once and, when it fails, says what went wrong but rarely where. These run only after
such a failure: they find the first row polars cannot take and say why, as `row N: ...` (CSV rows count the
header as row 1, as the readers' row numbers do; JSONL rows are lines).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

KINDS = ((bool, "true/false"), (int | float, "a number"), (str, "a string"), (dict, "an object"), (list, "a list"))


def _record_ends(text: str) -> tuple[list[str], list[int]]:
    """The CSV header, and the character offset where each record ends (a quoted field may span lines)."""
    consumed = [0]

    def tracked() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            consumed[0] += len(line)
            yield line

    header: list[str] = []
    ends: list[int] = []
    limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        for fields in csv.reader(tracked()):
            header = header or fields
            ends.append(consumed[0])
    finally:
        csv.field_size_limit(limit)
    return header, ends


def _csv_reads(text: str) -> bool:
    try:
        pl.read_csv(io.BytesIO(text.encode("utf-8", "surrogateescape")), infer_schema=False)
    except pl.exceptions.PolarsError:
        return False
    return True


def _csv_reason(raw: str, header: Sequence[str]) -> str:
    """Why one CSV record cannot be read."""
    for column, value in zip(header, next(csv.reader(io.StringIO(raw, newline="")), []), strict=False):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"column {column}: not valid UTF-8"
    try:
        fields = next(csv.reader(io.StringIO(raw, newline=""), strict=True), [])
    except csv.Error as exc:
        return f"malformed quoting ({exc})"
    if len(fields) > len(header):
        return f"{len(fields)} fields for {len(header)} columns"
    return "malformed quoting (a quote inside an unquoted field? quote the field and double its quotes)"


def csv_problem(path: Path) -> str | None:
    """`row N: why` for the first record of a CSV file that polars cannot read; None if none is found."""
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    header, ends = _record_ends(text)
    if not ends or _csv_reads(text[: ends[-1]]):
        return None
    low, high = 1, len(ends)  # the first unreadable record, 1-based
    while low < high:
        middle = (low + high) // 2
        if _csv_reads(text[: ends[middle - 1]]):
            low = middle + 1
        else:
            high = middle
    start = ends[low - 2] if low > 1 else 0
    return f"row {low}: {_csv_reason(text[start : ends[low - 1]], header)}"


def _tabulates(rows: Sequence[dict[str, Any]]) -> bool:
    try:
        pl.from_dicts(rows, infer_schema_length=None, strict=False)
    except pl.exceptions.PolarsError:
        return False
    return True


def _kind(value: Any) -> str:
    return next((name for kind, name in KINDS if isinstance(value, kind)), type(value).__name__)


def untabulated_row(rows: Sequence[dict[str, Any]], row_key: str) -> str:
    """`row N: column C: ...` for the first JSON row whose value cannot share a column with earlier rows'."""
    low, high = 1, len(rows)
    while low < high:
        middle = (low + high) // 2
        if _tabulates(rows[:middle]):
            low = middle + 1
        else:
            high = middle
    bad, before = rows[low - 1], rows[: low - 1]
    for column, value in bad.items():
        if value is None or _tabulates([{column: row.get(column)} for row in rows[:low]]):
            continue
        earlier = next((row for row in before if row.get(column) is not None), None)
        unlike = f", {_kind(earlier[column])} in row {earlier[row_key]}" if earlier else ""
        return f"row {bad[row_key]}: column {column}: {_kind(value)} here{unlike}"
    return f"row {bad[row_key]}: its values do not fit the columns of the rows before it"
