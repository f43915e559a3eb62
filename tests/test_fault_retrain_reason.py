"""Trust, item 15: a kept challenger's reason names the gate rule that failed, with the numbers that failed it, and
is stored as the version's description, which a later `tierwise promote` rewrites (a real SQLite store)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from tierwise.registry.models import Registry
from tierwise.training.evaluation.bootstrap import Interval
from tierwise.training.tracking.promotion import PairedDifference, gate, judge

from tierwise.cli import main

pytestmark = pytest.mark.fault

NAME = "reason-test"
# The reproduction: quality +0.017 [+0.007, +0.028] (surely better), cost +4.0% [+1.6%, +6.6%] (past +5%).
REPRODUCTION = PairedDifference(2407, 0.017, Interval(0.007, 0.028), 0.040, Interval(0.016, 0.066))
REASON = (
    "quality +1.70 pp [+0.70, +2.80] is surely better, but cost rose +4.0% (upper bound +6.6% is over the +5% allowed)"
)


def test_the_reason_names_the_rule_that_failed_with_its_numbers():
    assert gate(REPRODUCTION) == (False, REASON)


@pytest.fixture
def two_versions(tmp_path) -> str:
    """A registered model with v1 (champion) and v2, each from a run holding a headline."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("reasons")
    client.create_registered_model(NAME)
    for number, gain in ((1, 2.5), (2, 4.25)):
        run = client.create_run(experiment, run_name=f"{NAME} v{number}").info.run_id
        client.log_metric(run, "1_gain_over_static_pp", gain)
        client.log_param(run, "policy_rule", "absolute")
        client.set_terminated(run)
        client.create_model_version(NAME, f"runs:/{run}/model", run_id=run)
    client.set_registered_model_alias(NAME, "champion", "1")
    return uri


def test_a_kept_challenger_is_described_by_that_reason_and_promote_rewrites_it(two_versions):
    uri = two_versions
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert judge(Registry(uri), NAME, "2", "1", REPRODUCTION, refused=[]) == (False, REASON)
    kept = client.get_model_version(NAME, "2").description
    assert kept.startswith(f"kept as challenger by `tierwise retrain` on 2407 held-out requests, against v1: {REASON}.")
    assert "| gain over the static mix | +4.25 pp |" in kept  # the numbers behind it, from its run
    assert client.get_registered_model(NAME).aliases == {"champion": 1}

    done = CliRunner().invoke(main, ["promote", NAME, "2", "--tracking-uri", uri])
    assert done.exit_code == 0, done.output
    promoted = client.get_model_version(NAME, "2").description
    assert promoted.startswith("champion (replacing v1): promoted by hand (`tierwise promote`).")
    assert REASON not in promoted
    assert client.get_model_version(NAME, "1").description.startswith("no longer champion: v2 replaced it")
