"""Replay under failure: killed processes, lost responses, malformed replies, rate limits, failed batch items.

The invariant every test checks: the fake API never receives the same custom_id twice and never bills the
same (request, model) twice, and a rerun of the same command finishes the job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from tierwise.serving.standin import StandIn
from tierwise.training.replay.censored import replay_key

from tests.test_replay import API_KEY, LADDER, answer_by_tier, expected_replays, run_replay, write_logs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake():
    with StandIn(api_key=API_KEY, answer=answer_by_tier) as server:
        yield server


@pytest.fixture
def logs(tmp_path):
    return write_logs(tmp_path, requests=30, seed=11)


def assert_billed_once(fake: StandIn) -> None:
    ids = fake.submitted_ids()
    assert len(ids) == len(set(ids)), f"custom_ids submitted twice: {[i for i, n in Counter(ids).items() if n > 1]}"
    keys = [(custom_id.rsplit("-", 1)[0], model) for custom_id, model in fake.billed]
    assert len(keys) == len(set(keys)), "a (request, model) was billed twice"


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def start_replay_process(fake: StandIn, logs: Path, out: Path) -> subprocess.Popen:
    """`tierwise replay` in its own process, so the test can kill it like a crash would."""
    argv = [sys.executable, "-m", "tierwise", "replay", str(logs), "--out", str(out)]
    argv += ["--base-url", fake.url, "--poll-interval", "0.02"]
    env = {**os.environ, "ANTHROPIC_API_KEY": API_KEY}
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def state_of(out: Path) -> dict:
    path = out.with_name(f"{out.stem}.replay-state.json")
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.mark.parametrize("moment", ["while_polling", "before_hearing_the_batch_id"])
def test_killed_run_resumes_without_sending_anything_twice(fake, logs, tmp_path, moment):
    out = tmp_path / "new.parquet"
    expected = expected_replays(logs)
    if moment == "while_polling":
        fake.release.clear()
    else:
        fake.hold_create.clear()
    process = start_replay_process(fake, logs, out)
    try:
        if moment == "while_polling":
            wait_for(lambda: state_of(out).get("batches"))
        else:
            assert fake.created.wait(30), process.stderr.read().decode() if process.poll() is not None else ""
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    fake.release.set()
    fake.hold_create.set()
    assert len(fake.batches) == 1

    result = run_replay(fake, logs, out)

    assert result.exit_code == 0, result.output
    assert_billed_once(fake)
    assert len(fake.batches) == 1, "the resumed run must not create another batch"
    assert pl.read_parquet(out).height == len(expected)
    roles = {b["role"] for b in state_of(out)["batches"].values()}
    assert roles == ({"ours"} if moment == "while_polling" else {"adopted"})


def test_no_wait_submits_and_exits_then_a_later_run_collects(fake, logs, tmp_path):
    out = tmp_path / "new.parquet"
    fake.release.clear()

    first = run_replay(fake, logs, out, "--no-wait")

    assert first.exit_code == 0, first.output
    assert "rerun the same command to collect" in first.output
    assert pl.read_parquet(out).height == 0
    fake.release.set()

    second = run_replay(fake, logs, out)

    assert second.exit_code == 0, second.output
    assert len(fake.batches) == 1
    assert_billed_once(fake)
    assert pl.read_parquet(out).height == len(expected_replays(logs))


def test_create_that_failed_before_reaching_the_api_is_resent_under_new_ids(fake, logs, tmp_path):
    out = tmp_path / "new.parquet"
    fake.fail("POST", "/v1/messages/batches", 500)

    failed = run_replay(fake, logs, out, "--max-retries", "0")

    assert failed.exit_code == 1
    assert "rerun the same command to reconcile" in failed.output
    assert not fake.batches
    unresolved = [i for i in state_of(out)["intents"].values() if not i["resolved"]]
    assert len(unresolved) == 1

    result = run_replay(fake, logs, out)

    assert result.exit_code == 0, result.output
    assert_billed_once(fake)
    assert all(custom_id.endswith("-1") for custom_id in fake.submitted_ids()), "attempt 0 ids are never reused"
    assert pl.read_parquet(out).height == len(expected_replays(logs))


def test_a_create_retried_by_the_sdk_after_a_lost_response_cancels_the_duplicate(logs, tmp_path):
    out = tmp_path / "new.parquet"
    expected = expected_replays(logs)
    # polls_to_end=2: the cancelled twin ends (and is collected) before the kept batch does.
    with StandIn(api_key=API_KEY, answer=answer_by_tier, polls_to_end=2) as fake:
        fake.fail("POST", "/v1/messages/batches", 500, after_handling=True, headers={"retry-after-ms": "1"})

        result = run_replay(fake, logs, out)

    assert result.exit_code == 0, result.output
    assert len(fake.batches) == 2, "the SDK's retry created the batch a second time"
    statuses = Counter("canceled" if b.cancel_initiated_at else "processed" for b in fake.batches.values())
    assert statuses == {"canceled": 1, "processed": 1}
    assert len(fake.submissions) == 2 * len(expected), "the twin's cancelled items are not retried"
    keys = [(custom_id.rsplit("-", 1)[0], model) for custom_id, model in fake.billed]
    assert len(keys) == len(set(keys)) == len(expected)
    assert pl.read_parquet(out).height == len(expected)
    assert {b["role"] for b in state_of(out)["batches"].values()} == {"ours", "duplicate"}


def test_rate_limits_and_overload_back_off_through_the_sdk(fake, logs, tmp_path):
    fast = {"retry-after-ms": "1"}
    fake.fail("POST", "/v1/messages/batches", 429, times=2, headers=fast)
    fake.fail("POST", "/v1/messages/batches", 529, headers=fast)
    fake.fail("GET", r"/v1/messages/batches/[^/]+", 529, headers=fast)
    fake.fail("GET", r"/v1/messages/batches/[^/]+/results", 429, headers=fast)

    result = run_replay(fake, logs, tmp_path / "new.parquet")

    assert result.exit_code == 0, result.output
    assert [status for method, _, status in fake.log if method == "FAULT"] == [429, 429, 529, 529, 429]
    assert len(fake.batches) == 1
    assert_billed_once(fake)


def test_rate_limit_outlasting_the_sdk_retries_is_a_clear_error_and_resumable(fake, logs, tmp_path):
    out = tmp_path / "new.parquet"
    fake.fail("POST", "/v1/messages/batches", 429, times=3, headers={"retry-after-ms": "1"})

    failed = run_replay(fake, logs, out, "--max-retries", "2")

    assert failed.exit_code == 1
    assert "HTTP 429" in failed.output and "rate limit" in failed.output
    result = run_replay(fake, logs, out)
    assert result.exit_code == 0, result.output
    assert_billed_once(fake)


def test_errored_and_expired_items_are_retried_then_reported(logs, tmp_path):
    expected = expected_replays(logs)
    doomed_request = sorted(expected)[0][0]
    doomed = {(r, t) for r, t in expected if r == doomed_request}

    doomed_keys = {replay_key(r, LADDER.tiers[LADDER.index(t)].model) for r, t in doomed}

    def outcome(custom_id: str, params: dict) -> str:
        if custom_id.rsplit("-", 1)[0] in doomed_keys:
            return "expired"
        return "errored" if custom_id.endswith("-0") else "succeeded"

    out = tmp_path / "new.parquet"
    with StandIn(api_key=API_KEY, answer=answer_by_tier, item_outcome=outcome) as fake:
        result = run_replay(fake, logs, out, "--item-retries", "2")

    assert result.exit_code == 0, result.output
    ids = fake.submitted_ids()
    assert len(ids) == len(set(ids))
    attempts = Counter(custom_id.rsplit("-", 1)[0] for custom_id in ids)
    assert sorted(attempts.values()) == sorted([3] * len(doomed) + [2] * (len(expected) - len(doomed)))
    rows = pl.read_parquet(out)
    assert set(rows["request_id"]) == {r for r, _ in expected} - {doomed_request}
    assert f"failed replays (retries exhausted or not retryable): {len(doomed)}" in result.output
    assert f"{doomed_request} on" in result.output and "expired" in result.output


def test_invalid_requests_are_not_retried(logs, tmp_path):
    with StandIn(api_key=API_KEY, item_outcome=lambda custom_id, params: "invalid") as fake:
        result = run_replay(fake, logs, tmp_path / "new.parquet")
    assert result.exit_code == 0, result.output
    assert len(fake.batches) == 1
    assert len(fake.submissions) == len(expected_replays(logs)), "one submission each, no retry"
    assert "errored: prompt is too long" in result.output


MALFORMED = {
    "create_not_json": ("POST", "/v1/messages/batches", b"<html>bad gateway</html>"),
    "retrieve_wrong_shape": ("GET", r"/v1/messages/batches/[^/]+", b'{"type": "message_batch", "id": 7}'),
    "results_garbage_line": ("GET", r"/v1/messages/batches/[^/]+/results", b'{"custom_id": "x"\nnot json\n'),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_responses_stop_with_a_clear_error_and_leave_the_state_usable(fake, logs, tmp_path, case):
    method, path, body = MALFORMED[case]
    fake.fail(method, path, 200, body=body)
    out = tmp_path / "new.parquet"

    failed = run_replay(fake, logs, out)

    assert failed.exit_code == 1, failed.output
    assert "malformed" in failed.output
    assert "Traceback" not in failed.output
    state = state_of(out)
    assert state["version"] == 1, "the state file is still a complete, readable state"
    assert not any(s["outcome"] == "succeeded" for s in state["submissions"].values())

    result = run_replay(fake, logs, out)

    assert result.exit_code == 0, result.output
    assert_billed_once(fake)
    assert pl.read_parquet(out).height == len(expected_replays(logs))


def test_a_second_process_on_the_same_state_is_refused(fake, logs, tmp_path):
    from tierwise.training.replay.state import ReplayState, StateError

    state_path = tmp_path / "s.json"
    holder = ReplayState.open(state_path, {})
    try:
        with pytest.raises(StateError, match="another tierwise replay"):
            ReplayState.open(state_path, {})
    finally:
        holder.close()
    ReplayState.open(state_path, {}).close()
