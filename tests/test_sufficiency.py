"""Refusing what the data cannot support: tiers without outcomes, mostly censored logs, a ladder out of price order."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import polars as pl
from click.testing import CliRunner
from mlflow import MlflowClient
from tierwise.classifier.router import Router

from tierwise.cli import main

LADDER = """
[[tier]]
name = "small"
models = ["m-small"]
input_usd_per_mtok = {small_in}
output_usd_per_mtok = 1.0

[[tier]]
name = "large"
models = ["m-large"]
input_usd_per_mtok = 5.0
output_usd_per_mtok = 5.0
"""


def keep_models(logs: Path, out: Path, keep: str) -> Path:
    """The logs with only the attempts of models whose name contains `keep` (a regex)."""
    pl.read_ndjson(logs).filter(pl.col("model").str.contains(keep)).write_ndjson(out)
    return out


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_logs_where_only_the_top_tier_was_tried_train_nothing_and_register_nothing(sample_logs, tmp_path):
    logs = keep_models(sample_logs, tmp_path / "opus-only.jsonl", "opus")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, output = invoke("train", str(logs), "--out", str(tmp_path / "b"), "--register", "r", "--tracking-uri", store)
    assert code == 2, output
    assert re.search(r"tier\(s\) haiku, sonnet", output)
    assert re.search(r"observed per tier: haiku 0, sonnet 0, opus \d+", output)
    assert not (tmp_path / "b" / "manifest.json").exists()
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    assert client.search_registered_models() == []
    # the run was opened when the work started (its duration is the work's): it ends FAILED, with nothing logged
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments) if experiments else []
    assert [r.info.status for r in runs] in ([], ["FAILED"]) and not any(r.data.metrics for r in runs)
    # the printed replay command is a real dry run: it prices the replays and sends nothing
    (command,) = [line.strip() for line in output.splitlines() if line.strip().startswith("tierwise replay")]
    words = shlex.split(command)
    assert words[-1] == "--dry-run"
    code, dry = invoke(*words[1:-3], "--out", str(tmp_path / "replayed.parquet"), "--dry-run")
    assert code == 0, dry
    assert re.search(r"^haiku\s", dry, re.MULTILINE) and re.search(r"^sonnet\s", dry, re.MULTILINE)
    assert not (tmp_path / "replayed.parquet").exists()


def test_drop_untrained_tiers_trains_on_the_tiers_that_have_outcomes(sample_logs, tmp_path):
    logs = keep_models(sample_logs, tmp_path / "no-haiku.jsonl", "sonnet|opus")
    code, output = invoke("train", str(logs), "--out", str(tmp_path / "b"), "--drop-untrained-tiers")
    assert code == 0, output
    assert "dropped tiers without enough outcomes: haiku (0 outcomes); routing between ['sonnet', 'opus']" in output
    assert Router.load(tmp_path / "b").ladder.names == ["sonnet", "opus"]


def test_the_minimum_is_a_flag(sample_logs, tmp_path):
    code, output = invoke("train", str(sample_logs), "--out", str(tmp_path / "b"), "--min-outcomes-per-tier", "100000")
    assert code == 2 and "tier(s) haiku, sonnet, opus" in output and "at least 100000" in output


def test_mostly_censored_logs_warn(sample_logs, tmp_path):
    frame = pl.read_ndjson(sample_logs)
    ids = frame["request_id"].unique().sort()
    untried = ids.head(int(0.7 * len(ids)))  # haiku never tried on 70% of the requests
    trimmed = frame.filter(~((pl.col("model").str.contains("haiku")) & pl.col("request_id").is_in(untried.implode())))
    trimmed.write_ndjson(tmp_path / "censored.jsonl")
    code, output = invoke("train", str(tmp_path / "censored.jsonl"), "--out", str(tmp_path / "b"))
    assert code == 0, output
    (warning,) = [line for line in output.splitlines() if line.startswith("warning:")]
    assert re.search(r"warning: \d+ of 600 requests \((5[1-9]|[6-9]\d)%\) are censored", warning)
    assert "tierwise replay" in warning and "--dry-run" in warning
    code, output = invoke("train", str(sample_logs), "--out", str(tmp_path / "b2"))
    assert code == 0 and "warning:" not in output


def test_a_ladder_out_of_price_order_is_refused(sample_logs, tmp_path):
    tiers = tmp_path / "tiers.toml"
    tiers.write_text(LADDER.format(small_in=9.0))
    code, output = invoke("label", str(sample_logs), "--tiers", str(tiers), "--out", str(tmp_path / "l.parquet"))
    assert code == 2
    assert "increasing price order" in output and "'large'" in output and "'small'" in output
