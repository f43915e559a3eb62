"""`tierwise score`: one routing decision per request of a log, by the router here or by the registered pyfunc
on a local Spark session (a real one: pyspark and Java 17), and the two engines agree."""

from __future__ import annotations

import re
import subprocess
import sys

import polars as pl
import pytest
from click.testing import CliRunner
from tierwise.classifier.decisions import decision_columns, decision_schema
from tierwise.classifier.router import Router
from tierwise.registry.models import Registry
from tierwise.training.data.logs import read_attempts
from tierwise.training.tracking.promotion import register_trained

from tests.helpers import train_files, write_rows
from tierwise.cli import main

NAME = "scoring-test"
DECISION = ["request_id", "tier", "model", "fallback_chain", "p_haiku", "p_sonnet", "p_opus"]


@pytest.fixture(scope="module")
def registered(tmp_path_factory, sample_logs, mlflow_store) -> Router:
    """A version of NAME registered (as champion) in the suite's store; its router."""
    result = train_files([sample_logs], tmp_path_factory.mktemp("scoring") / "bundle")
    register_trained(result, Registry(mlflow_store), NAME)
    return result.router


def score(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["score", *args])
    return result.exit_code, result.output


def test_decision_columns_follow_the_decision_schema(trained_bundle):
    router = Router.load(trained_bundle)
    columns = decision_columns(router.predict_batch(["Say hi.", "Prove it."]), router.ladder.names)
    assert [name for name, _ in decision_schema(router.ladder.names)] == list(columns) == DECISION[1:]


def test_local_scoring_writes_the_router_decision_of_every_request_once_in_log_order(
    tmp_path, sample_logs, trained_bundle
):
    out = tmp_path / "decisions.parquet"
    code, output = score(str(sample_logs), "--model", str(trained_bundle), "--out", str(out))
    assert code == 0, output
    decisions = pl.read_parquet(out)
    attempts = read_attempts([sample_logs]).frame
    assert decisions.columns == DECISION
    assert decisions["request_id"].to_list() == attempts["request_id"].unique(maintain_order=True).to_list()
    prompts = dict(attempts.select("request_id", "prompt").iter_rows())
    router = Router.load(trained_bundle)
    for row in decisions.head(40).iter_rows(named=True):
        expected = router.predict(prompts[row["request_id"]])
        assert (row["tier"], row["model"]) == (expected.tier, expected.model)
        assert row["fallback_chain"].split(">") == expected.fallback_chain
        for tier, probability in expected.probabilities.items():
            assert row[f"p_{tier}"] == pytest.approx(probability, abs=1e-5)
    assert re.fullmatch(rf"scored {len(prompts)} requests with .+ on local in .*wrote {out}\n", output)


def test_a_registered_model_scores_like_its_bundle_and_an_alias_is_pinned_to_one_version(
    tmp_path, sample_logs, registered, mlflow_store
):
    by_alias, by_bundle = tmp_path / "alias.csv", tmp_path / "bundle.csv"
    code, output = score(str(sample_logs), "--model", f"models:/{NAME}@champion", "--out", str(by_alias))
    assert code == 0, output
    version = Registry(mlflow_store).alias_version(NAME, "champion")
    assert f"with models:/{NAME}/{version} (version {registered.version})" in output
    assert score(str(sample_logs), "--model", str(registered.path), "--out", str(by_bundle))[0] == 0
    assert pl.read_csv(by_alias).equals(pl.read_csv(by_bundle))


@pytest.mark.spark
def test_spark_scores_with_the_registered_pyfunc_and_agrees_with_local(tmp_path, registered):
    logs = write_rows(
        [
            {"request_id": f"r{i}", "prompt": prompt, "model": "claude-haiku-4-5", "success": True}
            for i, prompt in enumerate(
                ["Say hi.", "Prove that there are infinitely many primes.", "Translate 'merci' into English."] * 20
            )
        ],
        tmp_path / "requests.jsonl",
    )
    local, spark = tmp_path / "local.parquet", tmp_path / "spark.parquet"
    model = f"models:/{NAME}@champion"
    assert score(str(logs), "--model", model, "--out", str(local))[0] == 0
    command = [sys.executable, "-m", "tierwise", "score", str(logs), "--model", model, "--out", str(spark)]
    done = subprocess.run([*command, "--engine", "spark"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(rf"scored 60 requests with models:/{NAME}/\d+ \(version \w+\) on spark in .*\n", done.stdout)
    assert done.stderr == ""  # Spark's JVM, log4j and worker chatter stay in its log file
    on_spark, here = pl.read_parquet(spark), pl.read_parquet(local)
    assert on_spark.columns == DECISION and on_spark.height == 60
    assert on_spark.select(DECISION[:4]).equals(here.select(DECISION[:4]))
    for column in DECISION[4:]:
        assert (on_spark[column] - here[column]).abs().max() < 1e-6


@pytest.mark.parametrize(
    ("out", "extra", "message"),
    [
        ("d.parquet", ["--engine", "spark"], "Invalid value for --model: --engine spark scores a registered version"),
        ("d.parquet", ["--spark-master", "local[2]"], "Invalid value for --spark-master: applies to --engine spark"),
        ("d.txt", [], "d.txt: unknown output format '.txt'; use .parquet, .csv or .jsonl"),
    ],
)
def test_bad_options_exit_2_naming_what_is_wrong_before_any_work(tmp_path, trained_bundle, out, extra, message):
    args = [str(tmp_path / "missing-logs.jsonl"), "--model", str(trained_bundle), "--out", str(tmp_path / out)]
    code, output = score(*args, *extra)
    assert code == 2
    assert message in output
    assert list(tmp_path.iterdir()) == []
