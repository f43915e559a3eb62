"""`tierwise replay` end to end through the real `anthropic` client against the local stand-in API.

The fake answers 42 (the reference) on sonnet and opus and 41 on haiku, so every replayed outcome, and the
label it leads to, is known in advance.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner, Result
from tierwise.classifier.tiers import TierLadder
from tierwise.serving.standin import StandIn
from tierwise.training.data.sample_logs import generate_attempts

from tests.helpers import label_files
from tierwise.cli import main

API_KEY = "sk-ant-test-0123456789"
LADDER = TierLadder.load()
MODEL_TIER = {t.model: t.name for t in LADDER.tiers}


def answer_by_tier(params: dict[str, Any]) -> str:
    """Haiku gets it wrong; the stronger tiers answer the reference."""
    return "I think 41." if "haiku" in params["model"] else "Let me work it out. The answer is 42."


def write_logs(directory: Path, requests: int = 40, seed: int = 7, **columns: Any) -> Path:
    """Sample logs (with censored requests) plus constant extra columns, as JSONL."""
    frame = generate_attempts(requests, seed=seed).with_columns(
        pl.lit(value).alias(name) for name, value in {"reference": "42", **columns}.items()
    )
    path = directory / "attempts.jsonl"
    frame.write_ndjson(path)
    return path


def run_replay(fake: StandIn, logs: Path, out: Path, *args: str) -> Result:
    """Invoke `tierwise replay` in-process with fast polling against the fake."""
    argv = ["replay", str(logs), "--out", str(out), "--base-url", fake.url, "--poll-interval", "0.01", *args]
    return CliRunner().invoke(main, argv, env={"ANTHROPIC_API_KEY": API_KEY})


def expected_replays(logs: Path) -> set[tuple[str, str]]:
    """(request_id, tier) pairs below each censored request's cheapest success that were never tried."""
    _, labels = label_files([logs])
    pairs = set()
    for row in labels.frame.filter(pl.col("status") == "censored").iter_rows(named=True):
        tried = [row[f"success_{name}"] for name in LADDER.names]
        cheapest = next((i for i, ok in enumerate(tried) if ok), len(tried))
        pairs |= {(row["request_id"], LADDER.names[i]) for i in range(cheapest) if tried[i] is None}
    return pairs


@pytest.fixture
def fake():
    with StandIn(api_key=API_KEY, answer=answer_by_tier) as server:
        yield server


@pytest.fixture
def logs(tmp_path):
    return write_logs(tmp_path)


def test_full_replay_turns_censored_requests_into_labels(fake, logs, tmp_path):
    before = hashlib.sha256(logs.read_bytes()).hexdigest()
    expected = expected_replays(logs)
    assert expected and {tier for _, tier in expected} == {"haiku", "sonnet"}
    out = tmp_path / "new.parquet"

    result = run_replay(fake, logs, out)

    assert result.exit_code == 0, result.output
    assert hashlib.sha256(logs.read_bytes()).hexdigest() == before, "the source logs must not change"
    ids = fake.submitted_ids()
    assert len(ids) == len(set(ids)) == len(expected)
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", i) for i in ids)
    rows = pl.read_parquet(out)
    assert {(r, MODEL_TIER[m]) for r, m in rows.select("request_id", "model").iter_rows()} == expected
    assert rows["success"].to_list() == [MODEL_TIER[m] != "haiku" for m in rows["model"]]
    assert set(rows["grader"]) == {"exact"} and set(rows["grader_version"]) == {"1"}
    for row in rows.iter_rows(named=True):
        tier = LADDER.tiers[LADDER.index(MODEL_TIER[row["model"]])]
        list_price = tier.token_cost(row["input_tokens"], row["output_tokens"])
        assert row["cost_usd"] == pytest.approx(list_price / 2), "batch results cost half the list price"
    assert f"wrote {len(expected)} attempt rows" in result.output
    assert API_KEY not in result.output
    assert API_KEY not in (tmp_path / "new.replay-state.json").read_text()

    # Labelling the original logs together with the new rows settles every censored request.
    _, before_labels = label_files([logs])
    _, after_labels = label_files([logs, out])
    after = {r["request_id"]: r for r in after_labels.frame.iter_rows(named=True)}
    for row in before_labels.frame.filter(pl.col("status") == "censored").iter_rows(named=True):
        filled = [row[f"success_{n}"] if row[f"success_{n}"] is not None else n != "haiku" for n in LADDER.names]
        cheapest = next((LADDER.names[i] for i, ok in enumerate(filled) if ok), None)
        assert after[row["request_id"]]["status"] == ("solved" if cheapest else "unsolved")
        assert after[row["request_id"]]["label"] == (cheapest or LADDER.names[-1])
    label_run = CliRunner().invoke(main, ["label", str(logs), str(out), "--out", str(tmp_path / "labels.parquet")])
    assert label_run.exit_code == 0, label_run.output
    assert re.search(r"censored\s+0\b", label_run.output)


def test_rerun_sends_nothing_twice_and_rewrites_the_same_rows(fake, logs, tmp_path):
    out = tmp_path / "new.parquet"
    assert run_replay(fake, logs, out).exit_code == 0
    first = pl.read_parquet(out).sort("custom_id")
    submitted, calls = len(fake.submissions), len(fake.log)

    again = run_replay(fake, logs, out)

    assert again.exit_code == 0, again.output
    assert len(fake.submissions) == submitted
    assert [entry[0] for entry in fake.log[calls:]] == [], "a finished run needs no API call at all"
    assert pl.read_parquet(out).sort("custom_id").equals(first)


def test_dry_run_prints_requests_per_tier_and_cost_without_sending(fake, logs, tmp_path):
    out = tmp_path / "new.parquet"
    expected = expected_replays(logs)
    attempts = pl.read_ndjson(logs)
    per_request = attempts.group_by("request_id").agg(pl.col("input_tokens").mean(), pl.col("output_tokens").mean())
    tokens = {r: (i, o) for r, i, o in per_request.iter_rows()}
    estimate = sum(
        LADDER.tiers[LADDER.index(tier)].token_cost(*tokens[request_id]) / 2 for request_id, tier in expected
    )

    result = run_replay(fake, logs, out, "--dry-run")

    assert result.exit_code == 0, result.output
    assert fake.log == [] and not out.exists() and not (tmp_path / "new.replay-state.json").exists()
    for tier in ("haiku", "sonnet"):
        count = sum(1 for _, t in expected if t == tier)
        assert re.search(rf"^{tier}\s+\S+\s+{count}\s", result.output, re.M), result.output
    total = re.search(r"estimated total\s+\$([\d.,]+)", result.output)
    assert total and float(total.group(1)) == pytest.approx(estimate, abs=1e-4)


def test_dry_run_works_without_an_api_key(logs, tmp_path):
    result = CliRunner().invoke(
        main, ["replay", str(logs), "--out", str(tmp_path / "n.parquet"), "--dry-run"], env={"ANTHROPIC_API_KEY": ""}
    )
    assert result.exit_code == 0, result.output
    assert "estimated total" in result.output


def test_budget_stops_before_exceeding_then_a_bigger_budget_continues(logs, tmp_path):
    out = tmp_path / "new.parquet"
    expected = expected_replays(logs)
    attempts = pl.read_ndjson(logs)
    logged_output = dict(attempts.group_by("prompt").agg(pl.col("output_tokens").mean()).iter_rows())

    def answer_as_long_as_logged(params: dict[str, Any]) -> str:
        """Answers as long as the logs say, so actual costs land near the estimates."""
        text = answer_by_tier(params)
        return text + " " + "x" * int(4 * logged_output[params["messages"][0]["content"]])

    with StandIn(api_key=API_KEY, answer=answer_as_long_as_logged) as fake:
        dry = run_replay(fake, logs, out, "--dry-run")
        haiku_cost = float(re.search(r"^haiku\s.*\$([\d.]+)$", dry.output, re.M).group(1))
        budget = haiku_cost * 1.5

        result = run_replay(fake, logs, out, "--budget-usd", f"{budget:.6f}")

        assert result.exit_code == 0, result.output
        assert re.search(r"budget: [1-9]\d* replays not sent", result.output), result.output
        first_batch = [r["params"]["model"] for r in fake.batches[fake.submissions[0][0]].requests]
        haiku = sum(1 for _, tier in expected if tier == "haiku")
        assert first_batch.count(LADDER.tiers[0].model) == haiku, "the cheapest tier is replayed first"
        state = json.loads((tmp_path / "new.replay-state.json").read_text())
        spent = sum(s["cost_usd"] or 0 for s in state["submissions"].values())
        assert 0 < spent <= budget
        assert len(fake.submissions) < len(expected)

        more = run_replay(fake, logs, out, "--budget-usd", "100")

        assert more.exit_code == 0, more.output
        ids = fake.submitted_ids()
        assert len(ids) == len(set(ids)) == len(expected)
        assert pl.read_parquet(out).height == len(expected)


def test_max_requests_limits_the_censored_requests_replayed(fake, logs, tmp_path):
    out = tmp_path / "new.parquet"
    result = run_replay(fake, logs, out, "--max-requests", "3")
    assert result.exit_code == 0, result.output
    assert len({request_id for request_id in pl.read_parquet(out)["request_id"]}) == 3


def test_missing_api_key_is_a_clear_usage_error(logs, tmp_path):
    result = CliRunner().invoke(
        main, ["replay", str(logs), "--out", str(tmp_path / "n.parquet")], env={"ANTHROPIC_API_KEY": ""}
    )
    assert result.exit_code == 2
    assert "ANTHROPIC_API_KEY is not set" in result.output


def test_exact_grader_without_a_reference_column_is_refused_before_spending(fake, tmp_path):
    logs = tmp_path / "plain.jsonl"
    generate_attempts(30, seed=2).write_ndjson(logs)
    result = run_replay(fake, logs, tmp_path / "n.parquet")
    assert result.exit_code == 2
    assert "--reference-column" in result.output
    assert fake.log == []


def test_resuming_with_other_settings_is_refused(fake, logs, tmp_path):
    out = tmp_path / "new.parquet"
    assert run_replay(fake, logs, out).exit_code == 0
    result = run_replay(fake, logs, out, "--max-tokens", "64")
    assert result.exit_code == 2
    assert "max_tokens=1024" in result.output and "--state" in result.output


def test_out_may_not_overwrite_an_input_log(fake, logs):
    before = logs.read_bytes()
    result = run_replay(fake, logs, logs)
    assert result.exit_code == 2
    assert "never overwrites its sources" in result.output
    assert logs.read_bytes() == before and fake.log == []


def test_logged_chats_are_replayed_as_chats_with_a_system_prompt(fake, tmp_path):
    chat = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 6 x 7?"},
    ]
    rows = [
        {"request_id": "q1", "messages": chat, "model": "claude-opus-4-5", "success": True, "reference": "42"},
        {"request_id": "q1", "messages": chat, "model": "claude-sonnet-4-5", "success": False, "reference": "42"},
    ]
    logs = tmp_path / "chat.jsonl"
    logs.write_text("".join(json.dumps(row) + "\n" for row in rows))

    result = run_replay(fake, logs, tmp_path / "new.parquet", "--temperature", "0")

    assert result.exit_code == 0, result.output
    (request,) = next(iter(fake.batches.values())).requests
    assert request["params"] == {
        "model": "claude-haiku-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "What is 6 x 7?"}],
        "system": "You are terse.",
        "temperature": 0.0,
    }
    row = pl.read_parquet(tmp_path / "new.parquet").row(0, named=True)
    assert json.loads(row["messages"]) == chat and row["success"] is False
