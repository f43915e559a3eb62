"""Labelling: the cheapest successful tier, and honest statuses, on hand-made logs in every format."""

from __future__ import annotations

import polars as pl
import pytest
from tierwise.classifier.tiers import TierLadder
from tierwise.training.data.labels import summarize

from tests.helpers import SHARED_DATA, label_files, write_rows

HAIKU, SONNET, OPUS = "claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5"


def attempt(request_id: str, model: str, success: bool, **extra) -> dict:
    return {"request_id": request_id, "prompt": f"question {request_id}", "model": model, "success": success, **extra}


HAND_MADE = [
    # r1: haiku fails, sonnet succeeds -> solved, sonnet
    attempt("r1", HAIKU, False, input_tokens=1000, output_tokens=1000),
    attempt("r1", SONNET, True, input_tokens=1000, output_tokens=1000),
    attempt("r1", OPUS, True, input_tokens=1000, output_tokens=1000),
    # r2: everything tried, nothing succeeds -> unsolved, labelled with the top tier
    attempt("r2", HAIKU, False),
    attempt("r2", SONNET, False),
    attempt("r2", OPUS, False),
    # r3: only opus tried and it succeeded -> censored (haiku and sonnet unknown)
    attempt("r3", OPUS, True, cost_usd=0.5),
    # r4: haiku succeeds -> solved, haiku, even though nothing else was tried
    attempt("r4", HAIKU, True, cost_usd=0.01),
    # r5: sonnet tried and failed, opus never tried -> censored with no label
    attempt("r5", SONNET, False),
    # r6: haiku retried: one failure and one success -> solved, haiku
    attempt("r6", HAIKU, False),
    attempt("r6", HAIKU, True),
]
EXPECTED = {
    "r1": ("sonnet", "solved"),
    "r2": ("opus", "unsolved"),
    "r3": ("opus", "censored"),
    "r4": ("haiku", "solved"),
    "r5": (None, "censored"),
    "r6": ("haiku", "solved"),
}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_every_status_in_every_format(tmp_path, suffix):
    path = write_rows(HAND_MADE, tmp_path / f"attempts{suffix}")
    _, labels = label_files([path])
    got = {row["request_id"]: (row["label"], row["status"]) for row in labels.frame.iter_rows(named=True)}
    assert got == EXPECTED
    r1 = labels.frame.filter(pl.col("request_id") == "r1").row(0, named=True)
    assert (r1["success_haiku"], r1["success_sonnet"], r1["success_opus"]) == (False, True, True)
    assert r1["cost_sonnet"] == pytest.approx((1000 * 3 + 1000 * 15) / 1e6)
    r3 = labels.frame.filter(pl.col("request_id") == "r3").row(0, named=True)
    assert r3["success_haiku"] is None and r3["cost_opus"] == pytest.approx(0.5)


def test_score_column_with_threshold_and_messages(tmp_path):
    rows = [
        {"request_id": "a", "messages": [{"role": "user", "content": "hi"}], "model": HAIKU, "score": 0.7},
        {"request_id": "a", "messages": [{"role": "user", "content": "hi"}], "model": SONNET, "score": 0.9},
    ]
    path = write_rows(rows, tmp_path / "attempts.jsonl")
    _, strict = label_files([path])
    assert strict.frame.row(0, named=True)["status"] == "censored"
    _, lenient = label_files([path], success_threshold=0.8)
    row = lenient.frame.row(0, named=True)
    assert (row["label"], row["prompt"]) == ("sonnet", "user: hi")


def test_directory_of_mixed_formats_and_extra_columns_kept(tmp_path):
    write_rows([attempt("x", HAIKU, True, split="test", category="math")], tmp_path / "a.jsonl")
    write_rows([attempt("y", OPUS, False, split="train", category="law")], tmp_path / "b.parquet")
    log, labels = label_files([tmp_path])
    assert len(log.files) == 2
    assert dict(labels.frame.select("request_id", "split").iter_rows()) == {"x": "test", "y": "train"}


def test_unknown_models_are_reported_not_guessed(tmp_path):
    rows = [attempt("r", HAIKU, False), attempt("r", "gpt-9", True), attempt("r", SONNET, True)]
    log, labels = label_files([write_rows(rows, tmp_path / "a.jsonl")])
    summary = summarize(log, labels)
    assert summary.unknown_models == {"gpt-9": 1}
    assert summary.attempts == 2
    assert labels.frame.row(0, named=True)["label"] == "sonnet"


def test_summary_costs_oracle_against_always_top(tmp_path):
    path = write_rows(HAND_MADE, tmp_path / "a.parquet")
    log, labels = label_files([path])
    summary = summarize(log, labels)
    assert summary.status_counts == {"solved": 3, "unsolved": 1, "censored": 2}
    assert summary.requests == 6 and summary.rows_read == len(HAND_MADE)
    frame = labels.frame.filter(pl.col("status") != "censored")
    assert summary.cost_always_top == pytest.approx(frame["cost_opus"].sum())
    assert summary.cost_oracle < summary.cost_always_top
    assert "censored" in summary.render()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"request_id": "a", "prompt": "p", "model": HAIKU, "success": "maybe"}], "row 2: column success"),
        ([{"request_id": "a", "prompt": "", "model": HAIKU, "success": "true"}], "row 2: column prompt"),
        ([{"request_id": "a", "prompt": "p", "model": HAIKU, "success": "1", "cost_usd": "-3"}], "column cost_usd"),
    ],
)
def test_bad_rows_name_file_row_and_column(tmp_path, rows, message):
    path = write_rows(rows, tmp_path / "bad.csv")
    with pytest.raises(ValueError, match=message) as error:
        label_files([path])
    assert "bad.csv" in str(error.value)


def test_skip_invalid_drops_and_counts(tmp_path):
    rows = [attempt("ok", HAIKU, True), {"request_id": "bad", "prompt": "p", "model": HAIKU}]
    path = tmp_path / "a.jsonl"
    path.write_text('{"request_id": "ok", "prompt": "p", "model": "claude-haiku-4-5", "success": true}\n{"oops"\n')
    with pytest.raises(ValueError, match="row 2: not valid JSON"):
        label_files([path])
    write_rows(rows, path)
    log, labels = label_files([path], skip_invalid=True)
    assert labels.frame.height == 1
    assert log.skipped == {"column success: missing (and no score)": 1}


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("dataset", "requests", "statuses"),
    [
        ("mmlu_pro", 12032, {"solved": 9838, "unsolved": 2190, "censored": 4}),
        ("routerbench", 3164, {"solved": 2963, "unsolved": 191, "censored": 10}),
    ],
)
def test_real_datasets(dataset, requests, statuses):
    root = SHARED_DATA / dataset
    if not root.exists():
        pytest.skip("../shared/data is not present")
    log, labels = label_files([root / "attempts.parquet"], tiers=str(root / "tiers.toml"))
    summary = summarize(log, labels)
    assert summary.requests == requests
    assert summary.status_counts == statuses
    ladder = TierLadder.load(root / "tiers.toml")
    assert sum(summary.label_counts.values()) == requests - labels.frame["label"].null_count()
    assert labels.frame.columns[:4] == ["request_id", "prompt", "label", "status"]
    assert all(f"success_{n}" in labels.frame.columns for n in ladder.names)
