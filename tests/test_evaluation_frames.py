"""Labelled requests from real sample logs become the evaluation's arrays, censoring kept as NaN."""

import numpy as np
import polars as pl
import pytest
from tierwise.classifier.tiers import TierError, TierLadder
from tierwise.training.data.labels import label_requests
from tierwise.training.data.logs import read_attempts
from tierwise.training.data.sample_logs import write_sample_logs
from tierwise.training.data.splits import SplitRule
from tierwise.training.evaluation.frames import outcome_arrays, prompt_chars
from tierwise.training.evaluation.report import build_report


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    path = write_sample_logs(tmp_path_factory.mktemp("logs"), 300, seed=3, fmt="parquet", ladder=TierLadder.load())
    return label_requests(read_attempts([str(path)]), TierLadder.load())


def test_outcome_arrays_keep_untried_tiers_as_nan(labelled):
    frame = labelled.frame
    success, cost = outcome_arrays(frame, labelled.ladder.names)
    assert success.shape == cost.shape == (frame.height, len(labelled.ladder.names))
    assert np.isfinite(cost).all()
    untried = frame.select(pl.col(f"success_{n}").is_null() for n in labelled.ladder.names).to_numpy()
    assert (np.isnan(success) == untried).all() and untried.any()
    assert set(np.unique(success[~untried])) == {0.0, 1.0}
    censored = (frame["status"] == "censored").to_numpy()
    assert np.isnan(success[censored]).any(axis=1).all()


def test_sample_logs_evaluate_end_to_end_with_their_test_split(labelled):
    test, _ = SplitRule().select(labelled.frame, "test")
    assert 0 < test.height < labelled.frame.height
    success, cost = outcome_arrays(test, labelled.ladder.names)
    probs = np.full(success.shape, 0.5)
    report = build_report(labelled.ladder.names, success, cost, probs, 0.5, prompt_chars=prompt_chars(test))
    doc = report.to_json()
    assert doc["requests"] == test.height
    assert doc["excluded_incomplete"] == int(np.isnan(success).any(axis=1).sum()) > 0
    assert doc["apgr"] == pytest.approx(1 / 50)  # all-cheapest until the threshold passes 0.5, then all-top


def test_a_ladder_mismatch_is_explained(labelled):
    with pytest.raises(TierError, match="same tier ladder"):
        outcome_arrays(labelled.frame, ["haiku", "gpt"])
