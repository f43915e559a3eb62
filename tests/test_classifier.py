"""The trained bundle and its runtime: parity with training, no torch at serving, refusal of bad bundles."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from tierwise.classifier.bundle import BundleError, read_manifest, write_manifest
from tierwise.classifier.policy import RULES
from tierwise.classifier.router import Router

from tests.helpers import SHARED_DATA
from tierwise.cli import main

PROMPTS = [
    "Say hello to the team in a friendly way.",
    "Prove that there are infinitely many primes. Please be thorough and explain why each step holds.",
    "Implement a thread-safe class in Java that computes an LRU cache, with unit tests.",
    "",
    "x" * 5000,
    "naïve café — emoji 🚀 and 中文",
]


def test_bundle_manifest_records_how_it_was_made(trained_bundle):
    manifest = read_manifest(trained_bundle)
    assert set(manifest.files) >= {"model.onnx", "tokenizer.json"}
    assert [t["name"] for t in manifest.ladder["tier"]] == ["haiku", "sonnet", "opus"]
    assert 0.0 <= manifest.policy.threshold <= 1.0
    # `auto`: the rule with the best validation APGR, every rule's score recorded beside it
    assert manifest.policy.rule in RULES
    assert "rule by validation APGR" in manifest.policy.chosen_by
    assert all(rule in manifest.policy.chosen_by for rule in RULES)
    assert manifest.encoder.kind == "static"
    assert len(manifest.data["fingerprint"]) == 16
    for tier in ("haiku", "sonnet", "opus"):
        assert 0.0 <= manifest.metrics[f"ece_{tier}"] <= 1.0
    assert manifest.metrics["latency_p50_us"] > 0


def test_version_follows_what_decides_the_answers(trained_bundle, tmp_path):
    manifest = read_manifest(trained_bundle)
    copy = tmp_path / "bundle"
    shutil.copytree(trained_bundle, copy)
    assert write_manifest(copy, replace(manifest, version="", metrics={})).version == manifest.version
    stricter = replace(manifest, version="", policy=replace(manifest.policy, threshold=0.99))
    assert write_manifest(copy, stricter).version != manifest.version
    router = Router.load(copy)
    assert router.version != manifest.version and router.policy.threshold == 0.99


PARITY_PROMPTS = {"static": 300, "minilm": 40}


@pytest.fixture(scope="module", params=["static", "minilm"])
def parity_model(request, sample_logs, trained_bundle, tmp_path_factory):
    """(encoder, sklearn head, router over the same head's exported graph) for one encoder."""
    from tierwise.training.embedding.encoders import load_encoder
    from tierwise.training.evaluation.frames import outcome_arrays
    from tierwise.training.fit.export import export_bundle
    from tierwise.training.fit.head import TierHead

    from tests.helpers import label_files

    encoder = load_encoder(request.param)
    frame = label_files([sample_logs])[1].frame
    success, _ = outcome_arrays(frame, ["haiku", "sonnet", "opus"])
    head = TierHead().fit(encoder.encode(frame["prompt"].to_list()), success)
    manifest = replace(read_manifest(trained_bundle), encoder=encoder.spec, version="")
    out = tmp_path_factory.mktemp("parity") / request.param
    export_bundle(out, encoder, head, manifest)
    return encoder, head, Router.load(out)


def assert_parity(parity_model, prompts: list[str]) -> None:
    """The fused graph gives the in-Python (embedding + sklearn head) probabilities within 1e-5."""
    encoder, head, router = parity_model
    onnx_probs = router.probabilities(prompts)
    assert onnx_probs.shape == (len(prompts), 3)
    np.testing.assert_allclose(onnx_probs, head.predict_proba(encoder.encode(prompts)), atol=1e-5)
    single = np.stack([list(router.predict(p).probabilities.values()) for p in prompts])
    np.testing.assert_allclose(single, onnx_probs, atol=1e-5)


def test_onnx_matches_python_on_sample_prompts(parity_model, sample_logs):
    count = PARITY_PROMPTS[parity_model[0].name]
    prompts = pl.read_ndjson(sample_logs)["prompt"].unique().sort().to_list()[:count]
    assert_parity(parity_model, prompts + PROMPTS)


@pytest.mark.shared_data
def test_onnx_matches_python_on_real_prompts(parity_model):
    """Real prompts from both shared datasets, long few-shot ones included (clipped to the window)."""
    count = PARITY_PROMPTS[parity_model[0].name] // 2
    prompts = []
    for dataset in ("mmlu_pro", "routerbench"):
        path = SHARED_DATA / dataset / "attempts.parquet"
        if not path.exists():
            pytest.skip("../shared/data is not present")
        unique = pl.scan_parquet(path).select("prompt").unique().sort("prompt").collect()["prompt"]
        prompts += unique.sample(count, seed=0).to_list()
    assert max(len(p) for p in prompts) > parity_model[0].spec.max_chars
    assert_parity(parity_model, prompts)


def test_single_and_batch_predictions_agree(trained_bundle):
    router = Router.load(trained_bundle)
    batch = router.predict_batch(PROMPTS)
    for prompt, from_batch in zip(PROMPTS, batch, strict=True):
        single = router.predict(prompt)
        assert single.tier == from_batch.tier
        for tier, p in single.probabilities.items():
            assert p == pytest.approx(from_batch.probabilities[tier], abs=1e-5)
        assert single.fallback_chain[0] == single.tier and single.fallback_chain[-1] == "opus"
        assert single.model == router.ladder.tiers[router.ladder.index(single.tier)].model


def test_hard_prompts_need_stronger_tiers_than_easy_ones(trained_bundle):
    router = Router.load(trained_bundle)
    easy = router.predict("Say hello to my neighbour in a friendly way.").probabilities
    hard = router.predict(
        "Analyze the trade-offs of a merger under antitrust review, considering cost, risk and long-term "
        "consequences, and recommend a strategy with justification. Please be thorough and explain why."
    ).probabilities
    assert easy["haiku"] > hard["haiku"] + 0.3


def test_serving_runtime_imports_no_torch(trained_bundle):
    code = (
        "import sys; from classifier import Router; "
        f"r = Router.load({str(trained_bundle)!r}); r.predict('hello'); "
        "heavy = ('torch', 'sentence_transformers', 'sklearn', 'polars', 'transformers'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "model.onnx").write_bytes(b"not a model"), "does not match its checksum"),
        (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json is missing"),
        (lambda d: (d / "manifest.json").write_text("{"), "not valid JSON"),
        (
            lambda d: (d / "manifest.json").write_text(
                json.dumps({**json.loads((d / "manifest.json").read_text()), "format_version": 99})
            ),
            "format_version 99",
        ),
    ],
)
def test_untrustworthy_bundles_are_refused(trained_bundle, tmp_path, damage, message):
    copy = tmp_path / "bundle"
    shutil.copytree(trained_bundle, copy)
    damage(copy)
    with pytest.raises(BundleError, match=message):
        Router.load(copy)


def test_predict_cli_prints_json_and_rejects_bad_input(trained_bundle, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["predict", "--model", str(trained_bundle), "Say hi", "--mode", "cost"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["tier"] in ("haiku", "sonnet", "opus") and answer["mode"] == "cost"
    assert set(answer["probabilities"]) == {"haiku", "sonnet", "opus"}
    result = runner.invoke(main, ["predict", "--model", str(trained_bundle), "hi", "--allowed-tier", "gpt-9"])
    assert result.exit_code == 2 and "allowed_tiers" in result.output
    result = runner.invoke(main, ["predict", "--model", str(tmp_path), "hi"])
    assert result.exit_code == 2 and "manifest" in result.output


def test_train_cli_reports_test_split_calibration(sample_logs, tmp_path):
    result = CliRunner().invoke(main, ["train", str(sample_logs), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "held-out test split" in result.output
    assert "haiku accuracy" in result.output and "ECE" in result.output
    assert Router.load(tmp_path / "b").predict("hello").tier
