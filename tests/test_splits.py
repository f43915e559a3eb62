"""The split rule every command shares: `test` rows held out, a hashed 20% without a split column, a seeded
validation share of the training rows, a hashed sample of the training rows on very large logs, and clear
errors for splits that are not there."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from tierwise.classifier.tiers import TierLadder
from tierwise.training.data.labels import label_requests
from tierwise.training.data.logs import LogError, read_attempts
from tierwise.training.data.splits import HOLDOUT_SHARE, VALIDATION_SHARE, SplitRule
from tierwise.training.fit.train_report import data_lines

from tests.helpers import train_files


@pytest.fixture
def frame() -> pl.DataFrame:
    ids = [f"req-{i}" for i in range(4000)]
    return pl.DataFrame({"request_id": ids, "split": ["test" if i % 4 == 0 else "train" for i in range(4000)]})


def test_the_split_column_decides_what_is_held_out(frame):
    assert SplitRule().test_mask(frame).tolist() == (frame["split"] == "test").to_list()


def test_without_a_split_column_a_stable_hashed_share_is_held_out(frame):
    unsplit = frame.drop("split")
    held = SplitRule().test_mask(unsplit)
    assert held.mean() == pytest.approx(HOLDOUT_SHARE, abs=0.03)
    assert (SplitRule().test_mask(unsplit.reverse())[::-1] == held).all()  # by request id, not by position


def test_validation_is_a_seeded_share_of_the_training_rows_only(frame):
    rule = SplitRule()
    test = rule.test_mask(frame)
    validation = rule.validation_mask(frame, seed=0)
    assert not (validation & test).any()
    assert validation[~test].mean() == pytest.approx(VALIDATION_SHARE, abs=0.03)
    assert (rule.validation_mask(frame, seed=0) == validation).all()
    assert not np.array_equal(rule.validation_mask(frame, seed=1), validation)


def test_select_returns_the_split_and_every_other_row(frame):
    chosen, rest = SplitRule().select(frame, "test")
    assert set(chosen["split"]) == {"test"} and set(rest["split"]) == {"train"}
    assert chosen.height + rest.height == frame.height
    everything, nothing = SplitRule().select(frame, None)
    assert everything.height == frame.height and nothing.height == 0


def test_logs_without_a_split_column_can_still_select_what_training_held_out(frame):
    unsplit = frame.drop("split")
    chosen, _ = SplitRule().select(unsplit, "test")
    assert (
        chosen["request_id"].to_list()
        == unsplit.filter(pl.Series(SplitRule().test_mask(unsplit)))["request_id"].to_list()
    )


def test_splits_that_are_not_there_are_explained(frame):
    with pytest.raises(LogError, match="found: test, train"):
        SplitRule().select(frame, "validation")
    with pytest.raises(LogError, match="no 'fold' column"):
        SplitRule("fold").select(frame, "holdout")


def test_a_training_sample_keeps_every_held_out_request_and_about_the_limit_of_the_rest(frame):
    rule = SplitRule()
    assert rule.training_sample(frame, limit=3000) is frame  # 3000 training requests: all of them
    sampled = rule.training_sample(frame, limit=1000)
    held = sampled.filter(pl.col("split") == "test")
    assert held["request_id"].to_list() == frame.filter(pl.col("split") == "test")["request_id"].to_list()
    assert (sampled["split"] == "train").sum() == pytest.approx(1000, abs=100)
    again = rule.training_sample(frame.reverse(), limit=1000).reverse()  # by request id, not by position
    assert again["request_id"].to_list() == sampled["request_id"].to_list()


def test_training_on_more_requests_than_the_limit_fits_a_sample_and_says_so(sample_logs, tmp_path):
    result = train_files([sample_logs], tmp_path / "bundle", encoder="static", max_train_requests=200)
    counts = result.manifest.data["requests"]
    everything = label_requests(read_attempts([sample_logs]), TierLadder.load()).frame
    assert counts["sampled_from"] == everything.height
    assert counts["test"] == int(SplitRule().test_mask(everything).sum())  # every held-out request evaluated
    assert counts["train"] == pytest.approx(200, abs=60) and counts["train"] + counts["test"] < everything.height
    trained = everything.height - counts["test"]
    assert f"a hashed sample of the {trained} training requests (--max-train-requests)" in data_lines(result)[0]
