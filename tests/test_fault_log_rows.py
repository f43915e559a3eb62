"""Fault suite: log rows that are not what they claim to be. A torn line, a list or an object where text belongs,
one request_id with two prompts, a timestamp that is no date or lies in the future: each is a bad row named by its
file, row and column, and `--skip-invalid` (label and collect alike) drops and counts it; nothing is merged, stored
as something else or left to a traceback. An unreachable Spark master is one line, at once."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from tierwise.classifier.tiers import TierLadder
from tierwise.serving.decision_log import decision_row
from tierwise.training.data.logs import read_attempts
from tierwise.training.fit.sufficiency import TooFewOutcomesError
from tierwise.training.fit.train import TrainOptions, train_bundle

from tests.test_collect import HAIKU, SONNET, collect, decision, outcome, write_jsonl
from tierwise.cli import main

pytestmark = pytest.mark.fault


def attempt(request_id: str, **change: object) -> dict:
    row = {"request_id": request_id, "model": HAIKU, "prompt": f"question {request_id}", "success": True}
    return row | {"timestamp": "2026-01-01T10:00:00+00:00"} | change


def label(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["label", *map(str, args)])
    return result.exit_code, result.output


BAD_ROWS = {
    "list prompt": ({"prompt": ["a"]}, "column prompt: expected text, got a list"),
    "list request_id": ({"request_id": ["a"]}, "column request_id: expected text, got a list"),
    "object prompt": ({"prompt": {"k": 1}}, "column prompt: expected text, got an object"),
    "list success": ({"success": [True]}, "column success: expected true or false, got a list"),
    "object cost": ({"cost_usd": {"usd": 1}}, "column cost_usd: expected a number, got an object"),
    "timestamp yesterday": ({"timestamp": "yesterday"}, "column timestamp: not an ISO 8601 date and time"),
    "timestamp a number": ({"timestamp": 1767225600}, "column timestamp: not an ISO 8601 date and time"),
    "timestamp in 9999": ({"timestamp": "9999-12-31T00:00:00Z"}, "column timestamp: in the future"),
    "second prompt": ({"request_id": "r1", "prompt": "another question"}, "column prompt: differs from the prompt"),
}


@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_a_bad_value_is_a_bad_row_naming_file_row_and_column(tmp_path, case, where):
    change, problem = BAD_ROWS[case]
    rows = [attempt(f"r{n}") for n in range(1, 5)]
    bad = len(rows) + 1 if where == "last" or case == "second prompt" else 1
    rows.insert(bad - 1, attempt("bad") | change)
    path = write_jsonl(tmp_path / "a.jsonl", rows)

    code, output = label(path, "--out", tmp_path / "labels.parquet")
    assert code == 2, output
    assert output.startswith(f"Error: {path}: row {bad}: {problem}") and "--skip-invalid" in output, output

    code, output = label(path, "--out", tmp_path / "labels.parquet", "--skip-invalid")
    assert code == 0, output
    assert "rows skipped:     1" in output and problem in output
    assert pl.read_parquet(tmp_path / "labels.parquet").height == 4


def test_a_parquet_list_prompt_is_a_bad_row(tmp_path):
    path = tmp_path / "a.parquet"
    pl.DataFrame([attempt("r1", prompt=["a"]), attempt("r2", prompt=["b", "c"])]).write_parquet(path)
    code, output = label(path, "--out", tmp_path / "labels.parquet")
    assert code == 2 and output.startswith(f"Error: {path}: row 1: column prompt: expected text, got a list"), output


def test_two_prompts_under_one_request_id_across_files_name_both_rows(tmp_path):
    first = write_jsonl(tmp_path / "a.jsonl", [attempt("r1"), attempt("r2")])
    second = write_jsonl(tmp_path / "b.jsonl", [attempt("r2"), attempt("r1", model=SONNET, prompt="not r1's")])
    code, output = label(first, second, "--out", tmp_path / "labels.parquet")
    assert code == 2
    assert f"{second}: row 2: column prompt: differs from the prompt of the first row with this request_id" in output
    assert f"({first}: row 1)" in output


def test_dates_and_times_in_iso_8601_are_read_whatever_their_zone(tmp_path):
    stamps = ["2026-01-01T10:00:00Z", "2026-01-01 11:00:00+01:00", "2026-01-02T09:30:00.25", "2026-01-03"]
    rows = [attempt(f"r{n}", timestamp=stamp) for n, stamp in enumerate(stamps)]
    assert read_attempts([write_jsonl(tmp_path / "a.jsonl", rows)]).last_days(1.5).selection.startswith("2 of 4")
    parquet = tmp_path / "a.parquet"
    frame = pl.DataFrame(rows).with_columns(pl.col("timestamp").str.to_date("%Y-%m-%d", strict=False))
    frame.with_columns(pl.col("timestamp").fill_null(pl.date(2026, 1, 1))).write_parquet(parquet)
    assert read_attempts([parquet]).last_days(1.5).selection.startswith("1 of 4")


def test_a_window_that_keeps_too_few_requests_says_so_naming_the_window(sample_logs, tmp_path):
    narrow = read_attempts([sample_logs]).last_days(0.01)
    with pytest.raises(TooFewOutcomesError, match=r"narrowed by --window to 1 of 600 requests last tried within 0.01"):
        train_bundle(narrow, tmp_path / "bundle", TierLadder.load(), TrainOptions())


def test_label_skip_invalid_counts_a_torn_line(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [attempt("r1"), attempt("r2")])
    path.write_text(path.read_text() + '{"request_id": "r3", "mod')
    code, output = label(path, "--out", tmp_path / "labels.parquet")
    assert code == 2 and f"{path}: row 3: not valid JSON" in output and "--skip-invalid" in output
    code, output = label(path, "--out", tmp_path / "labels.parquet", "--skip-invalid")
    assert code == 0 and "       1  not valid JSON" in output, output


def test_collect_gets_past_torn_lines_with_skip_invalid_and_says_how_without_it(tmp_path):
    decided = [decision_row(decision(name, f"Question {name}.")) for name in ("a", "b", "c")]
    reported = [outcome(n, request_id=name, model=HAIKU, success=True) for n, name in enumerate(("a", "b", "c"))]
    decisions = write_jsonl(tmp_path / "decisions.jsonl", decided)
    outcomes = write_jsonl(tmp_path / "outcomes.jsonl", reported)
    for log in (decisions, outcomes):  # a disk-full episode: one torn row in each log, the server went on writing
        lines = log.read_text().splitlines(keepends=True)
        log.write_text(lines[0] + lines[1][: len(lines[1]) // 2] + "\n" + "".join(lines[1:]))
    out = tmp_path / "attempts.parquet"

    code, output = collect(decisions, outcomes, "--out", out)
    assert code == 2 and f"{decisions}:2: not valid JSON" in output and "--skip-invalid drops them" in output, output
    assert not out.exists()

    code, output = collect(decisions, outcomes, "--out", out, "--skip-invalid")
    assert code == 0, output
    assert "skipped:    2 bad rows (--skip-invalid)" in output and "       2  not valid JSON" in output
    assert "decisions:  3 rows" in output and "outcomes:   3 reports" in output
    assert sorted(pl.read_parquet(out)["request_id"]) == ["a", "b", "c"]


def test_collect_names_a_list_where_text_belongs(tmp_path):
    decided = [decision_row(decision("a", "Question a.")) | {"tier": ["haiku"]}]
    decisions = write_jsonl(tmp_path / "decisions.jsonl", decided)
    outcomes = write_jsonl(tmp_path / "outcomes.jsonl", [outcome(1, request_id="a", model=HAIKU, success=True)])
    code, output = collect(decisions, outcomes, "--out", tmp_path / "attempts.parquet")
    assert code == 2 and f"{decisions}:1:tier: expected text, got a list" in output, output


def test_an_unreachable_spark_master_is_one_line_at_once_with_no_spark_log(tmp_path, sample_logs):
    pytest.importorskip("pyspark")
    with socket.socket() as bound:  # bound, never listening: a connection to it is refused
        bound.bind(("127.0.0.1", 0))
        master = f"spark://127.0.0.1:{bound.getsockname()[1]}"
        logs_before = set(Path("/tmp").glob("tierwise-spark-*.log"))
        started = time.monotonic()
        args = ["score", str(sample_logs), "--model", "models:/router@champion", "--out", str(tmp_path / "d.parquet")]
        result = CliRunner().invoke(main, [*args, "--engine", "spark", "--spark-master", master])
    assert result.exit_code == 2
    assert result.output == f"Error: --spark-master {master}: cannot connect to {master[8:]}: Connection refused\n"
    assert time.monotonic() - started < 30  # Spark itself gave up after 69 s
    assert set(Path("/tmp").glob("tierwise-spark-*.log")) == logs_before
    assert not (tmp_path / "d.parquet").exists()
