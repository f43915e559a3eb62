"""`tierwise audit`: on generated logs whose workloads have a planted character, the audit finds each one: the
cheap tier for the easy workload, the caching saving of the repeated system prompt, half the async workload's
spend by batching, the top tier for the hard workload. Its report.json keeps the key contract, report.html stands
alone, the recommended policies load as a workloads file, and its per-tier numbers are `tierwise eval`'s."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import polars as pl
import pytest
from click.testing import CliRunner
from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierLadder
from tierwise.classifier.workloads import Workloads
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc
from tierwise.training.audit.cache import prefix_lengths
from tierwise.training.data.labels import label_requests
from tierwise.training.data.logs import read_attempts
from tierwise.training.data.sample_logs import SYSTEM_PROMPT_TOKENS, write_sample_logs
from tierwise.training.evaluation.evaluate import evaluate_router

from tierwise.cli import main as cli

LEVERS = ("right_size", "route", "batch", "cache", "escalation_waste")


def audit(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["audit", *map(str, args)])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_logs(tmp_path_factory.mktemp("audit-logs"), 900, seed=3)


@pytest.fixture(scope="module")
def audited(logs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("audit") / "report"
    code, output = audit(logs, "--out", out)
    assert code == 0, output
    return out, output


@pytest.fixture(scope="module")
def report(audited: tuple[Path, str]) -> dict:
    return json.loads((audited[0] / "report.json").read_text())


def planted_cache_saving(logs: Path, ladder: TierLadder) -> float:
    """The support-triage saving sample-logs planted: its system prompt cached on every tier whose minimum it
    reaches, each model's first attempt a cache write and every later one (20 s apart) a read."""
    attempts = pl.read_ndjson(logs).filter(pl.col("workload") == "support-triage")
    saving = 0.0
    for tier in ladder.tiers:
        made = attempts.filter(pl.col("model").is_in(list(tier.models))).height
        if made and tier.min_cacheable_tokens <= SYSTEM_PROMPT_TOKENS:
            read, write = 1 - tier.cache_read_multiplier, 1 - tier.cache_write_multiplier
            saving += SYSTEM_PROMPT_TOKENS * tier.input_usd_per_mtok / 1e6 * ((made - 1) * read + write)
    return saving


def test_the_audit_finds_what_the_sample_logs_planted(report, logs):
    workloads = report["workloads"]
    assert workloads["greetings"]["levers"]["right_size"]["tier"] == "haiku"
    assert workloads["strategy-analysis"]["levers"]["right_size"]["tier"] == "opus"
    planted = planted_cache_saving(logs, TierLadder.load())
    assert planted > 0
    assert workloads["support-triage"]["levers"]["cache"]["saving_usd"] == pytest.approx(planted, rel=0.05)
    batch = workloads["nightly-summaries"]["levers"]["batch"]
    assert (batch["applies"], batch["band_source"]) == ("yes", "logs")
    assert batch["saving_usd"] == pytest.approx(workloads["nightly-summaries"]["spend_usd"] / 2)
    assert batch["saving_share"] == pytest.approx(0.5)
    interactive = workloads["greetings"]["levers"]["batch"]
    assert (interactive["applies"], interactive["saving_usd"]) == ("no", 0.0)
    assert interactive["if_async_usd"] == pytest.approx(workloads["greetings"]["spend_usd"] / 2)


def test_report_json_keeps_the_key_contract_for_every_workload_and_the_total(report):
    entries = [*report["workloads"].values(), report["total"]]
    assert report["format"] == "tierwise-audit/1"
    assert set(report["workloads"]) == {
        "greetings",
        "support-triage",
        "nightly-summaries",
        "code-assist",
        "math-tutor",
        "strategy-analysis",
    }
    for entry in entries:
        assert isinstance(entry["requests"], int) and entry["spend_usd"] > 0
        assert set(LEVERS) <= set(entry["levers"])
        for lever in LEVERS:
            found = entry["levers"][lever]
            low, high = found["saving_ci"]
            assert low <= found["saving_usd"] <= high
            assert found["saving_share"] == pytest.approx(found["saving_usd"] / entry["spend_usd"])
            assert isinstance(found["quality_change"], float)
        assert "tier" in entry["levers"]["right_size"]
    assert report["total"]["levers"]["right_size"]["tier"] is None
    assert report["total"]["requests"] == sum(e["requests"] for e in report["workloads"].values())
    assert report["total"]["spend_usd"] == pytest.approx(sum(e["spend_usd"] for e in report["workloads"].values()))


def test_the_total_applies_each_workloads_own_levers(report):
    """The total's saving is the workloads' savings summed, batching only where the band allows it."""
    for lever in LEVERS:
        workloads = [e["levers"][lever] for e in report["workloads"].values()]
        counted = [w["saving_usd"] for w in workloads if w.get("applies", "yes") == "yes"]
        assert report["total"]["levers"][lever]["saving_usd"] == pytest.approx(sum(counted))


def test_the_spend_splits_into_what_it_paid_for(report, logs):
    attempts = pl.read_ndjson(logs)
    total = report["total"]
    assert total["spend_usd"] == pytest.approx(attempts["cost_usd"].sum())
    spend = total["spend"]
    assert spend["input_usd"] + spend["output_usd"] == pytest.approx(total["spend_usd"])
    assert spend["cache_read_usd"] == spend["cache_write_usd"] == 0.0
    assert spend["unattributed_usd"] == pytest.approx(0.0, abs=1e-9)
    haiku = total["tiers"]["haiku"]
    assert haiku["attempts"] == attempts.filter(pl.col("model") == "claude-haiku-4-5").height
    assert 0 < haiku["latency_p50_ms"] < haiku["latency_p95_ms"]


def test_a_cross_fitted_router_is_scored_on_every_request_once(report):
    for entry in report["workloads"].values():
        routed = entry["levers"]["route"]
        assert sum(fold["requests"] for fold in routed["folds"]) == entry["requests"]
        assert sum(routed["tier_shares"].values()) == pytest.approx(1.0)
        low, high = routed["vs_right_size_ci"]
        assert low <= routed["vs_right_size_usd"] <= high


def test_report_html_stands_alone(audited):
    page = (audited[0] / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2
    for fetched in ("<script", "<link", 'src="http', "url(", "@import"):
        assert fetched not in page
    assert "strategy-analysis" in page and "escalation waste" in page


def test_the_recommended_policies_load_as_a_workloads_file(audited, report):
    recommended = Workloads.load(audited[0] / "recommended.workloads.toml")
    recommended.check_tiers(TierLadder.load().names)
    assert set(recommended.names) == set(report["workloads"])
    assert recommended.policy_for("strategy-analysis").allowed_tiers == ("opus",)
    assert recommended.policy_for("greetings").allowed_tiers[0] == "haiku"
    assert recommended.policy_for("nightly-summaries").band == "async"
    assert {p.quality_target for p in recommended.named.values()} == {0.95}


def test_serve_routes_by_the_recommended_file(audited, trained_bundle):
    path = audited[0] / "recommended.workloads.toml"
    recommended = Workloads.load(path)
    args = ["--model", str(trained_bundle), "--port", "0", "--no-metrics", "--workloads", str(path)]
    with ServerProcess(args) as server, grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RouterStub(channel)
        for name, policy in recommended.named.items():
            request = pb.PredictRequest(prompt="Summarize the quarter's results for the board.", workload=name)
            response = stub.Predict(request, timeout=10)
            assert response.tier in policy.allowed_tiers and response.quality_target == policy.quality_target
            assert response.use_batch_api == (policy.band == "async")
    assert "routing by workloads file" in server.log


def test_the_terminal_shows_the_headline_and_a_piped_summary_line(audited):
    output = audited[1]
    assert "auditing workloads: 6 workloads in" in output
    header = next(line for line in output.splitlines() if line.startswith("workload"))
    assert header.split() == [
        "workload", "requests", "spend", "USD", "right-size", "route", "batch", "cache", "escalation", "waste",
    ]  # fmt: skip
    assert any(line.startswith("greetings") and "haiku:" in line for line in output.splitlines())
    assert "\r" not in output


def test_the_per_tier_numbers_are_tierwise_evals(report, logs, trained_bundle):
    """On the requests known on every tier, each tier's success rate and cost are eval's always-tier points."""
    router = Router.load(trained_bundle)
    frame = label_requests(read_attempts([logs]), router.ladder).frame
    evaluated = evaluate_router(router, frame, split=None)
    assert report["total"]["complete_requests"] == evaluated.evaluated
    for tier, point in evaluated.always.items():
        row = report["total"]["tiers"][tier]
        assert row["complete_success"] == pytest.approx(point.quality)
        assert row["complete_cost_usd"] == pytest.approx(point.cost)


def test_a_band_from_the_workloads_file_decides_batching(logs, tmp_path):
    policies = tmp_path / "policies.toml"
    policies.write_text(
        '[default]\nband = "tolerant"\n'
        '[workload.greetings]\nband = "async"\n'
        '[workload.nightly-summaries]\nmode = "cost"\n'
    )
    code, output = audit(logs, "--out", tmp_path / "out", "--workloads", policies, "--quality-target", "0.9")
    assert code == 0, output
    found = json.loads((tmp_path / "out" / "report.json").read_text())
    batch = {name: entry["levers"]["batch"] for name, entry in found["workloads"].items()}
    assert (batch["greetings"]["applies"], batch["greetings"]["band_source"]) == ("yes", "workloads file")
    for unnamed_or_default_band in ("nightly-summaries", "code-assist"):
        assert (batch[unnamed_or_default_band]["band"], batch[unnamed_or_default_band]["applies"]) == ("tolerant", "no")
        assert batch[unnamed_or_default_band]["saving_usd"] == 0.0
    assert found["quality_target"] == 0.9
    recommended = Workloads.load(tmp_path / "out" / "recommended.workloads.toml")
    assert recommended.policy_for("nightly-summaries").mode == "cost"  # the file's other keys are kept


def test_the_output_directory_rule_holds(logs, audited, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    code, output = audit(logs, "--out", taken)
    assert code == 2 and "is not a tierwise audit report" in output
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[workload.greetings]\nallowed_tiers = ["gpt-5"]\n')
    code, output = audit(logs, "--out", tmp_path / "new", "--workloads", bad)
    assert code == 2 and "[workload.greetings] allowed_tiers: unknown tier(s) ['gpt-5']" in output
    assert not (tmp_path / "new").exists()


def test_an_earlier_audit_is_replaced(logs, tmp_path):
    out = tmp_path / "again"
    for _ in range(2):
        code, output = audit(logs, "--out", out, "--workload-column", "category")
        assert code == 0, output
    assert sorted(p.name for p in out.iterdir()) == ["recommended.workloads.toml", "report.html", "report.json"]
    assert set(json.loads((out / "report.json").read_text())["workloads"]) >= {"chitchat", "analysis"}


def test_a_prefix_is_the_shared_start_of_prompts_up_to_a_blank_line_before_their_last_block():
    system = "You triage support mail.\n\nRules: be kind."
    prompts = [f"{system}\n\nWhere is order 1?", f"{system}\n\nWhere is order 2?", "Say hi.", "Say hi.", "Say hi."]
    lengths = prefix_lengths(prompts)
    assert [prompts[0][:n] for n in lengths[:2]] == [f"{system}\n\n"] * 2
    assert lengths[2:] == [0, 0, 0]  # identical one-block prompts: the block that changes is never cached
    assert prefix_lengths(["a\n\nb\n\nc", "a\n\nb\n\nd", "a\n\nx"]) == [6, 6, 3]


def test_eval_by_workload_prints_the_headline_per_workload(logs, trained_bundle, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["eval", str(logs), "--model", str(trained_bundle), "--by", "workload", "--json", str(tmp_path / "e.json")],
    )
    assert result.exit_code == 0, result.output
    for workload in ("greetings", "support-triage", "strategy-analysis"):
        assert f"== workload {workload}: " in result.output
    document = json.loads((tmp_path / "e.json").read_text())
    groups = document["by"]
    assert groups["column"] == "workload" and groups["skipped"] == {}
    assert sum(g["requests"] for g in groups["groups"].values()) == document["requests"]
    assert all(g["router"]["gain_over_static_ci"][0] is not None for g in groups["groups"].values())
    missing = CliRunner().invoke(cli, ["eval", str(logs), "--model", str(trained_bundle), "--by", "team"])
    assert missing.exit_code == 2 and "no 'team' column to group by" in missing.output
