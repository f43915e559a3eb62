"""What the audit reads, gathered once: each request (its label row, workload, what was logged for it) and each
attempt (its tier, cost split by what it paid for, time), with the labels' arrays per workload.

Costs follow the one cost rule (`tierwise.training.data.costs`): an attempt's logged `cost_usd`, else its tokens, else
its characters; an attempt none of these price costs what labelling gave its request on that tier (rule 4 or 5).
What a request cost as logged is the sum of its attempts; it succeeded as logged when any attempt succeeded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl
from tierwise.classifier.tiers import TierLadder
from tierwise.training.data.attempts import WORKLOAD
from tierwise.training.data.costs import CACHE_COLUMNS, COST_PARTS, attempt_cost, cost_parts
from tierwise.training.data.groups import group_keys, require_column
from tierwise.training.data.labels import Labels, label_requests, with_tiers
from tierwise.training.data.logs import STREAMING, AttemptLog
from tierwise.training.evaluation.frames import outcome_arrays

KEY = "_workload"
LOGGED_COST = "_logged_cost"
LOGGED_SUCCESS = "_logged_success"
PROMPT_TOKENS = "_prompt_tokens"  # an attempt's prompt as the API counted it (input plus cached tokens), if logged
ALREADY_CACHED = "_already_cached"  # the attempt already read or wrote the prompt cache
BAND = "latency_band"
ROW = "_row"  # a request's place among all labelled requests (its row of the prompt embeddings)


@dataclass(frozen=True)
class Workload:
    """One workload's requests (`frame`, label rows in log order) and attempts, with the arrays levers read.

    `success` and `cost` are (n, T), cheapest tier first (success NaN where the tier was never tried);
    `logged_cost` and `logged_success` (n,) what each request cost and whether it succeeded as logged.
    """

    name: str
    frame: pl.DataFrame
    attempts: pl.DataFrame
    ladder: TierLadder

    @cached_property
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return outcome_arrays(self.frame, self.ladder.names)

    @property
    def success(self) -> np.ndarray:
        return self.arrays[0]

    @property
    def cost(self) -> np.ndarray:
        return self.arrays[1]

    @property
    def logged_cost(self) -> np.ndarray:
        return self.frame[LOGGED_COST].to_numpy()

    @property
    def logged_success(self) -> np.ndarray:
        return self.frame[LOGGED_SUCCESS].cast(pl.Float64).to_numpy()

    @property
    def requests(self) -> int:
        return self.frame.height

    def per_request(self, values: pl.Expr, attempts: pl.DataFrame | None = None) -> np.ndarray:
        """An attempt-level value summed per request, in the order of `frame` (0 for requests without any), over
        the workload's attempts or some of them."""
        rows = self.attempts if attempts is None else attempts
        sums = rows.group_by("request_id").agg(values.sum().alias("_sum"))
        joined = self.frame.select("request_id").join(sums, on="request_id", how="left", maintain_order="left")
        return joined["_sum"].fill_null(0.0).to_numpy()

    def logged_band(self) -> str | None:
        """The latency band most of the workload's requests were routed in, where the logs say (collected traffic)."""
        if BAND not in self.frame.columns:
            return None
        bands = self.frame[BAND].drop_nulls()
        return Counter(bands.to_list()).most_common(1)[0][0] if bands.len() else None


@dataclass(frozen=True)
class AuditData:
    """Every labelled request and its attempts, split by workload (largest spend first)."""

    labels: Labels
    workloads: list[Workload]
    files: list[Path]
    column: str = WORKLOAD

    @property
    def ladder(self) -> TierLadder:
        return self.labels.ladder

    @property
    def has_workloads(self) -> bool:
        return self.column in self.labels.frame.columns


def _attempts(log: AttemptLog, labels: Labels) -> pl.DataFrame:
    """The attempts of labelled tiers with the columns levers read: request, tier, success, cost and its parts,
    latency, timestamp, the prompt's token count and whether the prompt cache was already used."""
    ladder = labels.ladder
    columns = log.columns
    scan = with_tiers(log.attempts, ladder).filter(pl.col("tier").is_not_null())
    parts = cost_parts(columns, ladder)
    cached = [pl.col(column).fill_null(0.0) for column, _ in CACHE_COLUMNS.values() if column in columns]
    prompt_tokens = pl.col("input_tokens") + sum(cached, pl.lit(0.0)) if "input_tokens" in columns else None
    nothing = pl.lit(None, dtype=pl.Float64)
    rows = scan.select(
        pl.col("request_id"),
        pl.col("tier").cast(pl.Int32),
        pl.col("success"),
        attempt_cost(columns, ladder).alias("cost"),
        *(parts[name].alias(name) for name in COST_PARTS),
        (pl.col("latency_ms") if "latency_ms" in columns else nothing).alias("latency_ms"),
        _timestamp(columns).alias("timestamp"),
        (prompt_tokens if prompt_tokens is not None else nothing).alias(PROMPT_TOKENS),
        (sum(cached, pl.lit(0.0)) > 0).alias(ALREADY_CACHED),
    ).collect(engine=STREAMING)
    filled = pl.concat(
        labels.frame.select("request_id", pl.lit(index, dtype=pl.Int32).alias("tier"), pl.col(f"cost_{name}")).rename(
            {f"cost_{name}": "_fill"}
        )
        for index, name in enumerate(ladder.names)
    )
    rows = rows.join(filled, on=["request_id", "tier"], how="left", maintain_order="left")
    return rows.with_columns(pl.coalesce("cost", "_fill").alias("cost")).drop("_fill")


def _timestamp(columns: list[str]) -> pl.Expr:
    if "timestamp" not in columns:
        return pl.lit(None, dtype=pl.Datetime("us", "UTC"))
    text = pl.col("timestamp").cast(pl.String)
    return text.str.to_datetime(time_zone="UTC", strict=False, time_unit="us")


def audit_data(log: AttemptLog, ladder: TierLadder, column: str = WORKLOAD) -> AuditData:
    """Label the logs, gather their attempts, and split both by workload: the per-request `column` (logs without a
    `workload` column are one group; another column must be there)."""
    labels = label_requests(log, ladder)
    if column != WORKLOAD:
        require_column(labels.frame, column)
    attempts = _attempts(log, labels)
    per_request = attempts.group_by("request_id").agg(pl.col("cost").sum().alias(LOGGED_COST))
    success = pl.any_horizontal(pl.col(f"success_{name}").fill_null(False) for name in ladder.names)
    frame = (
        labels.frame.with_row_index(ROW)
        .with_columns(group_keys(labels.frame, column).alias(KEY), success.alias(LOGGED_SUCCESS))
        .join(per_request, on="request_id", how="left", maintain_order="left")
        .with_columns(pl.col(LOGGED_COST).fill_null(0.0))
    )
    keyed = attempts.join(frame.select("request_id", KEY), on="request_id", how="left")
    spend = frame.group_by(KEY).agg(pl.col(LOGGED_COST).sum()).sort([LOGGED_COST, KEY], descending=[True, False])
    requests = frame.partition_by(KEY, as_dict=True, maintain_order=True)
    tried = keyed.partition_by(KEY, as_dict=True, maintain_order=True)
    empty = keyed.clear()
    workloads = [Workload(name, requests[(name,)], tried.get((name,), empty), ladder) for name in spend[KEY].to_list()]
    return AuditData(labels, workloads, log.files, column)
