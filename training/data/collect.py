"""`tierwise collect`: served traffic into attempt logs, joining the decision log with the outcome log.

Every reported attempt becomes one attempt-log row (`tierwise.training.data.attempts`): the prompt and the routing
decision from the decision log (or the prompt from `--prompts` when the server redacted it), the grade and the
measurements from the outcome log. Several reports of one attempt (request_id, model, attempt), such as a
later grade, merge into one row: values of later reports (by their `time`) win where they are not null.
Nothing is dropped silently: every attempt that cannot become a row is counted under its reason.

Input files are told apart by their columns: a decision log's rows carry `fallback_chain`, anything else is
read as outcomes. JSONL, CSV and Parquet, as for attempt logs; a malformed row (a torn line too) stops with
file:line:field, unless `--skip-invalid` drops it, counted by reason.

Served traffic may be larger than memory, so no file is read whole and no prompt is held. Each file is checked
in one streaming pass of the scan attempt logs are read through (`tierwise.training.data.logs.check_file`). What is
held in memory is small per request and per attempt: the place (file, row) of each request's last decision, the merged
outcome values of each attempt, and where each --prompts text is with its hash. The attempt rows are then
written by the streaming engine, the decisions' text going straight from their files to the output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from tierwise.classifier.records import DECISION_MARKER, OUTCOME_MEASURES
from tierwise.classifier.text import render_messages
from tierwise.classifier.tiers import TierLadder
from tierwise.training.data.attempts import DECISION, SCHEMA, SOURCE_ROW
from tierwise.training.data.labels import CENSORED, label_requests, table_format, write_table
from tierwise.training.data.logs import (
    ERROR,
    JSON_FLAG,
    NESTED,
    NOT_JSON,
    NOT_OBJECT,
    STREAMING,
    Check,
    CheckedFile,
    LogError,
    as_bool,
    as_float,
    check_file,
    find_log_files,
    json_as_text,
    locate,
    read_attempts,
    skipped_rows,
    tally,
    too_long_identifier,
    without_nested,
)

# The columns of decision and prompt rows that hold JSON lists or maps: JSON text in every format.
STRUCTURES = ("fallback_chain", "probabilities", "propensities", "messages")
# The columns of decision, outcome and prompt rows that hold one plain value, and what each one holds.
PLAIN = {
    **dict.fromkeys(("request_id", "prompt", "prompt_sha256", "tier", "model", "model_version"), "text"),
    **dict.fromkeys(("latency_band", "error", "time", "timestamp"), "text"),
    **dict.fromkeys(("explored", "success"), "true or false"),
    **dict.fromkeys(("propensity", "attempt", "score", *OUTCOME_MEASURES), "a number"),
}
FILE = "_file"  # a file's place among the inputs of its kind: file order breaks ties between equal times
SHA256 = "_sha256"
ATTEMPT = ("request_id", "model", "attempt")
REPORTED = ("success", "score", "error", "timestamp", *OUTCOME_MEASURES)
# The columns collect writes, in a stable order, with the attempt-log schema's types.
COLUMNS = {
    name: {**SCHEMA, **DECISION}[name]
    for name in (
        *("request_id", "prompt", "messages", "model", "attempt", "success", "score", *OUTCOME_MEASURES),
        *("error", "timestamp", *DECISION),
    )
}

NO_DECISION = "no decision for its request_id"
NO_PROMPT = "no prompt (redacted, and not in --prompts)"
WRONG_PROMPT = "the --prompts text does not match the decision's prompt_sha256"
UNGRADED = "not graded (no success or score)"


READ = pl.Struct({"text": pl.String(), "problem": pl.String()})
Reader = Callable[[Any], tuple[str | None, str | None]]  # a decoded JSON value -> (its text to keep, problem)


def _reading(read: Reader, kind: type) -> Callable[[pl.Series], pl.Series]:
    """Decode a batch of JSON texts, check each value's kind and read it (`READ`: the text kept, or a problem)."""

    def batch(values: pl.Series) -> pl.Series:
        texts: list[str | None] = []
        problems: list[str | None] = []
        for raw in values.to_list():
            try:
                value = None if raw is None else json.loads(raw)
            except json.JSONDecodeError:
                text, problem = None, f"expected a JSON {kind.__name__}, got {raw!r}"
            else:
                wrong = value is not None and not isinstance(value, kind)
                text, problem = (None, f"expected a {kind.__name__}, got {value!r}") if wrong else read(value)
            texts.append(text)
            problems.append(problem)
        return pl.DataFrame({"text": texts, "problem": problems}, schema=dict(READ.to_schema())).to_struct()

    return batch


class _Fields:
    """Expressions reading one file's fields into checked values, and the problems met on the way, in the
    order the fields are read: a row's error names the first of its fields with a problem."""

    def __init__(self, schema: pl.Schema):
        self.schema = schema
        self.structures: dict[str, pl.Expr] = {}
        self.problems: list[tuple[str, pl.Expr, pl.Expr]] = []  # (field, when, what is wrong)

    def problem(self, name: str, when: pl.Expr, what: pl.Expr | str) -> None:
        self.problems.append((name, when, pl.lit(what) if isinstance(what, str) else what))

    def raw(self, name: str) -> pl.Expr:
        """The field's value, null when absent or blank."""
        if name not in self.schema:
            return pl.lit(None, dtype=pl.String)
        if self.schema[name] != pl.String:
            return pl.col(name)
        return pl.when(pl.col(name).str.contains(r"^\s*$")).then(None).otherwise(pl.col(name))

    def _shown(self, name: str, what: str) -> pl.Expr:
        """`what` with the field's value in place of {}."""
        dtype = self.schema.get(name, pl.String())
        if dtype.is_nested():
            return pl.lit(what.replace("{}", f"a {dtype}"))
        return pl.format(what, self.raw(name).cast(pl.String))

    def text(self, name: str) -> pl.Expr:
        if self.schema.get(name, pl.String()) not in (pl.String, pl.Null):
            self.problem(name, self.raw(name).is_not_null(), self._shown(name, "expected text, got {}"))
        return self.raw(name).cast(pl.String)

    def identifier(self, name: str) -> pl.Expr:
        """A name the caller picked (a workload), bounded like every identifier."""
        value = self.text(name)
        too_long, problem = too_long_identifier(value)
        self.problem(name, too_long, problem)
        return value

    def required_text(self, name: str) -> pl.Expr:
        value = self.text(name)
        self.problem(name, value.is_null(), "missing")
        return value

    def key(self) -> pl.Expr:
        """The row's request_id (numbers, as CSV and Parquet may hold them, read as text)."""
        value = self.raw("request_id").cast(pl.String)
        self.problem("request_id", value.is_null(), "missing")
        return value

    def flag(self, name: str) -> pl.Expr:
        if name not in self.schema:
            return pl.lit(None, dtype=pl.Boolean)
        value = as_bool(name)
        self.problem(
            name, self.raw(name).is_not_null() & value.is_null(), self._shown(name, "expected true or false, got {}")
        )
        return value

    def number(self, name: str, minimum: float | None = None) -> pl.Expr:
        if name not in self.schema:
            return pl.lit(None, dtype=pl.Float64)
        value = as_float(name)
        unreadable = value.is_null() | value.is_nan() | value.is_infinite()
        self.problem(
            name, self.raw(name).is_not_null() & unreadable, self._shown(name, "expected a finite number, got {}")
        )
        if minimum is not None:
            self.problem(name, value < minimum, self._shown(name, f"expected a number >= {minimum:g}, got {{}}"))
        return value

    def structure(self, name: str, read: Reader, kind: type) -> pl.Expr:
        """A JSON list or map, checked and kept as JSON text by `read` (in Python, batch by batch, streamed)."""
        column = f"_read_{name}"
        self.structures[column] = self.raw(name).map_batches(
            _reading(read, kind), return_dtype=READ, is_elementwise=True
        )
        self.problem(name, pl.col(column).struct.field("problem").is_not_null(), pl.col(column).struct.field("problem"))
        return pl.col(column).struct.field("text")

    def rows(self, frame: pl.LazyFrame, values: dict[str, pl.Expr]) -> pl.LazyFrame:
        """The checked values of each row, with its source row, its JSON_FLAG and its ERROR: `field: problem`."""
        error = pl.lit(None, dtype=pl.String)
        for name, when, what in reversed(self.problems):
            error = pl.when(when.fill_null(False)).then(pl.concat_str(pl.lit(f"{name}: "), what)).otherwise(error)
        error = pl.when(pl.col(NESTED).is_not_null()).then(pl.col(NESTED)).otherwise(error)
        checked = frame.with_columns(**self.structures)
        return checked.select(**values, **{SOURCE_ROW: pl.col(SOURCE_ROW), JSON_FLAG: pl.col(JSON_FLAG), ERROR: error})


# What a row of one kind becomes: its output columns, read and checked by `_Fields`.
RowReader = Callable[[_Fields], dict[str, pl.Expr]]
# The row reader for a file, picked by its columns.
PickReader = Callable[[pl.Schema], RowReader]


def _chain(value: Any) -> tuple[str | None, str | None]:
    if not value or not all(isinstance(tier, str) for tier in value):
        return None, f"expected a non-empty list of tier names, got {value!r}"
    return json.dumps(value), None


def _probabilities(value: Any) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    try:
        values = {str(k): float(v) for k, v in value.items()}
    except (TypeError, ValueError):
        return None, f"expected a map of tier -> probability, got {value!r}"
    if not all(0.0 <= v <= 1.0 for v in values.values()):
        return None, f"expected probabilities within [0, 1], got {value!r}"
    return json.dumps(values), None


def _is_chat(value: Any) -> bool:
    return all(isinstance(m, dict) and "content" in m for m in value)


def _chat(value: Any) -> tuple[str | None, str | None]:
    if value is not None and not _is_chat(value):
        return None, "expected a list of {role, content} objects"
    return (json.dumps(value, ensure_ascii=False) if value else None), None


def _rendered_chat(value: Any) -> tuple[str | None, str | None]:
    if value is not None and not _is_chat(value):
        return None, "expected a list of {role, content} objects"
    return (render_messages(value) if value else None), None


def _decision(fields: _Fields) -> dict[str, pl.Expr]:
    """One decision-log row, checked."""
    served = fields.required_text("tier")
    chain = fields.structure("fallback_chain", _chain, list)
    propensity = fields.number("propensity", minimum=0.0)
    outside = (propensity <= 0.0) | (propensity > 1.0)
    fields.problem("propensity", outside, pl.format("expected a probability in (0, 1], got {}", propensity))
    messages = fields.structure("messages", _chat, list)
    return {
        "request_id": fields.key(),
        "prompt": fields.text("prompt"),
        "messages": messages,
        "prompt_sha256": fields.text("prompt_sha256"),
        "served_tier": served,
        "fallback_chain": chain,
        "probabilities": fields.structure("probabilities", _probabilities, dict).fill_null("{}"),
        "explored": fields.flag("explored").fill_null(False),
        "propensity": propensity.fill_null(1.0),
        "propensities": fields.structure("propensities", _probabilities, dict).fill_null(
            pl.concat_str(pl.lit('{"'), served, pl.lit('": 1.0}'))
        ),
        "model_version": fields.text("model_version"),
        "latency_band": fields.text("latency_band"),
        "decided_at": fields.text("time"),
        "workload": fields.identifier("workload"),
    }


def _outcome(fields: _Fields) -> dict[str, pl.Expr]:
    """One outcome-log row: the attempt it reports on and the values it reports (null where it says nothing)."""
    model = fields.required_text("model")
    attempt = fields.number("attempt", minimum=0.0)
    fields.problem("attempt", attempt != attempt.floor(), pl.format("expected a whole number, got {}", attempt))
    values = {
        "model": model,
        "attempt": attempt.fill_null(0.0).cast(pl.Int64),
        "success": fields.flag("success"),
        "score": fields.number("score"),
        "error": fields.text("error"),
        "timestamp": pl.coalesce(fields.text("time"), fields.text("timestamp")),
        **{name: fields.number(name, minimum=0.0) for name in OUTCOME_MEASURES},
    }
    return {"request_id": fields.key(), **values}


def _prompt(fields: _Fields) -> dict[str, pl.Expr]:
    """One --prompts row: its text (the prompt, else the chat rendered) and its request_id where known."""
    rendered = fields.structure("messages", _rendered_chat, list)
    text = pl.coalesce(fields.text("prompt"), rendered)
    fields.problem("prompt", text.is_null(), "missing (and no messages)")
    return {"request_id": fields.raw("request_id").cast(pl.String), "prompt": text}


def _checker(read: PickReader) -> Check:
    """A `tierwise.training.data.logs.Check` reading each row with the reader `read` picks for the file's columns."""

    def check(path: Path, raw: pl.LazyFrame, search_json_text: bool) -> CheckedFile:
        located = locate(path, raw, search_json_text, STRUCTURES)
        located = without_nested(located.with_columns(json_as_text(located.collect_schema(), STRUCTURES)), PLAIN)
        fields = _Fields(located.collect_schema())
        return tally(path, fields.rows(located, read(fields.schema)(fields)))

    return check


def _check_files(
    paths: Sequence[str | Path], read: PickReader, skip_invalid: bool
) -> tuple[list[CheckedFile], Counter[str]]:
    """Check each file in one streaming pass, and count its bad rows by problem; unless `skip_invalid`, the first
    bad row (a line that is no JSON object too) stops it all."""
    checked = [check_file(path, _checker(read), STRUCTURES, PLAIN) for path in find_log_files(paths)]
    return checked, skipped_rows(checked, skip_invalid, _where)


def _where(one: CheckedFile, line: int, problem: str) -> str:
    """`file:line:field: problem`, or `file:line: problem` for a line that is no row at all (torn, not an object)."""
    return f"{one.path}:{line}:{' ' if problem.startswith((NOT_JSON, NOT_OBJECT)) else ''}{problem}"


def _numbered(checked: Sequence[CheckedFile]) -> pl.LazyFrame | None:
    """The files' rows as one scan, each with its file's place (FILE); None when no file has a row."""
    plans = [
        plan.with_columns(pl.lit(place, dtype=pl.Int64).alias(FILE))
        for place, one in enumerate(checked)
        if (plan := one.valid_rows) is not None
    ]
    return pl.concat(plans, how="diagonal_relaxed") if plans else None


def _sha256s(texts: pl.Series) -> pl.Series:
    """SHA-256 of each text's UTF-8, as serving's prompt_sha256 (`tierwise.serving.decision_log`)."""
    return pl.Series(
        [None if t is None else hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts.to_list()], dtype=pl.String
    )


@dataclass(frozen=True)
class Prompts:
    """Prompts the application kept for a server that redacted them: their texts, as a scan of their files,
    and in memory only where each text is, its request_id (if known) and its SHA-256."""

    texts: pl.LazyFrame  # FILE, SOURCE_ROW, prompt
    places: pl.DataFrame  # request_id, SHA256, FILE, SOURCE_ROW
    skipped: Counter[str] = field(default_factory=Counter)  # bad rows dropped (--skip-invalid), by problem

    @classmethod
    def read(cls, paths: Sequence[str | Path], skip_invalid: bool = False) -> Prompts:
        """Rows with `prompt` (or chat `messages`) and, where known, `request_id`; JSONL, CSV or Parquet. A bad
        row stops the run unless `skip_invalid` drops it (counted in `skipped`)."""
        checked, skipped = _check_files(paths, lambda schema: _prompt, skip_invalid)
        rows = _numbered(checked)
        if rows is None:
            return dataclasses.replace(cls.none(), skipped=skipped)
        sha = pl.col("prompt").map_batches(_sha256s, return_dtype=pl.String, is_elementwise=True).alias(SHA256)
        places = rows.select("request_id", sha, FILE, SOURCE_ROW).collect(engine=STREAMING)
        return cls(rows.select(FILE, SOURCE_ROW, "prompt"), places, skipped)

    @classmethod
    def none(cls) -> Prompts:
        places = pl.DataFrame(schema={"request_id": pl.String, SHA256: pl.String, FILE: pl.Int64, SOURCE_ROW: pl.Int64})
        return cls(places.select(FILE, SOURCE_ROW, pl.lit(None, dtype=pl.String).alias("prompt")).lazy(), places)

    def places_for(self, attempts: pl.DataFrame) -> pl.DataFrame:
        """Where the text of each attempt's prompt is (`_prompt_file`, `_prompt_row`) and its SHA-256: the
        request_id's last prompt row, else the first whose text has the decision's prompt_sha256."""
        places = self.places.sort(FILE, SOURCE_ROW)
        by_request = places.drop_nulls("request_id").group_by("request_id").agg(pl.all().last())
        by_hash = places.group_by(SHA256).agg(pl.col(FILE, SOURCE_ROW).first())
        named = attempts.join(
            by_request.rename({FILE: "_prompt_file", SOURCE_ROW: "_prompt_row", SHA256: "_prompt_sha256"}),
            on="request_id",
            how="left",
        )
        hashed = named.join(
            by_hash.rename({FILE: "_hash_file", SOURCE_ROW: "_hash_row"}),
            left_on="prompt_sha256",
            right_on=SHA256,
            how="left",
        )
        by_name = pl.col("_prompt_file").is_not_null()
        by_hash_sha = pl.when(pl.col("_hash_file").is_not_null()).then(pl.col("prompt_sha256"))
        return hashed.with_columns(
            pl.when(by_name).then(pl.col("_prompt_file")).otherwise(pl.col("_hash_file")).alias("_prompt_file"),
            pl.when(by_name).then(pl.col("_prompt_row")).otherwise(pl.col("_hash_row")).alias("_prompt_row"),
            pl.when(by_name).then(pl.col("_prompt_sha256")).otherwise(by_hash_sha).alias("_prompt_sha256"),
        ).drop("_hash_file", "_hash_row")


@dataclass
class CollectSummary:
    """What collect read and what became of it: every outcome report is accounted for."""

    decision_files: int = 0
    outcome_files: int = 0
    decisions: int = 0
    repeated_decisions: int = 0
    reports: int = 0
    attempts: int = 0
    matched: int = 0
    unmatched: Counter[str] = field(default_factory=Counter)
    decisions_without_outcome: int = 0
    requests: int = 0
    censored: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # bad rows dropped (--skip-invalid), by problem

    def render(self) -> str:
        """The summary `tierwise collect` prints."""
        censored = self.censored / self.requests if self.requests else 0.0
        skipped = [f"skipped:    {self.skipped.total()} bad rows (--skip-invalid)"] if self.skipped else []
        lines = [
            *skipped,
            *(f"  {count:>8}  {reason}" for reason, count in self.skipped.most_common()),
            f"decisions:  {self.decisions} rows from {self.decision_files} files"
            + (f" ({self.repeated_decisions} request_ids decided again: the last decision is used)"
               if self.repeated_decisions else ""),
            f"outcomes:   {self.reports} reports from {self.outcome_files} files, of {self.attempts} attempts "
            f"({self.reports - self.attempts} merged into an earlier report of the same attempt)",
            f"matched:    {self.matched} attempts of {self.requests} requests",
            f"unmatched:  {sum(self.unmatched.values())} attempts",
            *(f"  {count:>8}  {reason}" for reason, count in self.unmatched.most_common()),
            f"decisions without any outcome: {self.decisions_without_outcome}",
            f"censored:   {censored:.1%} of the requests ({self.censored}): a tier cheaper than the cheapest "
            "success was never tried",
        ]  # fmt: skip
        return "\n".join(lines)


@dataclass
class Collected:
    """The attempt rows collected, as the plan that writes them, and the account of how they were made."""

    rows: pl.LazyFrame
    summary: CollectSummary


def _traffic_reader(schema: pl.Schema) -> RowReader:
    """A file whose rows carry `fallback_chain` is a decision log, any other an outcome log."""
    return _decision if DECISION_MARKER in schema else _outcome


def _is_decision_log(checked: CheckedFile) -> bool:
    return checked.rows is not None and DECISION_MARKER in checked.rows.collect_schema()


def _latest_decisions(decisions: pl.LazyFrame) -> pl.DataFrame:
    """Per request_id: where its last decision is (by `time`; file order among equal times), how many it
    had, its prompt_sha256 and whether it carries its prompt. No prompt text is held."""
    last = [pl.col("decided_at").fill_null(""), pl.col(FILE), pl.col(SOURCE_ROW)]
    has_prompt = pl.col("prompt").is_not_null() | pl.col("messages").is_not_null()
    # Streamed to the few columns needed first: grouped straight from the scan, the prompts would be read whole.
    keys = decisions.select("request_id", "decided_at", FILE, SOURCE_ROW, "prompt_sha256", has_prompt.alias("_has"))
    return (
        keys.collect(engine=STREAMING)
        .group_by("request_id")
        .agg(
            pl.len().alias("_decisions"),
            pl.col(FILE, SOURCE_ROW, "prompt_sha256").sort_by(last).last(),
            pl.col("_has").sort_by(last).last().alias("_has_prompt"),
        )
    )


def _merged_attempts(reports: pl.LazyFrame | None) -> pl.DataFrame:
    """Per attempt (request_id, model, attempt): its reports merged, later ones (by time) winning where not null."""
    if reports is None:
        types = {**COLUMNS, "_reports": pl.UInt32()}
        return pl.DataFrame(schema={name: types[name] for name in (*ATTEMPT, "_reports", *REPORTED)})
    later = [pl.col("timestamp").fill_null(""), pl.col(FILE), pl.col(SOURCE_ROW)]
    merged = (pl.col(name).sort_by(later).drop_nulls().last() for name in REPORTED)
    return reports.group_by(ATTEMPT).agg(pl.len().alias("_reports"), *merged).collect(engine=STREAMING)


def _why_unmatched() -> pl.Expr:
    """Why an attempt (joined with its request's latest decision and prompt place) cannot become a row, or null."""
    return (
        pl.when(pl.col(FILE).is_null())
        .then(pl.lit(NO_DECISION))
        .when(pl.col("success").is_null() & pl.col("score").is_null())
        .then(pl.lit(UNGRADED))
        .when(pl.col("_has_prompt"))
        .then(pl.lit(None, dtype=pl.String))
        .when(pl.col("_prompt_file").is_null())
        .then(pl.lit(NO_PROMPT))
        .when(pl.col("prompt_sha256").is_not_null() & (pl.col("_prompt_sha256") != pl.col("prompt_sha256")))
        .then(pl.lit(WRONG_PROMPT))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def collect_attempts(
    paths: Sequence[str | Path], prompts: Prompts | None = None, skip_invalid: bool = False
) -> Collected:
    """Join the decision and outcome logs among `paths` into attempt-log rows, one per reported attempt.

    A bad row stops the run unless `skip_invalid` drops it: a torn line in a log must not stop the loop."""
    checked, skipped = _check_files(paths, _traffic_reader, skip_invalid)
    decision_files = [one for one in checked if _is_decision_log(one)]
    outcome_files = [one for one in checked if not _is_decision_log(one)]
    if not decision_files:
        raise LogError("no decision log among the inputs (a decision log's rows carry `fallback_chain`)")
    if not outcome_files:
        raise LogError("no outcome log among the inputs (only decision logs, whose rows carry `fallback_chain`)")
    summary = CollectSummary(decision_files=len(decision_files), outcome_files=len(outcome_files))
    summary.skipped = skipped + (prompts.skipped if prompts else Counter())
    decisions = _numbered(decision_files)
    assert decisions is not None  # a decision log has columns, so it was scanned
    latest = _latest_decisions(decisions)
    summary.decisions = sum(one.counts.get(None, 0) for one in decision_files)
    summary.repeated_decisions = summary.decisions - latest.height
    attempts = _merged_attempts(_numbered(outcome_files))
    summary.reports = sum(one.counts.get(None, 0) for one in outcome_files)
    summary.attempts = attempts.height
    placed = (prompts or Prompts.none()).places_for(attempts.join(latest, on="request_id", how="left"))
    judged = placed.with_columns(_why_unmatched().alias("_unmatched"))
    unmatched = judged["_unmatched"].drop_nulls().value_counts(sort=True)
    summary.unmatched = Counter(dict(unmatched.iter_rows()))
    matched = judged.filter(pl.col("_unmatched").is_null())
    summary.matched = matched.height
    summary.decisions_without_outcome = latest.join(attempts, on="request_id", how="anti").height
    return Collected(_rows(decisions, matched, prompts), summary)


def _rows(decisions: pl.LazyFrame, matched: pl.DataFrame, prompts: Prompts | None) -> pl.LazyFrame:
    """The attempt rows: each matched attempt (in memory, without text) with its decision's row streamed from
    the decision logs, and its prompt from --prompts where the decision has none; in decision-log order.

    Each join builds its table on the side without text: the attempts; and for --prompts, the decided rows,
    whose decisions were redacted (a decision that carries its prompt takes no --prompts text)."""
    attempts = matched.select(FILE, SOURCE_ROW, *ATTEMPT[1:], *REPORTED, "_prompt_file", "_prompt_row")
    attempts = attempts.sort(FILE, SOURCE_ROW, "attempt", "model")
    decided = decisions.join(
        attempts.lazy(), on=[FILE, SOURCE_ROW], how="inner", maintain_order="left_right", build_side="force_right"
    )
    if prompts is not None:
        texts = prompts.texts.rename({FILE: "_prompt_file", SOURCE_ROW: "_prompt_row", "prompt": "_kept_prompt"})
        decided = decided.join(
            texts, on=["_prompt_file", "_prompt_row"], how="left", build_side="force_left"
        ).with_columns(pl.coalesce("_kept_prompt", "prompt").alias("prompt"))
    return decided.select(pl.col(name).cast(dtype) for name, dtype in COLUMNS.items())


def collect(
    paths: Sequence[str | Path],
    out: str | Path,
    ladder: TierLadder,
    prompts: Prompts | None = None,
    skip_invalid: bool = False,
) -> CollectSummary:
    """Collect served traffic into an attempt log at `out`, then read it back as any attempt log is read
    (so the file is known to feed `label`, `train`, `retrain` and `replay`) to count censored requests."""
    table_format(out)
    collected = collect_attempts(paths, prompts, skip_invalid)
    if collected.summary.matched == 0:
        raise LogError(f"no outcome could be matched to a decision:\n{collected.summary.render()}")
    path = write_table(collected.rows, out)
    written = read_attempts([path])
    # The count needs no prompt, and labelling would hold each request's prompt: the text's size.
    without_text = dataclasses.replace(written, attempts=written.attempts.with_columns(pl.lit("").alias("prompt")))
    labels = label_requests(without_text, ladder).frame
    summary = collected.summary
    summary.requests = labels.height
    summary.censored = labels.filter(pl.col("status") == CENSORED).height
    return summary
