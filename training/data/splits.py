"""Which requests are held out, validated on, or evaluated: the one split rule train, eval, compare and retrain share.

Rows whose split column says `test` are held out from fitting and from choosing the policy, and only
evaluated. Logs without a split column hold out a deterministic 20% of requests instead (by a hash of the
request id, stable across runs and machines). A further 20% of the training requests, hashed with the
seed, is the validation part the policy's rule and threshold are chosen on. When the training requests
outnumber a limit, a hashed share of them, about the limit, is trained on; every held-out request is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from tierwise.training.data.logs import LogError

HOLDOUT_SHARE = 0.2
VALIDATION_SHARE = 0.2
TEST = "test"
DEFAULT_COLUMN = "split"
_BUCKETS = 10_000


def _buckets(ids: pl.Series, salt: str) -> np.ndarray:
    return (ids.cast(pl.String) + salt).hash(seed=0).to_numpy() % _BUCKETS


def hashed_share(ids: pl.Series, share: float, salt: str) -> np.ndarray:
    """A deterministic pseudo-random `share` of ids, stable across runs and machines."""
    return _buckets(ids, salt) < share * _BUCKETS


def hashed_folds(ids: pl.Series, folds: int, salt: str) -> np.ndarray:
    """Each id's fold, 0 to `folds` - 1, by the same hash: stable across runs and machines."""
    return _buckets(ids, salt) * folds // _BUCKETS


@dataclass(frozen=True)
class SplitRule:
    """How one frame of labelled requests divides into train, validation and test."""

    column: str = DEFAULT_COLUMN

    def test_mask(self, frame: pl.DataFrame) -> np.ndarray:
        """The held-out requests: the column's `test` rows, or a hashed 20% when the column is absent."""
        if self.column in frame.columns:
            return (frame[self.column].cast(pl.String) == TEST).fill_null(False).to_numpy()
        return hashed_share(frame["request_id"], HOLDOUT_SHARE, "holdout")

    def validation_mask(self, frame: pl.DataFrame, seed: int) -> np.ndarray:
        """The training requests the policy is chosen on (a hashed share, different for each seed)."""
        return ~self.test_mask(frame) & hashed_share(frame["request_id"], VALIDATION_SHARE, f"validation-{seed}")

    def training_sample(self, frame: pl.DataFrame, limit: int) -> pl.DataFrame:
        """The frame with about `limit` training requests at most: a hashed share of them when there are more
        (stable across runs and machines), and every held-out request.

        A logistic head on a few hundred features learns no more from millions of requests than from one
        million, and each training request's embedding is held in memory while the head fits.
        """
        test = self.test_mask(frame)
        training = int((~test).sum())
        if training <= limit:
            return frame
        return frame.filter(pl.Series(test | hashed_share(frame["request_id"], limit / training, "train-sample")))

    def select(self, frame: pl.DataFrame, split: str | None) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(the requests of `split`, every other request); `None` selects every row.

        Logs without the split column can still select `test`: the requests training held out.
        """
        if split is None:
            return frame, frame.clear()
        if self.column not in frame.columns:
            if split != TEST:
                raise LogError(f"the logs have no {self.column!r} column, so split {split!r} cannot be selected")
            chosen = self.test_mask(frame)
        else:
            chosen = (frame[self.column].cast(pl.String) == split).fill_null(False).to_numpy()
            if not chosen.any():
                found = sorted(str(v) for v in frame[self.column].unique().drop_nulls().to_list())
                raise LogError(f"no request has {self.column} = {split!r} (found: {', '.join(found) or 'none'})")
        mask = pl.Series(chosen)
        return frame.filter(mask), frame.filter(~mask)
