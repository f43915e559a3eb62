"""Graders: exact matching on real answer shapes, the LLM judge through the fake API, and user callables."""

from __future__ import annotations

import textwrap

import polars as pl
import pytest
from tierwise.serving.standin import StandIn
from tierwise.training.data.sample_logs import generate_attempts
from tierwise.training.replay.graders import ExactGrader, GradeInput, GradingError

from tests.test_replay import API_KEY, LADDER, answer_by_tier, expected_replays, run_replay, write_logs


def grade(answer: str, reference: str | None) -> bool:
    item = GradeInput("r1", "q", answer, "m", "haiku", reference=reference)
    return ExactGrader().grade(item).success


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        ("The answer is (C).", "C", True),
        ("Answer: **B**", "B", True),
        ("B) because the others are wrong", "B", True),
        ("Option A looks tempting, but the answer is D", "D", True),
        ("A", "(a)", True),
        ("I would say (B), no wait, the answer is (C)", "B", False),
        ("The answer is (C).", "D", False),
        ("Answer: I think it is not obvious", "I", False),
        ("The answer is (I).", "I", True),
        ("Total: 1,234 apples\n#### 1,234", "1234", True),
        ("so the probability is \\boxed{3/4}", "0.75", True),
        ("x = 5 and y = 7, so the answer is 12.0", "12", True),
        ("It costs $45.", "45", True),
        ("It costs 46 dollars.", "45", False),
        ("No number here.", "3", False),
        ("Answer: Paris.", "paris", True),
        ("The Eiffel tower", "the eiffel tower!", True),
        ("London", "Paris", False),
    ],
)
def test_exact_grader_extracts_choices_and_numbers(answer, reference, expected):
    assert grade(answer, reference) is expected


def test_exact_grader_needs_a_reference():
    with pytest.raises(GradingError, match="no reference"):
        grade("A", None)


def test_judge_grades_with_a_forced_tool_and_a_cached_rubric(tmp_path):
    logs = write_logs(tmp_path, requests=30, seed=5, response="The answer is 42.")
    expected = expected_replays(logs)
    out = tmp_path / "judged.parquet"
    with StandIn(api_key=API_KEY, answer=answer_by_tier) as fake:
        result = run_replay(fake, logs, out, "--grader", "judge", "--judge-model", "claude-haiku-4-5")
        calls = list(fake.message_calls)

        assert result.exit_code == 0, result.output
        assert len(calls) == len(expected)
        for call in calls:
            assert call["model"] == "claude-haiku-4-5"
            assert call["tool_choice"] == {"type": "tool", "name": "record_grade"}
            assert call["system"][-1]["cache_control"] == {"type": "ephemeral"}
            assert "<reference_answer>\nThe answer is 42.\n</reference_answer>" in call["messages"][0]["content"]
        rows = pl.read_parquet(out)
        assert rows.height == len(expected)
        assert set(rows["grader"]) == {"judge:claude-haiku-4-5"}
        assert rows["grader_version"][0].startswith("1-")
        assert rows["success"].to_list() == ["haiku" not in m for m in rows["model"]]
        assert set(rows["grade_reason"]) == {"matches the reference", "differs from the reference"}
        # One cache write, then cache reads at a tenth of the price: later grades cost less than the first.
        costs = sorted(rows["grader_cost_usd"].to_list())
        assert costs[-1] > costs[0] and sum(1 for c in costs if c == costs[-1]) == 1

        again = run_replay(fake, logs, out, "--grader", "judge", "--judge-model", "claude-haiku-4-5")
        assert again.exit_code == 0, again.output
        assert len(fake.message_calls) == len(calls), "stored grades are not judged (or paid for) again"

        exact = run_replay(fake, logs, out)
        assert exact.exit_code == 0, exact.output
        assert len(fake.submissions) == len(expected), "regrading with another grader re-uses the answers"
        assert set(pl.read_parquet(out)["grader"]) == {"exact"}


def test_judge_reply_without_a_verdict_leaves_the_answer_ungraded(tmp_path):
    logs = write_logs(tmp_path, requests=20, seed=5, response="The answer is 42.")
    out = tmp_path / "judged.parquet"
    with StandIn(api_key=API_KEY, answer=answer_by_tier, judge=lambda params: {"verdict": "yes"}) as fake:
        result = run_replay(fake, logs, out, "--grader", "judge", "--judge-model", "claude-haiku-4-5")
    assert result.exit_code == 0, result.output
    assert "did not return a record_grade verdict" in result.output
    assert pl.read_parquet(out).height == 0


def test_judge_without_any_reference_grades_the_answer_on_its_own(tmp_path):
    logs = tmp_path / "plain.jsonl"
    generate_attempts(20, seed=5).write_ndjson(logs)

    def strict_judge(params: dict) -> dict:
        return {"passed": "42" in params["messages"][0]["content"], "reason": "judged without a reference"}

    with StandIn(api_key=API_KEY, answer=answer_by_tier, judge=strict_judge) as fake:
        result = run_replay(fake, logs, tmp_path / "j.parquet", "--grader", "judge")
        assert result.exit_code == 0, result.output
        assert fake.message_calls and all(
            "<reference_answer>" not in call["messages"][0]["content"] for call in fake.message_calls
        )
    rows = pl.read_parquet(tmp_path / "j.parquet")
    assert rows.height == len(expected_replays(logs))
    assert rows["success"].to_list() == ["haiku" not in m for m in rows["model"]]


def test_python_grader_is_imported_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "my_grader.py").write_text(
        textwrap.dedent(
            """
            def grade(item):
                return (0.5 if "42" in item.answer else 0.0), "half credit for 42"

            grade.version = "7"
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    logs = write_logs(tmp_path, requests=20, seed=5)
    out = tmp_path / "py.parquet"
    with StandIn(api_key=API_KEY, answer=answer_by_tier) as fake:
        result = run_replay(fake, logs, out, "--grader", "python:my_grader:grade", "--success-threshold", "0.5")
    assert result.exit_code == 0, result.output
    rows = pl.read_parquet(out)
    assert set(rows["grader"]) == {"python:my_grader:grade"} and set(rows["grader_version"]) == {"7"}
    assert rows["score"].to_list() == [0.0 if "haiku" in m else 0.5 for m in rows["model"]]
    assert rows["success"].to_list() == ["haiku" not in m for m in rows["model"]]


def test_unknown_grader_is_a_usage_error(tmp_path):
    logs = write_logs(tmp_path, requests=10)
    with StandIn(api_key=API_KEY) as fake:
        result = run_replay(fake, logs, tmp_path / "o.parquet", "--grader", "python:no_such_module:f")
    assert result.exit_code == 2
    assert "cannot import 'no_such_module'" in result.output


def test_judge_model_defaults_to_the_top_tier():
    from tierwise.training.replay.graders import load_grader

    assert load_grader("judge", LADDER).name == f"judge:{LADDER.top.model}"
