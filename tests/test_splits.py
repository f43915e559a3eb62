"""The split rule every command shares: `test` rows held out, a hashed 20% without a split column, a seeded
validation share of the training rows, and clear errors for splits that are not there."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from training.logs import LogError
from training.splits import HOLDOUT_SHARE, VALIDATION_SHARE, SplitRule


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
