"""`tierwise collect`: served traffic into attempt logs, joining the decision log with the outcome log.

Every reported attempt becomes one attempt-log row (`training.attempts`): the prompt and the routing decision
from the decision log (or the prompt from `--prompts` when the server redacted it), the grade and the
measurements from the outcome log. Several reports of one attempt (request_id, model, attempt), such as a
later grade, merge into one row: values of later reports (by their `time`) win where they are not null.
Nothing is dropped silently: every attempt that cannot become a row is counted under its reason.

Input files are told apart by their rows: a decision log's rows carry `fallback_chain`, anything else is
read as outcomes. JSONL, CSV and Parquet, as for attempt logs; a malformed row stops with file:line:field.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from classifier.text import render_messages
from classifier.tiers import TierLadder
from serving.outcomes import MEASURES as OUTCOME_MEASURES
from training.attempts import DECISION, SCHEMA
from training.labels import CENSORED, label_requests, write_table
from training.logs import SUFFIX_FORMATS, LogError, find_log_files, read_attempts

DECISION_MARKER = "fallback_chain"
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")

NO_DECISION = "no decision for its request_id"
NO_PROMPT = "no prompt (redacted, and not in --prompts)"
WRONG_PROMPT = "the --prompts text does not match the decision's prompt_sha256"
UNGRADED = "not graded (no success or score)"


class RowError(LogError):
    """A decision, outcome or prompt row that cannot be read; the message is `file:line:field: problem`."""


class _Row:
    """One input row with the place it came from, read field by field into checked values."""

    def __init__(self, path: Path, line: int, values: dict[str, Any]):
        self.where = f"{path}:{line}"
        self.values = values

    def error(self, name: str, problem: str) -> RowError:
        return RowError(f"{self.where}:{name}: {problem}")

    def raw(self, name: str) -> Any:
        """The field's value, None when absent or blank."""
        value = self.values.get(name)
        return None if value is None or (isinstance(value, str) and not value.strip()) else value

    def text(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and not isinstance(value, str):
            raise self.error(name, f"expected text, got {value!r}")
        return value

    def required_text(self, name: str) -> str:
        value = self.text(name)
        if value is None:
            raise self.error(name, "missing")
        return value

    def key(self) -> str:
        """The row's request_id (numbers, as CSV and Parquet may hold them, read as text)."""
        value = self.raw("request_id")
        if value is None:
            raise self.error("request_id", "missing")
        return str(value)

    def flag(self, name: str) -> bool | None:
        value = self.raw(name)
        if value is None or isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise self.error(name, f"expected true or false, got {value!r}")

    def number(self, name: str, minimum: float | None = None) -> float | None:
        value = self.raw(name)
        if value is None:
            return None
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise self.error(name, f"expected a finite number, got {value!r}")
        if minimum is not None and number < minimum:
            raise self.error(name, f"expected a number >= {minimum:g}, got {value!r}")
        return number

    def structure(self, name: str, kind: type) -> Any:
        """A list or map, given as such (JSONL, Parquet) or as JSON text (CSV)."""
        value = self.raw(name)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise self.error(name, f"expected a JSON {kind.__name__}, got {value!r}") from None
        if hasattr(value, "to_list"):
            value = value.to_list()
        if value is not None and not isinstance(value, kind):
            raise self.error(name, f"expected a {kind.__name__}, got {value!r}")
        return value


def _rows(path: Path) -> Iterator[_Row]:
    """The rows of one JSONL, CSV or Parquet file, each with its line (JSONL, CSV) or row number (Parquet)."""
    kind = SUFFIX_FORMATS[path.suffix.lower()]
    if kind == "jsonl":
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    values = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise RowError(f"{path}:{number}: not valid JSON ({exc})") from exc
                if not isinstance(values, dict):
                    raise RowError(f"{path}:{number}: expected a JSON object, got {type(values).__name__}")
                yield _Row(path, number, values)
        return
    try:
        frame = pl.read_csv(path, infer_schema=False) if kind == "csv" else pl.read_parquet(path)
    except Exception as exc:
        raise RowError(f"{path}: cannot read as {kind}: {exc}") from exc
    first = 2 if kind == "csv" else 1  # a CSV's header is line 1
    for number, values in enumerate(frame.iter_rows(named=True), start=first):
        yield _Row(path, number, values)


def _columns(path: Path) -> set[str]:
    """The fields of a file's first row (its columns, for CSV and Parquet)."""
    kind = SUFFIX_FORMATS[path.suffix.lower()]
    if kind == "parquet":
        return set(pl.read_parquet_schema(path))
    for row in _rows(path):
        return set(row.values)
    return set()


@dataclass(frozen=True)
class LoggedDecision:
    """One decision-log row, checked."""

    request_id: str
    prompt: str | None
    messages: list[dict[str, str]] | None
    prompt_sha256: str | None
    served_tier: str
    fallback_chain: list[str]
    probabilities: dict[str, float]
    explored: bool
    propensity: float
    propensities: dict[str, float]
    model_version: str | None
    latency_band: str | None
    decided_at: str | None

    @classmethod
    def read(cls, row: _Row) -> LoggedDecision:
        served = row.required_text("tier")
        chain = row.structure("fallback_chain", list)
        if not chain or not all(isinstance(t, str) for t in chain):
            raise row.error("fallback_chain", f"expected a non-empty list of tier names, got {chain!r}")
        propensity = row.number("propensity", minimum=0.0)
        if propensity is not None and not 0.0 < propensity <= 1.0:
            raise row.error("propensity", f"expected a probability in (0, 1], got {propensity}")
        messages = row.structure("messages", list)
        if messages is not None and not all(isinstance(m, dict) and "content" in m for m in messages):
            raise row.error("messages", "expected a list of {role, content} objects")
        return cls(
            request_id=row.key(),
            prompt=row.text("prompt"),
            messages=messages,
            prompt_sha256=row.text("prompt_sha256"),
            served_tier=served,
            fallback_chain=chain,
            probabilities=_probability_map(row, "probabilities") or {},
            explored=bool(row.flag("explored")),
            propensity=1.0 if propensity is None else propensity,
            propensities=_probability_map(row, "propensities") or {served: 1.0},
            model_version=row.text("model_version"),
            latency_band=row.text("latency_band"),
            decided_at=row.text("time"),
        )


def _probability_map(row: _Row, name: str) -> dict[str, float] | None:
    mapping = row.structure(name, dict)
    if mapping is None:
        return None
    try:
        values = {str(k): float(v) for k, v in mapping.items()}
    except (TypeError, ValueError):
        raise row.error(name, f"expected a map of tier -> probability, got {mapping!r}") from None
    if not all(0.0 <= v <= 1.0 for v in values.values()):
        raise row.error(name, f"expected probabilities within [0, 1], got {mapping!r}")
    return values


AttemptKey = tuple[str, str, int]


def _outcome(row: _Row) -> tuple[AttemptKey, dict[str, Any]]:
    """One outcome-log row: the attempt it reports on and the values it reports (None where it says nothing)."""
    model = row.required_text("model")
    attempt = row.number("attempt", minimum=0.0)
    if attempt is not None and attempt != int(attempt):
        raise row.error("attempt", f"expected a whole number, got {attempt}")
    values: dict[str, Any] = {
        "success": row.flag("success"),
        "score": row.number("score"),
        "error": row.text("error"),
        "timestamp": row.text("time") or row.text("timestamp"),
    }
    values.update({name: row.number(name, minimum=0.0) for name in OUTCOME_MEASURES})
    return (row.key(), model, int(attempt or 0)), values


@dataclass
class Prompts:
    """Prompts the application kept for a server that redacted them, by request_id and by SHA-256 of the text."""

    by_request: dict[str, str] = field(default_factory=dict)
    by_hash: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, paths: Sequence[str | Path]) -> Prompts:
        """Rows with `prompt` (or chat `messages`) and, where known, `request_id`; JSONL, CSV or Parquet."""
        prompts = cls()
        for path in find_log_files(paths):
            for row in _rows(path):
                messages = row.structure("messages", list)
                text = row.text("prompt") or (render_messages(messages) if messages else None)
                if not text:
                    raise row.error("prompt", "missing (and no messages)")
                if row.raw("request_id") is not None:
                    prompts.by_request[row.key()] = text
                prompts.by_hash[_sha256(text)] = text
        return prompts


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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

    def render(self) -> str:
        """The summary `tierwise collect` prints."""
        censored = self.censored / self.requests if self.requests else 0.0
        lines = [
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
    """The attempt rows collected, and the account of how they were made."""

    frame: pl.DataFrame
    summary: CollectSummary


def _split_inputs(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """(decision files, outcome files): a file whose rows carry `fallback_chain` is a decision log."""
    decisions, outcomes = [], []
    for path in find_log_files(paths):
        (decisions if DECISION_MARKER in _columns(path) else outcomes).append(path)
    if not decisions:
        raise LogError("no decision log among the inputs (a decision log's rows carry `fallback_chain`)")
    if not outcomes:
        raise LogError("no outcome log among the inputs (only decision logs, whose rows carry `fallback_chain`)")
    return decisions, outcomes


def collect_attempts(paths: Sequence[str | Path], prompts: Prompts | None = None) -> Collected:
    """Join the decision and outcome logs among `paths` into attempt-log rows, one per reported attempt."""
    decision_files, outcome_files = _split_inputs(paths)
    summary = CollectSummary(decision_files=len(decision_files), outcome_files=len(outcome_files))
    read = [LoggedDecision.read(row) for path in decision_files for row in _rows(path)]
    decisions: dict[str, LoggedDecision] = {}
    for decision in sorted(read, key=lambda d: d.decided_at or ""):  # stable: file order among equal times
        summary.repeated_decisions += decision.request_id in decisions
        decisions[decision.request_id] = decision
    summary.decisions = len(read)
    reports = [_outcome(row) for path in outcome_files for row in _rows(path)]
    attempts: dict[AttemptKey, dict[str, Any]] = {}
    for key, values in sorted(reports, key=lambda report: report[1]["timestamp"] or ""):
        merged = attempts.setdefault(key, {})
        merged.update({name: value for name, value in values.items() if value is not None})
    summary.reports = len(reports)
    summary.attempts = len(attempts)
    rows = []
    for (request_id, model, attempt), values in attempts.items():
        decision = decisions.get(request_id)
        problem, text = _why_unmatched(decision, values, prompts or Prompts(), request_id)
        if problem is not None:
            summary.unmatched[problem] += 1
            continue
        assert decision is not None
        rows.append(_attempt_row(decision, text, model, attempt, values))
    summary.matched = len(rows)
    reported = {request_id for request_id, _, _ in attempts}
    summary.decisions_without_outcome = sum(request_id not in reported for request_id in decisions)
    return Collected(_frame(rows), summary)


def _why_unmatched(
    decision: LoggedDecision | None, values: dict[str, Any], prompts: Prompts, request_id: str
) -> tuple[str | None, str | None]:
    """(why the attempt cannot become a row, or None; the prompt text when it comes from --prompts)."""
    if decision is None:
        return NO_DECISION, None
    if values.get("success") is None and values.get("score") is None:
        return UNGRADED, None
    if decision.prompt is not None or decision.messages:
        return None, None
    text = prompts.by_request.get(request_id)
    if text is None and decision.prompt_sha256:
        text = prompts.by_hash.get(decision.prompt_sha256)
    if text is None:
        return NO_PROMPT, None
    if decision.prompt_sha256 and _sha256(text) != decision.prompt_sha256:
        return WRONG_PROMPT, None
    return None, text


def _attempt_row(decision: LoggedDecision, text: str | None, model: str, attempt: int, values: dict[str, Any]) -> dict:
    return {
        "request_id": decision.request_id,
        "prompt": text if text is not None else decision.prompt,
        "messages": json.dumps(decision.messages, ensure_ascii=False) if decision.messages else None,
        "model": model,
        "attempt": attempt,
        **values,
        "served_tier": decision.served_tier,
        "fallback_chain": json.dumps(decision.fallback_chain),
        "probabilities": json.dumps(decision.probabilities),
        "explored": decision.explored,
        "propensity": decision.propensity,
        "propensities": json.dumps(decision.propensities),
        "model_version": decision.model_version,
        "latency_band": decision.latency_band,
        "prompt_sha256": decision.prompt_sha256,
        "decided_at": decision.decided_at,
    }


def _frame(rows: list[dict]) -> pl.DataFrame:
    """The rows in the attempt-log schema's types: the columns collect writes, in a stable order."""
    names = ["request_id", "prompt", "messages", "model", "attempt", "success", "score", *OUTCOME_MEASURES]
    names += ["error", "timestamp", *DECISION]
    types = {**SCHEMA, **DECISION}
    return pl.DataFrame(rows, schema={name: types[name] for name in names})


def collect(
    paths: Sequence[str | Path], out: str | Path, ladder: TierLadder, prompts: Prompts | None = None
) -> CollectSummary:
    """Collect served traffic into an attempt log at `out`, then read it back as any attempt log is read
    (so the file is known to feed `label`, `train`, `retrain` and `replay`) to count censored requests."""
    collected = collect_attempts(paths, prompts)
    if collected.frame.is_empty():
        raise LogError(f"no outcome could be matched to a decision:\n{collected.summary.render()}")
    path = write_table(collected.frame, out)
    labels = label_requests(read_attempts([path]), ladder).frame
    summary = collected.summary
    summary.requests = labels.height
    summary.censored = labels.filter(pl.col("status") == CENSORED).height
    return summary
