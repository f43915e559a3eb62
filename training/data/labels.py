"""Labelling: each request's cheapest successful tier, with censoring stated instead of guessed."""

from __future__ import annotations

import functools
import os
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import polars as pl
from tierwise.classifier.outputs import atomic_file
from tierwise.classifier.tiers import TierLadder
from tierwise.training.data.attempts import is_attempt_column
from tierwise.training.data.costs import attempt_cost, fill_missing_costs
from tierwise.training.data.logs import STREAMING, AttemptLog, LogError

SOLVED, UNSOLVED, CENSORED = "solved", "unsolved", "censored"
FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)
PLACE = "_place"  # an attempt row's place in the logs (file by file, row by row)
# Rows per Parquet row group of a streamed write: the writer holds a group's text until it is full.
ROW_GROUP = 1024


@dataclass
class Labels:
    """One row per request (`frame`) and what was left out or merged on the way.

    `duplicate_pairs`: (request, model) pairs logged more than once; `conflicting_pairs`: those among them
    whose rows disagree on success (merged by the rule that any success counts). `sampled_from`: the number of
    requests labelled when `frame` holds a sample of them (training on very large logs), else None.
    """

    frame: pl.DataFrame
    ladder: TierLadder
    attempts: int
    unknown_models: Counter[str] = field(default_factory=Counter)
    duplicate_pairs: int = 0
    conflicting_pairs: int = 0
    sampled_from: int | None = None

    def success_matrix(self) -> pl.DataFrame:
        """The `success_<tier>` columns, cheapest first (null where a tier was never tried)."""
        return self.frame.select(f"success_{name}" for name in self.ladder.names)

    def cost_matrix(self) -> pl.DataFrame:
        """The `cost_<tier>` columns, cheapest first."""
        return self.frame.select(f"cost_{name}" for name in self.ladder.names)


def with_tiers(attempts: FrameT, ladder: TierLadder) -> FrameT:
    """Attempt rows with a `tier` column: the ladder index of the row's model (null for models no tier lists).

    A chain of `is_in` tests rather than `replace_strict`, which polars' streaming engine cannot stream (it
    would hold every attempt, prompts included, in memory).
    """
    tier = pl.lit(None, dtype=pl.Int64)
    for index, listed in reversed(list(enumerate(ladder.tiers))):
        tier = pl.when(pl.col("model").is_in(list(listed.models))).then(pl.lit(index, dtype=pl.Int64)).otherwise(tier)
    return attempts.with_columns(tier.alias("tier"))


def _per_tier(index: int, name: str, latency: bool) -> list[pl.Expr]:
    """A request's outcome on one tier: any success, the mean cost and mean latency of the tier's attempts (null
    when the tier was never tried)."""
    of_tier = pl.col("tier") == index
    return [
        pl.when(of_tier).then(pl.col("success")).max().alias(f"success_{name}"),
        pl.when(of_tier).then(pl.col("_cost")).mean().alias(f"cost_{name}"),
        (pl.when(of_tier).then(pl.col("latency_ms")).mean() if latency else pl.lit(None, dtype=pl.Float64)).alias(
            f"latency_{name}"
        ),
    ]


def label_requests(log: AttemptLog, ladder: TierLadder) -> Labels:
    """Label every request with the cheapest tier that succeeded and whether that label is certain.

    solved: a tier succeeded and every cheaper tier was tried and failed. unsolved: every tier was tried and
    none succeeded (labelled with the top tier). censored: a tier below the cheapest success (or, with no
    success, any tier) was never tried, so the true label is unknown; the label is then the cheapest
    success seen, or null.

    Several attempts of one tier on one request (retries, duplicate rows, two models of the tier) count as a
    success if any of them succeeded: the tier can answer the request. Duplicate (request, model) rows, and
    those that disagree, are counted in `Labels` so the merge is never silent. A request's prompt is its first
    attempt's; each per-request column (`split`, ...) is its first attempt's value that is not null.

    The logs need not fit in memory: polars' streaming engine aggregates the attempts per request as it scans
    them, on numbers only (texts held per group cost many times their size); the prompts and per-request
    texts are then fetched once per request, by their rows' places in the logs.
    """
    attempts = with_tiers(log.attempts, ladder).with_row_index(PLACE)
    unknown = attempts.filter(pl.col("tier").is_null()).group_by("model").len().collect(engine=STREAMING)
    unknown_models: Counter[str] = Counter(dict(unknown.iter_rows()))
    attempts = attempts.filter(pl.col("tier").is_not_null())
    columns = attempts.collect_schema().names()
    attempts = attempts.with_columns(attempt_cost(columns, ladder).alias("_cost"))
    extras = [c for c in columns if not is_attempt_column(c) and c != PLACE]
    latency = "latency_ms" in columns
    requests = (
        attempts.group_by("request_id")
        .agg(
            pl.len().alias("_attempts"),
            pl.col(PLACE).min().alias("prompt"),
            *(pl.when(pl.col(c).is_not_null()).then(pl.col(PLACE)).min().alias(c) for c in extras),
            *(column for index, name in enumerate(ladder.names) for column in _per_tier(index, name, latency)),
        )
        .collect(engine=STREAMING)
        .sort("prompt")  # the order requests first appear in
    )
    if requests.height == 0:
        raise LogError(
            f"no attempt is by a model of the tier ladder {ladder.names}: the logs name only "
            f"{sorted(unknown_models)[:10]} (give a ladder with --tiers)"
        )
    duplicate, conflicting = _repeated_pairs(attempts, requests["request_id"])
    labelled = int(requests["_attempts"].sum())
    requests = fill_missing_costs(_fetch_texts(attempts, requests.drop("_attempts"), extras), ladder)
    return Labels(
        frame=_assign_labels(requests, ladder),
        ladder=ladder,
        attempts=labelled,
        unknown_models=unknown_models,
        duplicate_pairs=duplicate,
        conflicting_pairs=conflicting,
    )


def _repeated_pairs(attempts: pl.LazyFrame, request_ids: pl.Series) -> tuple[int, int]:
    """The (request, model) pairs logged more than once, and those among them whose rows disagree on success.

    Pairs are grouped by the request id's 64-bit hash and the model as a category, half the memory of grouping
    by their texts; exact because the ids are checked to have distinct hashes first (else grouped by text).
    """
    distinct = request_ids.hash().n_unique() == request_ids.len()
    request = pl.col("request_id").hash() if distinct else pl.col("request_id")
    pairs = (
        attempts.group_by(request.alias("request"), pl.col("model").cast(pl.Categorical))
        .agg(pl.len().alias("rows"), (pl.col("success").min() != pl.col("success").max()).alias("disagree"))
        .select((pl.col("rows") > 1).sum(), pl.col("disagree").sum())
        .collect(engine=STREAMING)
    )
    return int(pairs["rows"][0]), int(pairs["disagree"][0])


def _rows_at(attempts: pl.LazyFrame, places: pl.Series, columns: list[str]) -> pl.DataFrame:
    """The attempt rows at these places (ascending, each once), with these columns: one streaming scan.

    A kept text would be a view into its whole batch's decoded column (every attempt's prompt) and keep it
    alive; appending "" writes each kept text anew, so only they stay in memory.
    """
    schema = attempts.collect_schema()
    copied = [pl.col(c) + "" if schema[c] == pl.String else pl.col(c) for c in columns]
    rows = attempts.filter(pl.col(PLACE).is_in(places.implode())).select(PLACE, *copied).collect(engine=STREAMING)
    return rows if rows[PLACE].is_sorted() else rows.sort(PLACE)


def _fetch_texts(attempts: pl.LazyFrame, requests: pl.DataFrame, extras: list[str]) -> pl.DataFrame:
    """Replace the places in `requests` (sorted by `prompt`, the place of each request's first attempt; `extras`:
    the place of each one's first value that is not null) by the values there.

    The first attempts' rows come back in the requests' order, so they are set side by side with no join (a join
    would copy every prompt). Per-request values missing on a first attempt but logged later are fetched apart.
    """
    first = _rows_at(attempts, requests["prompt"], ["prompt", *extras])
    fetched = requests.with_columns(first["prompt"], *(first[c] for c in extras))
    for column in extras:
        later = requests.filter(pl.col(column) != pl.col("prompt"))[column]
        if later.len():
            values = _rows_at(attempts, later.sort(), [column]).rename({PLACE: column, column: "_value"})
            patch = requests.select(column).join(values, on=column, how="left", maintain_order="left")["_value"]
            fetched = fetched.with_columns(pl.coalesce(column, patch).alias(column))
    return fetched


def _assign_labels(requests: pl.DataFrame, ladder: TierLadder) -> pl.DataFrame:
    names = ladder.names
    success = [pl.col(f"success_{n}") for n in names]
    cheapest_success = pl.lit(None, dtype=pl.Int64)
    for index in reversed(range(len(names))):
        cheapest_success = pl.when(success[index].fill_null(False)).then(index).otherwise(cheapest_success)
    first_untried = pl.lit(None, dtype=pl.Int64)
    for index in reversed(range(len(names))):
        first_untried = pl.when(success[index].is_null()).then(index).otherwise(first_untried)
    untried_below = first_untried.is_not_null() & (cheapest_success.is_null() | (first_untried < cheapest_success))
    status = (
        pl.when(untried_below)
        .then(pl.lit(CENSORED))
        .when(cheapest_success.is_null())
        .then(pl.lit(UNSOLVED))
        .otherwise(pl.lit(SOLVED))
    )
    label_index = pl.when(status == UNSOLVED).then(len(names) - 1).otherwise(cheapest_success)
    label = label_index.replace_strict(list(range(len(names))), names, default=None, return_dtype=pl.String)
    front = ["request_id", "prompt", "label", "status"]
    frame = requests.with_columns(label.alias("label"), status.alias("status"))
    return frame.select(front + [c for c in frame.columns if c not in front])


@dataclass(frozen=True)
class LabelSummary:
    """The counts a user checks after labelling: nothing read may go unaccounted for."""

    files: int
    rows_read: int
    rows_skipped: dict[str, int]
    attempts: int
    unknown_models: dict[str, int]
    duplicate_pairs: int
    conflicting_pairs: int
    requests: int
    label_counts: dict[str, int]
    status_counts: dict[str, int]
    cost_always_top: float
    cost_oracle: float
    costed_requests: int

    def render(self) -> str:
        """A plain-text report for the terminal."""
        lines = [
            f"files:            {self.files}",
            f"rows read:        {self.rows_read}",
            f"rows skipped:     {sum(self.rows_skipped.values())}",
        ]
        lines += [f"  {count:>8}  {reason}" for reason, count in self.rows_skipped.items()]
        lines.append(f"unknown-model attempts (not labelled): {sum(self.unknown_models.values())}")
        by_count = sorted(self.unknown_models.items(), key=lambda item: (-item[1], item[0]))
        lines += [f"  {count:>8}  {model}" for model, count in by_count[:10]]
        if len(by_count) > 10:
            lines.append(f"  ... and {len(by_count) - 10} more models")
        lines += [
            f"duplicate (request, model) pairs: {self.duplicate_pairs}, of which disagreeing on success: "
            f"{self.conflicting_pairs} (any success counts)",
            f"attempts labelled: {self.attempts}",
            f"requests:          {self.requests}",
            "status:",
        ]
        lines += [f"  {status:<9} {self.status_counts.get(status, 0):>8}" for status in (SOLVED, UNSOLVED, CENSORED)]
        lines.append("label distribution (cheapest successful tier):")
        lines += [f"  {name:<14} {count:>8}" for name, count in self.label_counts.items()]
        saving = 1 - self.cost_oracle / self.cost_always_top if self.cost_always_top else 0.0
        lines += [
            f"cost over the {self.costed_requests} solved and unsolved requests:",
            f"  always top tier: ${self.cost_always_top:,.4f}",
            f"  oracle (labelled tier): ${self.cost_oracle:,.4f}  ({saving:.1%} less)",
        ]
        return "\n".join(lines)


def summarize(log: AttemptLog, labels: Labels) -> LabelSummary:
    """Count requests, statuses, labels and the always-top vs oracle cost of a labelling run."""
    frame = labels.frame
    names = labels.ladder.names
    status_counts = dict(frame.group_by("status").len().iter_rows())
    label_counts = {name: frame.filter(pl.col("label") == name).height for name in names}
    known = frame.filter(pl.col("status") != CENSORED)
    oracle = pl.lit(0.0)
    for name in names:
        oracle = pl.when(pl.col("label") == name).then(pl.col(f"cost_{name}")).otherwise(oracle)
    costs = known.select(pl.col(f"cost_{names[-1]}").sum().alias("top"), oracle.sum().alias("oracle"))
    return LabelSummary(
        files=len(log.files),
        rows_read=log.rows_read,
        rows_skipped=dict(log.skipped),
        attempts=labels.attempts,
        unknown_models=dict(labels.unknown_models),
        duplicate_pairs=labels.duplicate_pairs,
        conflicting_pairs=labels.conflicting_pairs,
        requests=frame.height,
        label_counts=label_counts,
        status_counts=status_counts,
        cost_always_top=float(costs["top"][0] or 0.0),
        cost_oracle=float(costs["oracle"][0] or 0.0),
        costed_requests=known.height,
    )


TABLE_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def table_format(path: str | Path) -> str:
    """The format `write_table` will use for a path (by its extension); LogError for one it cannot write.

    Commands that work long before writing check their output path with it first.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise LogError(f"{path}: unknown output format {suffix!r}; use .parquet, .csv or .jsonl")
    return TABLE_FORMATS[suffix]


def write_table(rows: pl.DataFrame | pl.LazyFrame, path: str | Path) -> Path:
    """Write rows as Parquet, CSV or JSONL, chosen by the file's extension, through `atomic_file`: a failed or
    killed write leaves the earlier file as it was. A LazyFrame streams to the file through polars' sink."""
    out = Path(path)
    kind = table_format(out)
    with atomic_file(out) as tmp, _os_errors():
        if isinstance(rows, pl.LazyFrame):
            parquet = functools.partial(rows.sink_parquet, row_group_size=ROW_GROUP)
            writers = {"parquet": parquet, "csv": rows.sink_csv, "jsonl": rows.sink_ndjson}
        else:
            writers = {"parquet": rows.write_parquet, "csv": rows.write_csv, "jsonl": rows.write_ndjson}
        writers[kind](tmp)
    return out


@contextmanager
def _os_errors() -> Iterator[None]:
    """Raise a polars write error that carries an OS error only in its text (Parquet's writer on a full disk says
    "... (os error 28)") as that OSError, with its number and the system's words for it."""
    try:
        yield
    except (pl.exceptions.PolarsError, OSError) as exc:
        found = re.search(r"\(os error (\d+)\)", str(exc))
        if found is None or (isinstance(exc, OSError) and exc.errno is not None):
            raise
        raise OSError(int(found[1]), os.strerror(int(found[1]))) from exc
