"""The workload: a column of attempt logs kept through label, collect and train, bounded like every identifier, and
the workloads file (`[default]`, `[workload.NAME]`) checked on load, naming the entry and the field it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from tierwise.classifier.limits import IDENTIFIER
from tierwise.classifier.tiers import TierLadder
from tierwise.classifier.workloads import WorkloadError, WorkloadPolicy, Workloads
from tierwise.serving.decision_log import decision_row
from tierwise.training.data.labels import label_requests
from tierwise.training.data.logs import LogError, read_attempts

from tests.helpers import write_rows
from tests.test_collect import HAIKU, OPUS, decision, outcome, write_jsonl
from tierwise.cli import main as cli

POLICIES = """
[default]
band = "interactive"
quality_target = 0.9

[workload.nightly-summaries]
band = "async"
quality_target = 0.85
allowed_tiers = ["haiku", "sonnet"]

[workload."support triage"]
max_latency_ms = 4000
mode = "cost"
explore_rate = 0.05
value_of_time_usd_per_s = 0.001
"""


def test_a_workload_entry_states_what_differs_from_the_default_and_unknown_workloads_get_the_default():
    workloads = Workloads.from_toml(POLICIES, "policies.toml")
    nightly = workloads.policy_for("nightly-summaries")
    assert (nightly.band, nightly.quality_target, nightly.allowed_tiers) == ("async", 0.85, ("haiku", "sonnet"))
    support = workloads.policy_for("support triage")
    assert (support.band, support.quality_target, support.max_latency_ms, support.mode) == (
        "interactive",
        0.9,
        4000.0,
        "cost",
    )
    assert workloads.policy_for("never-named") == workloads.policy_for(None) == workloads.default
    assert workloads.default == WorkloadPolicy(band="interactive", quality_target=0.9)


def test_the_file_written_reads_back_as_the_same_policies(tmp_path):
    workloads = Workloads.from_toml(POLICIES)
    path = tmp_path / "out.toml"
    path.write_text(workloads.to_toml({"nightly-summaries": ["batch it: nobody waits"]}))
    assert '# batch it: nobody waits\n[workload."nightly-summaries"]' in path.read_text()
    assert Workloads.load(path) == workloads


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[default]\nband = "sometimes"', "[default] band: must be one of ['interactive', 'tolerant', 'async']"),
        ("[workload.w]\nquality_target = 1.5", "[workload.w] quality_target: must be a number >= 0 and <= 1"),
        ("[workload.w]\nmax_latency_ms = 0", "[workload.w] max_latency_ms: must be a number > 0"),
        ('[workload.w]\nallowed_tiers = ["haiku", "haiku"]', "[workload.w] allowed_tiers: names a tier twice"),
        ("[workload.w]\nallowed_tiers = []", "[workload.w] allowed_tiers: must be a non-empty list of tier names"),
        ('[workload.w]\nmode = "fast"', "[workload.w] mode: must be one of ['threshold', 'cost']"),
        ("[workload.w]\nexplore_rate = true", "[workload.w] explore_rate: must be a number"),
        ("[workload.w]\nbudget = 3", "[workload.w] budget: unknown key"),
        ("[workloads.w]\nband = 'async'", "unknown table(s) ['workloads']"),
        (f'[workload.{"w" * 129}]\nband = "async"', "workload name: 129 characters is over the limit of 128"),
        ("[default\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_entry_and_the_field(tmp_path, text, named):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(WorkloadError) as refused:
        Workloads.load(path)
    assert str(refused.value).startswith(f"{path}: ")
    assert named in str(refused.value)


def test_allowed_tiers_must_be_tiers_of_the_ladder_routed_on():
    workloads = Workloads.from_toml('[workload.w]\nallowed_tiers = ["haiku", "gpt-5"]', "p.toml")
    with pytest.raises(WorkloadError, match=r"p.toml: \[workload.w\] allowed_tiers: unknown tier\(s\) \['gpt-5'\]"):
        workloads.check_tiers(TierLadder.load().names)


def rows(workload: str | None, request: str = "r1") -> list[dict]:
    return [
        {"request_id": request, "prompt": "Say hi.", "model": model, "success": ok, "workload": workload}
        for model, ok in ((HAIKU, True), (OPUS, True))
    ]


def test_label_keeps_the_workload_of_each_request(tmp_path):
    logs = write_rows([*rows("greetings"), *rows(None, "r2")], tmp_path / "a.jsonl")
    frame = label_requests(read_attempts([logs]), TierLadder.load()).frame
    assert dict(frame.select("request_id", "workload").iter_rows()) == {"r1": "greetings", "r2": None}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_a_workload_longer_than_an_identifier_is_a_bad_row_naming_the_column(tmp_path, suffix):
    long = "w" * (IDENTIFIER.maximum + 1)
    logs = write_rows([*rows("fine"), *rows(long, "r2")], tmp_path / f"a{suffix}")
    with pytest.raises(LogError, match=r"row \d+: column workload: longer than the limit of 128 characters"):
        read_attempts([logs])
    kept = read_attempts([logs], skip_invalid=True)
    assert set(kept.frame["workload"].to_list()) == {"fine"}
    assert kept.skipped == {"column workload: longer than the limit of 128 characters": 2}


def test_collect_keeps_the_workload_a_decision_names_and_bounds_it(tmp_path):
    decisions = [
        {**decision_row(decision("a", "Say hi.")), "workload": "greetings"},
        decision_row(decision("b", "Prove it.")),
    ]
    write_jsonl(tmp_path / "decisions.jsonl", decisions)
    write_jsonl(
        tmp_path / "outcomes.jsonl",
        [outcome(1, request_id="a", model=HAIKU, success=True), outcome(2, request_id="b", model=HAIKU, success=True)],
    )
    out = tmp_path / "attempts.parquet"
    result = CliRunner().invoke(cli, ["collect", str(tmp_path / "decisions.jsonl"), str(tmp_path / "outcomes.jsonl"),
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert dict(pl.read_parquet(out).select("request_id", "workload").iter_rows()) == {"a": "greetings", "b": None}

    write_jsonl(tmp_path / "decisions.jsonl", [{**decisions[0], "workload": "w" * 129}])
    result = CliRunner().invoke(cli, ["collect", str(tmp_path / "decisions.jsonl"), str(tmp_path / "outcomes.jsonl"),
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 2
    assert "decisions.jsonl:1:workload: longer than the limit of 128 characters" in result.output


def test_train_records_the_requests_of_each_workload_in_the_manifest(trained_bundle: Path, sample_logs: Path):
    manifest = json.loads((trained_bundle / "manifest.json").read_text())
    frame = label_requests(read_attempts([sample_logs]), TierLadder.load()).frame
    expected = dict(frame.group_by("workload").len().iter_rows())
    assert manifest["data"]["workloads"] == expected
