"""Malformed attempt logs: each is refused naming its file, row and column (or counted under --skip-invalid),
and nothing that is not an attempt is ever counted as one: no NaN success, no silent merge, no empty training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from tierwise.training.data.labels import summarize
from tierwise.training.data.logs import LogError, read_attempts

from tests.helpers import label_files, write_rows
from tierwise.cli import main

HAIKU, SONNET = "claude-haiku-4-5", "claude-sonnet-4-5"
CSV_HEADER = "request_id,model,prompt,success,score,cost_usd\n"


def jsonl(path: Path, rows: list[dict]) -> Path:
    """Rows written with json.dumps, so a float NaN or infinity becomes the literal `NaN` / `Infinity`."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def scored(request_id: str, score: float, model: str = HAIKU) -> dict:
    return {"request_id": request_id, "model": model, "prompt": f"question {request_id}", "score": score}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["NaN", "inf", "-inf"])
def test_a_non_finite_jsonl_score_is_refused_not_counted_as_success(tmp_path, value):
    path = jsonl(tmp_path / "a.jsonl", [scored("r1", 0.9), scored("r2", value)])
    assert "NaN" in path.read_text() or "Infinity" in path.read_text()
    with pytest.raises(LogError, match=r"a\.jsonl: row 2: column score: not a finite number"):
        read_attempts([path], success_threshold=0.5)


@pytest.mark.parametrize("text", ["NaN", "nan", "inf", "-inf", "Infinity"])
def test_a_non_finite_csv_score_is_refused(tmp_path, text):
    path = tmp_path / "a.csv"
    path.write_text(f"{CSV_HEADER}r1,{HAIKU},hi,,0.9,\nr2,{HAIKU},hi,,{text},\n")
    with pytest.raises(LogError, match=r"a\.csv: row 3: column score: not a finite number"):
        read_attempts([path], success_threshold=0.5)


def test_a_nan_parquet_score_is_refused(tmp_path):
    path = write_rows([scored("r1", 0.9), scored("r2", float("nan"))], tmp_path / "a.parquet")
    with pytest.raises(LogError, match=r"a\.parquet: row 2: column score: not a finite number"):
        read_attempts([path], success_threshold=0.5)


def test_skip_invalid_counts_non_finite_scores_and_keeps_them_out(tmp_path):
    rows = [scored("r1", 0.9), scored("r2", float("nan")), scored("r3", float("inf")), scored("r4", 0.1)]
    log, labels = label_files([jsonl(tmp_path / "a.jsonl", rows)], success_threshold=0.5, skip_invalid=True)
    assert dict(log.skipped) == {"column score: not a finite number (NaN or infinity)": 2}
    assert labels.frame.sort("request_id")["request_id"].to_list() == ["r1", "r4"]
    assert labels.frame.sort("request_id")["success_haiku"].to_list() == [True, False]


@pytest.mark.parametrize(
    ("column", "value"),
    [("cost_usd", float("nan")), ("input_tokens", float("inf")), ("latency_ms", float("-inf"))],
)
def test_non_finite_measures_are_refused(tmp_path, column, value):
    rows = [{**scored("r1", 1.0), column: 1.0}, {**scored("r2", 1.0), column: value}]
    with pytest.raises(LogError, match=rf"row 2: column {column}: not a finite non-negative number"):
        read_attempts([jsonl(tmp_path / "a.jsonl", rows)])


def test_a_nan_csv_cost_is_refused(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(f"{CSV_HEADER}r1,{HAIKU},hi,true,,NaN\n")
    with pytest.raises(LogError, match=r"a\.csv: row 2: column cost_usd: not a finite non-negative number"):
        read_attempts([path])


# Row 2 holds a quoted prompt over two lines, so a CSV row is a record, not a line.
FIRST_ROWS = f'{CSV_HEADER}r1,{HAIKU},"two\nlines",true,,\n'


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        (f'r2,{HAIKU},"unterminated,true,,\nr3,{HAIKU},x,true,,\n', r"row 3: malformed quoting \(unexpected end"),
        (f'r2,{HAIKU},"say" hi,true,,\n', r"row 3: malformed quoting \(',' expected after"),
        (f"r2,{HAIKU},hi,true,,,surplus\n", r"row 3: 7 fields for 6 columns"),
        (f"r2,{HAIKU},\udcff\udcfe,true,,\n", r"row 3: column prompt: not valid UTF-8"),
    ],
    ids=["unterminated-quote", "text-after-quote", "surplus-field", "invalid-utf8"],
)
def test_csv_parse_errors_name_the_row(tmp_path, bad_row, message):
    path = tmp_path / "a.csv"
    path.write_bytes((FIRST_ROWS + bad_row).encode("utf-8", "surrogateescape"))
    with pytest.raises(LogError, match=rf"a\.csv: {message}"):
        read_attempts([path])


def test_nested_json_that_cannot_share_a_column_names_row_and_column(tmp_path):
    rows = [
        {**scored("r1", 1.0), "meta": {"source": "a"}},
        {**scored("r2", 1.0), "meta": None},
        {**scored("r3", 1.0), "meta": "plain text"},
    ]
    with pytest.raises(LogError, match=r"a\.jsonl: row 3: column meta: a string here, an object in row 1"):
        read_attempts([jsonl(tmp_path / "a.jsonl", rows)])


def test_a_jsonl_bad_row_is_named_by_its_line_when_blank_lines_come_before_it(tmp_path):
    """polars' ndjson reader skips blank lines when it numbers rows; the message still names the file's line."""
    path = tmp_path / "a.jsonl"
    bad = {"request_id": "r2", "model": HAIKU, "prompt": "q", "success": "maybe"}
    path.write_text("\n" + json.dumps(scored("r1", 1.0)) + "\n\n   \n" + json.dumps(bad) + "\n")
    with pytest.raises(LogError, match=r"a\.jsonl: row 5: column success: not a boolean"):
        read_attempts([path])


def test_jsonl_text_that_looks_like_json_stays_the_text_it_is(tmp_path):
    prompts = ["[INST] Translate this. [/INST]", '{"question": "2 + 2?"}', "[1, 2, 3]", "plain"]
    rows = [{**scored(f"r{i}", 1.0), "prompt": prompt} for i, prompt in enumerate(prompts)]
    log, labels = label_files([jsonl(tmp_path / "a.jsonl", rows)])
    assert labels.frame.sort("request_id")["prompt"].to_list() == prompts
    assert log.rows_read == 4


def empty_logs(tmp_path: Path) -> dict[str, Path]:
    header_only = tmp_path / "header.csv"
    header_only.write_text(CSV_HEADER)
    zero_rows = tmp_path / "zero.parquet"
    pl.DataFrame(
        schema={"request_id": pl.String, "model": pl.String, "prompt": pl.String, "success": pl.Boolean}
    ).write_parquet(zero_rows)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    return {"header-only csv": header_only, "0-row parquet": zero_rows, "empty jsonl": empty}


@pytest.mark.parametrize(("command", "out"), [("label", "labels.parquet"), ("train", "bundle")])
def test_logs_without_attempts_exit_2_saying_so(tmp_path, command, out):
    for kind, path in empty_logs(tmp_path).items():
        result = CliRunner().invoke(main, [command, str(path), "--out", str(tmp_path / out)])
        assert result.exit_code == 2, (kind, result.output)
        assert f"{path}: the logs hold no attempts (no data rows)" in result.output, kind


def test_logs_whose_every_row_was_skipped_exit_2(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", [scored("r1", float("nan")), scored("r2", float("inf"))])
    result = CliRunner().invoke(main, ["label", str(path), "--out", str(tmp_path / "l.parquet"), "--skip-invalid"])
    assert result.exit_code == 2
    assert "the logs hold no attempts (all 2 rows are invalid and were skipped)" in result.output


def test_logs_with_no_model_of_the_ladder_exit_2(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", [scored("r1", 1.0, model="gpt-9")])
    result = CliRunner().invoke(main, ["label", str(path), "--out", str(tmp_path / "l.parquet")])
    assert result.exit_code == 2
    assert "no attempt is by a model of the tier ladder ['haiku', 'sonnet', 'opus']" in result.output
    assert "['gpt-9']" in result.output


def test_conflicting_duplicates_are_counted_and_reported(tmp_path):
    def attempt(request_id: str, model: str, success: bool) -> dict:
        return {"request_id": request_id, "model": model, "prompt": "q", "success": success}

    rows = [
        attempt("r1", HAIKU, False),
        attempt("r1", HAIKU, True),  # disagrees with the row above
        attempt("r2", HAIKU, True),
        attempt("r2", HAIKU, True),  # a duplicate that agrees
        attempt("r2", SONNET, True),
        attempt("r3", SONNET, False),
    ]
    path = jsonl(tmp_path / "a.jsonl", rows)
    log, labels = label_files([path])
    summary = summarize(log, labels)
    assert (summary.duplicate_pairs, summary.conflicting_pairs) == (2, 1)
    r1 = labels.frame.filter(pl.col("request_id") == "r1").row(0, named=True)
    assert r1["success_haiku"] is True and r1["label"] == "haiku"
    result = CliRunner().invoke(main, ["label", str(path), "--out", str(tmp_path / "l.parquet")])
    assert result.exit_code == 0, result.output
    assert re.search(r"duplicate \(request, model\) pairs: 2, of which disagreeing on success: 1", result.output)
