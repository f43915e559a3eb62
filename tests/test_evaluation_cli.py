"""`tierwise eval` and `evaluate_router` on the shared trained bundle: the served graph scored end to end."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from tierwise.classifier.bundle import read_manifest, write_manifest
from tierwise.classifier.router import Router
from tierwise.registry.store import prepare_store
from tierwise.training.data.splits import SplitRule
from tierwise.training.evaluation.evaluate import evaluate_router, router_probabilities
from tierwise.training.evaluation.frames import outcome_arrays

from tests.helpers import label_files
from tierwise.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def frame(sample_logs):
    return label_files([sample_logs])[1].frame


@pytest.fixture(scope="module")
def router(trained_bundle):
    return Router.load(trained_bundle)


def test_eval_cli_writes_table_json_and_chart(trained_bundle, sample_logs, tmp_path):
    out_json, out_png = tmp_path / "eval.json", tmp_path / "chart" / "eval.png"
    args = ["eval", "--model", str(trained_bundle), str(sample_logs), "--json", str(out_json), "--plot", str(out_png)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"model {trained_bundle} (version ") and lines[0].endswith("split test")
    assert lines[1].startswith("router against the best fixed mix of tiers")
    assert "gain over static mix" in lines[2] and "cost at top quality" in lines[3]
    labels = [line[:20].strip() for line in lines[7:12]]
    assert labels == ["router", "static mix", "random two-end mix", "prompt length", "k-NN"]
    doc = json.loads(out_json.read_text())
    manifest = read_manifest(trained_bundle)
    # the served graph reproduces what training measured on the same held-out rows with the in-Python head
    for key in ("apgr", "cpt50", "cpt80", "gain_over_static", "cost_ratio_at_95"):
        assert doc[key] == pytest.approx(manifest.metrics[key], abs=1e-9)
    for key in ("apgr", "gain_over_static"):
        assert doc[f"{key}_ci"] == pytest.approx([manifest.metrics[f"{key}_ci_lo"], manifest.metrics[f"{key}_ci_hi"]])
        assert doc[f"{key}_ci"][0] <= doc[key] <= doc[f"{key}_ci"][1]
    assert doc["baselines"]["static_mix"]["tiers"][-1] == "opus"
    assert doc["baselines"]["random"]["apgr"] == pytest.approx(0.5, abs=1e-3)
    assert doc["baselines"]["knn"]["apgr"] is not None and doc["baselines"]["length"]["apgr"] is not None
    assert doc["operating_point"]["threshold"] == manifest.policy.threshold
    assert doc["operating_point"]["rule"] == manifest.policy.rule
    assert doc["requests"] == manifest.data["requests"]["test"]
    assert out_png.read_bytes()[:8] == PNG_MAGIC


def test_evaluate_router_uses_the_graph_and_the_rows_outside_the_split(router, frame):
    test, train = SplitRule().select(frame, "test")
    success, _ = outcome_arrays(test, router.ladder.names)
    report = evaluate_router(router, frame)
    probs = router.probabilities(test["prompt"].to_list())
    np.testing.assert_allclose(router_probabilities(router, test["prompt"].to_list(), batch=7), probs, atol=1e-6)
    tried = ~np.isnan(success[:, 0])
    assert report.calibration[0].mean_prob == pytest.approx(float(probs[tried, 0].mean()), abs=1e-6)
    assert report.requests == test.height and "knn" in report.baselines
    # k-NN from an explicit training frame instead of the complement: a different baseline, same router
    only_some = evaluate_router(router, frame, train_frame=train.head(25))
    assert only_some.router.metrics == report.router.metrics
    assert only_some.baselines["knn"].metrics != report.baselines["knn"].metrics
    # every row evaluated: nothing is left to fit the k-NN baseline on
    everything = evaluate_router(router, frame, split=None)
    assert everything.requests == frame.height and "knn" not in everything.baselines


def test_eval_defaults_to_the_bundle_ladder(trained_bundle, sample_logs, tmp_path):
    renamed = tmp_path / "renamed"
    shutil.copytree(trained_bundle, renamed)
    manifest = read_manifest(renamed)
    names = {"haiku": "fast", "sonnet": "mid", "opus": "best"}
    ladder = {**manifest.ladder, "tier": [{**t, "name": names[t["name"]]} for t in manifest.ladder["tier"]]}
    write_manifest(renamed, replace(manifest, ladder=ladder))
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(main, ["eval", "--model", str(renamed), str(sample_logs), "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["tiers"] == ["fast", "mid", "best"] and doc["apgr"] == pytest.approx(manifest.metrics["apgr"])


def test_eval_refuses_a_ladder_with_other_tiers(trained_bundle, sample_logs, tmp_path):
    tiers = tmp_path / "two.toml"
    tiers.write_text(
        '[[tier]]\nname = "small"\nmodels = ["a"]\ninput_usd_per_mtok = 1\noutput_usd_per_mtok = 1\n'
        '[[tier]]\nname = "large"\nmodels = ["b"]\ninput_usd_per_mtok = 9\noutput_usd_per_mtok = 9\n'
    )
    args = ["eval", "--model", str(trained_bundle), str(sample_logs), "--tiers", str(tiers)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "['small', 'large']" in result.output and "['haiku', 'sonnet', 'opus']" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--split", "validation"], "found: test, train"), (["--model", "no-such-dir"], "no-such-dir")],
)
def test_eval_input_errors_exit_2(trained_bundle, sample_logs, extra, message):
    result = CliRunner().invoke(main, ["eval", "--model", str(trained_bundle), str(sample_logs), *extra])
    assert result.exit_code == 2 and message in result.output


def test_eval_refuses_an_unknown_registered_model_plainly(sample_logs, tmp_path):
    store = f"sqlite:///{tmp_path / 'empty.db'}"
    prepare_store(store, create=True)  # an existing, empty store: eval never creates one
    args = ["eval", "--model", "models:/nope@champion", str(sample_logs), "--tracking-uri", store]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "nope" in result.output and "Traceback" not in result.output
    assert (tmp_path / "empty.db").exists()  # the store named on the command line was the one asked
