"""`tierwise collect`: decision and outcome rows, as the server writes them, joined into attempt logs.

Every reported attempt becomes one row or is counted under the reason it could not; repeats of an attempt
merge; redacted prompts come back from --prompts; a malformed row stops with file:line:field."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from tierwise.classifier.decider import Decision
from tierwise.classifier.records import DECISION_COLUMNS, DECISION_MARKER, OUTCOME_COLUMNS, OUTCOME_MEASURES
from tierwise.classifier.request import Message, RouteRequest
from tierwise.classifier.router import Prediction
from tierwise.serving.decision_log import decision_row
from tierwise.serving.outcomes import ReceivedOutcome, outcome_row
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.training.data.logs import read_attempts

from tests.peak_memory import run_measured
from tierwise.cli import main as cli

HAIKU, SONNET, OPUS = "claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-6"
T0 = 1_780_000_000.0


def decision(request_id: str, text: str, tier: str = "haiku", **served: object) -> Decision:
    chain = ["haiku", "sonnet", "opus"][["haiku", "sonnet", "opus"].index(tier) :]
    prediction = Prediction(
        tier=tier,
        model={"haiku": HAIKU, "sonnet": SONNET, "opus": OPUS}[tier],
        probabilities={"haiku": 0.7, "sonnet": 0.8, "opus": 0.9},
        fallback_chain=chain,
        quality_target=0.8,
        mode="threshold",
        expected_cost_usd=0.01,
    )
    request = RouteRequest(text)
    return Decision(request_id, request, request.options, prediction, "v1", T0, 0, **served)  # type: ignore[arg-type]


def outcome(seconds: float, **fields: object) -> dict:
    return outcome_row(ReceivedOutcome(pb.Outcome(**fields), True, T0 + seconds))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def collect(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["collect", *map(str, args)])
    return result.exit_code, result.output


@pytest.fixture
def traffic(tmp_path) -> tuple[Path, Path]:
    """Four routed requests (one explored, one redacted-style chat) and their outcome reports."""
    decisions = [
        decision_row(decision("a", "Say hi.")),
        decision_row(
            decision("b", "Prove it.", "haiku", explored=True, propensity=0.1, propensities={"haiku": 0.1, "opus": 0.9})
        ),
        decision_row(decision("c", "Summarise.", "sonnet")),
        decision_row(decision("quiet", "Never reported.")),
    ]
    outcomes = [
        outcome(1, request_id="a", model=HAIKU, cost_usd=0.001, latency_ms=500.0),  # graded later
        outcome(2, request_id="b", model=HAIKU, attempt=0, success=False, error="OverloadedError"),
        outcome(3, request_id="b", model=SONNET, attempt=1, success=False, ttft_ms=90.0),
        outcome(4, request_id="b", model=OPUS, attempt=2, success=True, cache_read_input_tokens=1200),
        outcome(5, request_id="c", model=SONNET, score=1.0),
        outcome(6, request_id="a", model=HAIKU, success=True),  # the later grade of a's attempt
        outcome(7, request_id="ghost", model=HAIKU, success=True),
        outcome(8, request_id="c", model=OPUS, attempt=1, cost_usd=0.02),  # never graded
    ]
    return write_jsonl(tmp_path / "decisions.jsonl", decisions), write_jsonl(tmp_path / "outcomes.jsonl", outcomes)


def test_the_rows_serving_writes_are_the_columns_the_shared_schema_names():
    """Serving writes and collect reads the rows of `tierwise.classifier.records`; the proto's optional numbers
    are its outcome measures."""
    measures = [f.name for f in pb.Outcome.DESCRIPTOR.fields if f.has_presence and f.name not in ("success", "score")]
    assert tuple(measures) == OUTCOME_MEASURES
    assert tuple(outcome(0, request_id="a", model=HAIKU)) == OUTCOME_COLUMNS
    plain = decision_row(decision("a", "Say hi."))
    chat = decision_row(
        dataclasses.replace(decision("b", "Hi"), request=RouteRequest(messages=(Message("user", "Hi"),)))
    )
    redacted = decision_row(decision("c", "Quiet."), redact_prompts=True)
    assert set(plain) | set(chat) == set(DECISION_COLUMNS) and set(redacted) < set(plain)
    assert DECISION_MARKER in plain and DECISION_MARKER not in OUTCOME_COLUMNS


def test_each_reported_attempt_becomes_one_row_and_repeats_merge(traffic, tmp_path):
    decisions, outcomes = traffic
    out = tmp_path / "attempts.parquet"
    code, output = collect(outcomes, decisions, "--out", out)  # the order of the files does not matter
    assert code == 0, output
    rows = {(r["request_id"], r["model"]): r for r in pl.read_parquet(out).to_dicts()}
    assert sorted(rows) == [("a", HAIKU), ("b", HAIKU), ("b", OPUS), ("b", SONNET), ("c", SONNET)]
    merged = rows[("a", HAIKU)]
    assert (merged["success"], merged["cost_usd"], merged["latency_ms"], merged["prompt"]) == (
        True,
        0.001,
        500.0,
        "Say hi.",
    )
    assert merged["timestamp"] > rows[("b", HAIKU)]["timestamp"]  # the later report's time
    explored = rows[("b", OPUS)]
    assert (explored["attempt"], explored["cache_read_input_tokens"], explored["served_tier"]) == (2, 1200, "haiku")
    assert (explored["explored"], explored["propensity"]) == (True, 0.1)
    assert json.loads(explored["propensities"]) == {"haiku": 0.1, "opus": 0.9}
    assert json.loads(explored["fallback_chain"]) == ["haiku", "sonnet", "opus"]
    assert (rows[("b", HAIKU)]["error"], rows[("b", SONNET)]["ttft_ms"]) == ("OverloadedError", 90.0)
    assert rows[("c", SONNET)]["score"] == 1.0 and rows[("c", SONNET)]["success"] is None
    assert (merged["model_version"], merged["latency_band"], merged["propensity"]) == ("v1", "interactive", 1.0)
    assert "decisions:  4 rows from 1 files" in output
    assert "outcomes:   8 reports from 1 files, of 7 attempts (1 merged" in output
    assert "matched:    5 attempts of 3 requests" in output
    assert "unmatched:  2 attempts" in output
    assert "1  no decision for its request_id" in output and "1  not graded (no success or score)" in output
    assert "decisions without any outcome: 1" in output
    assert "censored:   33.3% of the requests (1)" in output  # c: sonnet succeeded, haiku never tried


def test_the_attempt_log_reads_back_as_any_attempt_log(traffic, tmp_path):
    out = tmp_path / "attempts.csv"
    assert collect(*traffic, "--out", out)[0] == 0
    log = read_attempts([out])
    assert log.frame.height == 5 and log.rows_skipped == 0
    assert log.frame.filter(pl.col("request_id") == "c")["success"].to_list() == [True]  # score 1.0 >= threshold


def test_redacted_prompts_come_back_from_the_prompts_file_by_id_or_by_hash(tmp_path):
    decisions = write_jsonl(
        tmp_path / "decisions.jsonl",
        [decision_row(decision(rid, text), redact_prompts=True) for rid, text in [("x", "One."), ("y", "Two.")]]
        + [decision_row(decision("z", "Three."), redact_prompts=True)],
    )
    outcomes = write_jsonl(
        tmp_path / "outcomes.jsonl",
        [outcome(i, request_id=rid, model=HAIKU, success=True) for i, rid in enumerate("xyz")],
    )
    assert "prompt" not in json.loads(decisions.read_text().splitlines()[0])
    prompts = write_jsonl(
        tmp_path / "prompts.jsonl",
        [{"request_id": "x", "prompt": "One."}, {"prompt": "Two."}, {"request_id": "z", "prompt": "Not three."}],
    )
    out = tmp_path / "attempts.jsonl"
    code, output = collect(decisions, outcomes, "--prompts", prompts, "--out", out)
    assert code == 0, output
    assert {r["request_id"]: r["prompt"] for r in pl.read_ndjson(out).to_dicts()} == {"x": "One.", "y": "Two."}
    assert "1  the --prompts text does not match the decision's prompt_sha256" in output
    code, output = collect(decisions, outcomes, "--out", out)
    assert code == 2 and "3  no prompt (redacted, and not in --prompts)" in output


def test_chat_messages_travel_as_messages(tmp_path):
    chat = RouteRequest(messages=(Message("system", "Be terse."), Message("user", "Hi.")))
    routed = dataclasses.replace(decision("m", "unused"), request=chat)
    decisions = write_jsonl(tmp_path / "d.jsonl", [decision_row(routed)])
    outcomes = write_jsonl(tmp_path / "o.jsonl", [outcome(1, request_id="m", model=HAIKU, success=True)])
    out = tmp_path / "attempts.parquet"
    assert collect(decisions, outcomes, "--out", out)[0] == 0
    row = pl.read_parquet(out).row(0, named=True)
    assert json.loads(row["messages"]) == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi."},
    ]
    assert read_attempts([out]).frame["prompt"].to_list() == ["system: Be terse.\n\nuser: Hi."]


def test_csv_and_parquet_inputs_collect_the_same_rows(traffic, tmp_path):
    reference = tmp_path / "reference.parquet"
    assert collect(*traffic, "--out", reference)[0] == 0
    for suffix in (".csv", ".parquet"):
        converted = []
        for path in traffic:
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            flat = [{k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()} for row in rows]
            target = path.with_suffix(suffix)
            frame = pl.DataFrame(flat, infer_schema_length=None)
            frame.write_csv(target) if suffix == ".csv" else frame.write_parquet(target)
            converted.append(target)
        out = tmp_path / f"from{suffix}.parquet"
        code, output = collect(*converted, "--out", out)
        assert code == 0, output
        key = ["request_id", "model"]
        assert pl.read_parquet(out).sort(key).equals(pl.read_parquet(reference).sort(key))


MALFORMED = [
    ("decisions.jsonl", 2, "propensity", {"propensity": 1.5}),
    ("decisions.jsonl", 3, "fallback_chain", {"fallback_chain": []}),
    ("outcomes.jsonl", 2, "cost_usd", {"cost_usd": -1}),
    ("outcomes.jsonl", 3, "success", {"success": "maybe"}),
    ("outcomes.jsonl", 1, "model", {"model": None}),
    ("outcomes.jsonl", 2, "attempt", {"attempt": 1.5}),
    ("outcomes.jsonl", 4, "score", {"score": "NaN"}),
]


@pytest.mark.parametrize(("name", "line", "field", "change"), MALFORMED, ids=[f"{n}:{f}" for n, _, f, _ in MALFORMED])
def test_a_malformed_row_exits_2_naming_file_line_and_field(traffic, name, line, field, change):
    path = next(p for p in traffic if p.name == name)
    rows = [json.loads(text) for text in path.read_text().splitlines()]
    rows[line - 1].update(change)
    write_jsonl(path, rows)
    code, output = collect(*traffic, "--out", path.parent / "attempts.parquet")
    assert code == 2
    assert f"{path}:{line}:{field}: " in output


def test_a_line_that_is_not_json_is_named(traffic):
    decisions, outcomes = traffic
    outcomes.write_text(outcomes.read_text() + "{not json\n")
    code, output = collect(decisions, outcomes, "--out", outcomes.parent / "attempts.parquet")
    assert code == 2 and f"{outcomes}:9: not valid JSON" in output


def test_inputs_without_a_decision_log_or_an_outcome_log_are_refused(traffic):
    decisions, outcomes = traffic
    for only in (decisions, outcomes):
        code, output = collect(only, "--out", only.parent / "attempts.parquet")
        assert code == 2 and "no " in output and "fallback_chain" in output


def test_the_prompt_hash_of_a_decision_is_the_routed_text():
    row = decision_row(decision("h", "Hash me."), redact_prompts=True)
    assert row["prompt_sha256"] == hashlib.sha256(b"Hash me.").hexdigest()


REQUESTS, PROMPT_CHARS, SLICE = 100_000, 15_000, 1000


def write_wordy_traffic(directory: Path) -> int:
    """Decisions whose prompts (a distinct 15 kB each: 1.4 GB in all) dwarf what collect needs to hold, and two
    outcome reports per decision; the files stay small (the text compresses). Written a slice of requests at a
    time, one Parquet row group each. Returns the prompts' text bytes."""
    decisions = outcomes = None
    for first in range(0, REQUESTS, SLICE):
        ids = pl.DataFrame({"n": np.arange(first, first + SLICE)})
        decided = ids.select(
            pl.format("r{}", "n").alias("request_id"),
            pl.concat_str([pl.format("question {} ", "n"), pl.lit("x" * PROMPT_CHARS)]).alias("prompt"),
            pl.lit("haiku").alias("tier"),
            pl.lit(["haiku", "opus"]).alias("fallback_chain"),
            pl.lit('{"haiku": 0.6, "opus": 0.9}').alias("probabilities"),
            pl.lit("2026-01-01T00:00:00+00:00").alias("time"),
        ).to_arrow()
        reported = (
            ids.join(pl.DataFrame({"k": [0, 1]}), how="cross")
            .select(
                pl.format("r{}", "n").alias("request_id"),
                pl.when(pl.col("k") == 0).then(pl.lit(HAIKU)).otherwise(pl.lit(OPUS)).alias("model"),
                pl.col("k").alias("attempt"),
                ((pl.col("n") + pl.col("k")) % 2 == 0).alias("success"),
            )
            .to_arrow()
        )
        decisions = decisions or pq.ParquetWriter(directory / "decisions.parquet", decided.schema, compression="zstd")
        outcomes = outcomes or pq.ParquetWriter(directory / "outcomes.parquet", reported.schema, compression="zstd")
        decisions.write_table(decided)
        outcomes.write_table(reported)
    assert decisions is not None and outcomes is not None
    decisions.close()
    outcomes.close()
    return REQUESTS * PROMPT_CHARS


def test_collecting_holds_far_less_than_the_prompts_text(tmp_path):
    text_mb = write_wordy_traffic(tmp_path) / 2**20
    out = tmp_path / "attempts.parquet"
    args = ["collect", tmp_path / "decisions.parquet", tmp_path / "outcomes.parquet", "--out", out]
    run = run_measured([sys.executable, "-m", "tierwise", *map(str, args)])
    assert run.returncode == 0, run.output
    assert f"matched:    {2 * REQUESTS} attempts of {REQUESTS} requests" in run.output
    assert run.peak_rss_mb < text_mb / 1.5, f"peak {run.peak_rss_mb:.0f} MiB for {text_mb:.0f} MiB of prompt text"
    prompt = pl.col("prompt")
    written = pl.scan_parquet(out).select(pl.len(), prompt.str.len_bytes().sum().alias("bytes"), prompt.first())
    rows, text_bytes, first = written.collect(engine="streaming").row(0)
    assert (rows, first[:12]) == (2 * REQUESTS, "question 0 x")
    assert text_bytes > 2 * REQUESTS * PROMPT_CHARS  # each attempt row carries its request's prompt
