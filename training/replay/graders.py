"""Graders: turn a replayed answer into success or failure, with a reason, a name and a version.

- `exact`: the answer against a reference column, normalised; multiple-choice letters and numbers are
  extracted from free text first ("The answer is (C)", "#### 42", "\\boxed{3/4}").
- `judge`: a Claude model compares the answer with the request's original successful answer (or the
  reference; with neither, it judges the answer on its own) under a short rubric and records pass/fail
  and a reason through a forced tool call. The rubric
  and tool form a stable prefix marked for prompt caching, so every grade after the first reads it cheaply.
- `python:module:function`: a user's callable taking a `GradeInput`.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import re
import string
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from tierwise.classifier.errors import InputError
from tierwise.classifier.tiers import Tier, TierLadder

if TYPE_CHECKING:
    import anthropic

JUDGE_MAX_TOKENS = 512
JUDGE_OUTPUT_TOKENS_ESTIMATE = 120
JUDGE_TOOL_NAME = "record_grade"


class GradingError(RuntimeError):
    """One answer could not be graded (no reference, a malformed judge reply); it is reported, not stored."""


@dataclass(frozen=True)
class GradeInput:
    """Everything a grader may look at for one replayed answer."""

    request_id: str
    prompt: str
    answer: str
    model: str
    tier: str
    reference: str | None = None
    successful_answer: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Grade:
    """A grader's verdict; cost_usd is what grading itself cost (the judge's API call)."""

    success: bool
    score: float | None = None
    reason: str = ""
    cost_usd: float | None = None


class Grader:
    """Base of every grader: a name and version stored with each grade, and a cost estimate for budgeting."""

    name: str = ""
    version: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def grade(self, item: GradeInput) -> Grade:
        raise NotImplementedError

    def estimate_usd(self, prompt_chars: int, answer_chars: int, reference_chars: int) -> float:
        """What grading one answer is expected to cost; free unless the grader calls an API."""
        return 0.0


# --- exact ----------------------------------------------------------------------------------------------

CHOICE = r"\(?\**((?!I\s+[a-z])[A-J])\**\)?(?![A-Za-z0-9])"  # the pronoun "I think" is no choice
CHOICE_PATTERNS = (
    re.compile(r"(?i:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*(?:\*\*)?" + CHOICE),
    re.compile(r"^\s*" + CHOICE + r"[.):]?\s*$"),
    re.compile(r"^\s*\(?([A-J])[).:](?:\s|$)"),
    re.compile(r"\(([A-J])\)"),
    re.compile(r"\*\*([A-J])\*\*"),
)
NUMBER = r"[-+]?\$?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?%?"
NUMBER_PATTERNS = (
    re.compile(r"####\s*(" + NUMBER + ")"),
    re.compile(r"\\boxed\{\s*(" + NUMBER + r")\s*\}"),
    re.compile(r"(?i:answer)(?:\s+is)?\s*[:=]?\s*\**(" + NUMBER + ")"),
    re.compile("(" + NUMBER + ")"),
)
ARTICLES = re.compile(r"\b(a|an|the)\b")


def extract_choice(text: str) -> str | None:
    """The multiple-choice letter (A-J) an answer settles on: an explicit "answer is X" (last one) first."""
    for pattern in CHOICE_PATTERNS:
        found = pattern.findall(text)
        if found:
            return found[-1].upper()
    return None


def parse_number(text: str) -> float | None:
    """A number written as 1,234.5 / $12 / 45% / 3/4, or None."""
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip("%").replace(" ", "")
    try:
        if "/" in cleaned:
            numerator, denominator = cleaned.split("/")
            return float(numerator) / float(denominator)
        return float(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def extract_number(text: str) -> float | None:
    """The number an answer settles on: `#### n`, `\\boxed{n}`, "answer is n" (last one), else the last number."""
    for pattern in NUMBER_PATTERNS:
        found = pattern.findall(text)
        if found:
            return parse_number(found[-1])
    return None


def normalise_text(text: str) -> str:
    """Lowercase, no punctuation, no articles, single spaces: the form free-text answers are compared in."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(ARTICLES.sub(" ", text).split())


class ExactGrader(Grader):
    """Compare with the reference: as a choice letter, a number, or normalised text, by the reference's shape."""

    ABOUT: ClassVar[str] = "the reference column"
    name = "exact"
    version = "1"

    @classmethod
    def named(cls, ladder: TierLadder, judge_model: str | None, client: anthropic.Anthropic | None) -> Grader:
        return cls()

    def grade(self, item: GradeInput) -> Grade:
        if item.reference is None or not item.reference.strip():
            raise GradingError(f"request {item.request_id}: no reference answer to compare with")
        reference = item.reference.strip()
        if re.fullmatch(r"\(?[A-Ja-j]\)?\.?", reference):
            expected = reference.strip("().").upper()
            got = extract_choice(item.answer)
            return _verdict(got == expected, f"chose {got or 'nothing'}, reference {expected}")
        expected_number = parse_number(reference)
        if expected_number is not None:
            got_number = extract_number(item.answer)
            ok = got_number is not None and abs(got_number - expected_number) <= 1e-6 * max(1.0, abs(expected_number))
            return _verdict(
                ok, f"answered {got_number if got_number is not None else 'no number'}, reference {reference}"
            )
        expected_text = normalise_text(reference)
        tail = re.split(r"(?i:answer)(?:\s+is)?\s*:?", item.answer)[-1]
        lines = [line for line in item.answer.strip().splitlines() if line.strip()]
        candidates = {normalise_text(item.answer), normalise_text(tail), normalise_text(lines[-1] if lines else "")}
        return _verdict(
            expected_text in candidates,
            f"normalised text {'matches' if expected_text in candidates else 'differs from'} the reference",
        )


def _verdict(success: bool, reason: str) -> Grade:
    return Grade(success=success, score=1.0 if success else 0.0, reason=reason)


# --- judge ----------------------------------------------------------------------------------------------

JUDGE_RUBRIC = """You grade answers from a language model for a routing system. Each task shows a user's request, \
a reference answer that is known to be acceptable, and a candidate answer from another model. Decide whether \
the candidate would be just as acceptable to the user as the reference.

Pass the candidate when it reaches the same result as the reference (the same choice, number, fact, decision \
or working code behaviour) and fully does what the request asks. Wording, length, formatting and style do not \
matter; a different but equally correct approach passes. When the request is open-ended (writing, \
summarising, advice), pass a candidate that is correct, complete and on task, even if it differs from the \
reference.

Fail the candidate when it reaches a different result, contains a factual or logical error that matters, \
ignores part of the request, is truncated, refuses, or only restates the question. When unsure, fail.

Some tasks have no reference answer (no model answered acceptably before, or none was logged). Then judge \
the candidate on its own: pass it only if it is correct, complete and does what the request asks.

Record your decision with the record_grade tool: `passed` and a one-sentence `reason` naming the deciding \
difference or agreement."""

JUDGE_TOOL = {
    "name": JUDGE_TOOL_NAME,
    "description": "Record whether the candidate answer is acceptable, with a one-sentence reason.",
    "input_schema": {
        "type": "object",
        "properties": {
            "passed": {"type": "boolean", "description": "true if the candidate is acceptable"},
            "reason": {"type": "string", "description": "one sentence naming the deciding point"},
        },
        "required": ["passed", "reason"],
    },
}


def model_tier(model: str, ladder: TierLadder) -> Tier:
    """The tier (with its prices) a model belongs to in the ladder, else in the shipped Claude ladder."""
    for candidate in (ladder, TierLadder.load()):
        index = candidate.model_to_tier().get(model)
        if index is not None:
            return candidate.tiers[index]
    raise InputError(f"judge model {model!r} has no price: list it under a tier's `models` in the --tiers ladder")


class JudgeGrader(Grader):
    """An LLM judge with a cached rubric; the client is attached before grading (a dry run needs none)."""

    ABOUT: ClassVar[str] = "a Claude model grades"

    @classmethod
    def named(cls, ladder: TierLadder, judge_model: str | None, client: anthropic.Anthropic | None) -> Grader:
        """The judge `--judge-model` names, else the ladder's top tier's model, priced by its tier."""
        model = judge_model or ladder.top.model
        return cls(model, model_tier(model, ladder), client)

    def __init__(
        self,
        model: str,
        tier: Tier,
        client: anthropic.Anthropic | None = None,
        rubric: str = JUDGE_RUBRIC,
    ) -> None:
        self.model = model
        self.tier = tier
        self.client = client
        self.rubric = rubric
        self.name = f"judge:{model}"
        fingerprint = hashlib.sha256((rubric + json.dumps(JUDGE_TOOL, sort_keys=True)).encode()).hexdigest()
        self.version = f"1-{fingerprint[:8]}"

    def grade(self, item: GradeInput) -> Grade:
        if self.client is None:
            raise GradingError("the judge has no API client")
        reference = item.successful_answer or item.reference
        task = f"<request>\n{item.prompt}\n</request>\n"
        if reference:
            task += f"<reference_answer>\n{reference}\n</reference_answer>\n"
        task += f"<candidate_answer>\n{item.answer}\n</candidate_answer>"
        message = self.client.messages.create(
            model=self.model,
            max_tokens=JUDGE_MAX_TOKENS,
            system=[{"type": "text", "text": self.rubric, "cache_control": {"type": "ephemeral"}}],
            tools=[JUDGE_TOOL],
            tool_choice={"type": "tool", "name": JUDGE_TOOL_NAME},
            messages=[{"role": "user", "content": task}],
        )
        verdict = next(
            (
                b.input
                for b in message.content or []
                if getattr(b, "type", None) == "tool_use" and b.name == JUDGE_TOOL_NAME
            ),
            None,
        )
        if not isinstance(verdict, dict) or not isinstance(verdict.get("passed"), bool):
            raise GradingError(f"request {item.request_id}: the judge did not return a {JUDGE_TOOL_NAME} verdict")
        usage = message.usage
        cost = self.tier.token_cost(
            usage.input_tokens,
            usage.output_tokens,
            cache_read_tokens=usage.cache_read_input_tokens or 0,
            cache_write_tokens=usage.cache_creation_input_tokens or 0,
        )
        passed = verdict["passed"]
        return Grade(passed, 1.0 if passed else 0.0, str(verdict.get("reason", "")), cost)

    def estimate_usd(self, prompt_chars: int, answer_chars: int, reference_chars: int) -> float:
        """Rubric at the cache-read price, the task at the input price, a short verdict at the output price."""
        from tierwise.training.data.costs import CHARS_PER_TOKEN  # here: `tierwise --help` reads GRADERS without polars

        rubric_tokens = len(self.rubric) / CHARS_PER_TOKEN
        task_tokens = (prompt_chars + answer_chars + reference_chars) / CHARS_PER_TOKEN + 40
        return self.tier.token_cost(task_tokens, JUDGE_OUTPUT_TOKENS_ESTIMATE, cache_read_tokens=rubric_tokens)


# --- user callable --------------------------------------------------------------------------------------


class PythonGrader(Grader):
    """A user's `module:function(GradeInput)` returning a Grade, a bool, a score, or (either, reason)."""

    def __init__(self, spec: str, success_threshold: float = 1.0) -> None:
        module_name, _, function_name = spec.partition(":")
        if not module_name or not function_name:
            raise InputError(f"--grader python:{spec}: expected python:module:function")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InputError(f"--grader python:{spec}: cannot import {module_name!r} ({exc})") from exc
        function = getattr(module, function_name, None)
        if not callable(function):
            raise InputError(f"--grader python:{spec}: {module_name} has no callable {function_name!r}")
        self.function: Callable[[GradeInput], Any] = function
        self.success_threshold = success_threshold
        self.name = f"python:{spec}"
        self.version = str(
            getattr(function, "version", None) or getattr(module, "__version__", None) or _source_hash(function)
        )

    def grade(self, item: GradeInput) -> Grade:
        result = self.function(item)
        reason = ""
        if isinstance(result, tuple) and len(result) == 2:
            result, reason = result
        if isinstance(result, Grade):
            return result
        if isinstance(result, bool):
            return Grade(result, 1.0 if result else 0.0, str(reason))
        if isinstance(result, int | float):
            return Grade(float(result) >= self.success_threshold, float(result), str(reason))
        raise GradingError(
            f"{self.name} returned {type(result).__name__}; expected Grade, bool, a score or (one, reason)"
        )


def _source_hash(function: Callable[..., Any]) -> str:
    try:
        return "src-" + hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:8]
    except (OSError, TypeError):
        return "unversioned"


# The graders `--grader` names; `python:module:function` (PythonGrader) names a function of the user's instead.
GRADERS: dict[str, type[ExactGrader] | type[JudgeGrader]] = {"exact": ExactGrader, "judge": JudgeGrader}
PYTHON_GRADER = "python:"


def load_grader(
    spec: str,
    ladder: TierLadder,
    judge_model: str | None = None,
    success_threshold: float = 1.0,
    client: anthropic.Anthropic | None = None,
) -> Grader:
    """Build the grader named by --grader: one of `GRADERS`, or `python:module:function`."""
    if spec.startswith(PYTHON_GRADER):
        return PythonGrader(spec.removeprefix(PYTHON_GRADER), success_threshold)
    if spec not in GRADERS:
        raise InputError(f"--grader {spec!r}: use {', '.join(GRADERS)} or {PYTHON_GRADER}module:function")
    return GRADERS[spec].named(ladder, judge_model, client)
