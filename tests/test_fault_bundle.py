"""Tampered bundles: a manifest whose values no router can honour, whose version is not its content's, or whose
files lead out of the bundle is refused with a BundleError naming the field or file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tierwise.classifier.bundle import (
    MANIFEST,
    BundleError,
    EncoderSpec,
    Manifest,
    PolicySpec,
    content_version,
    read_manifest,
    sha256_file,
)
from tierwise.classifier.router import Router

from tierwise.cli import main

OUTSIDE = Path("/etc/passwd")


def tampered(bundle: Path, into: Path, change: Callable[[dict[str, Any]], None], restamp: bool = True) -> Path:
    """A copy of the bundle with its manifest changed; `restamp` recomputes the version as a forger would."""
    copy = into / "bundle"
    shutil.copytree(bundle, copy)
    data = json.loads((copy / MANIFEST).read_text())
    change(data)
    if restamp:
        data["version"] = _version_of(data)
    (copy / MANIFEST).write_text(json.dumps(data))
    return copy


def _version_of(data: dict[str, Any]) -> str:
    """The version the manifest's content gives, computed from its JSON as the loader does."""
    manifest = Manifest(**{**data, "policy": PolicySpec(**data["policy"]), "encoder": EncoderSpec(**data["encoder"])})
    return content_version(manifest, data["files"])


def set_in(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets one (dotted) field of the manifest."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = data
        for key in parents:
            target = target[key]
        target[last] = value

    return change


def negative_cost(data: dict[str, Any]) -> None:
    data["tier_costs_usd"][-1] = -3.92


def outside_entry(data: dict[str, Any]) -> None:
    data["files"]["../../etc/passwd"] = sha256_file(OUTSIDE)


def absolute_entry(data: dict[str, Any]) -> None:
    data["files"][str(OUTSIDE)] = sha256_file(OUTSIDE)


def nan_price(data: dict[str, Any]) -> None:
    data["ladder"]["tier"][0]["input_usd_per_mtok"] = float("nan")


def one_cost_too_few(data: dict[str, Any]) -> None:
    data["tier_costs_usd"].pop()


def checksum_not_a_hash(data: dict[str, Any]) -> None:
    data["files"]["model.onnx"] = "not-a-hash"


def faster_top_tier(data: dict[str, Any]) -> None:
    top = data["tier_times"][-1]
    top["latency_ms_quantiles"] = [q / 10 for q in top["latency_ms_quantiles"]]


def nan_latency(data: dict[str, Any]) -> None:
    data["tier_times"][0]["latency_ms_quantiles"][3] = float("nan")


def reversed_latencies(data: dict[str, Any]) -> None:
    data["tier_times"][1]["latency_ms_quantiles"].reverse()


def one_time_model_too_few(data: dict[str, Any]) -> None:
    data["tier_times"].pop()


@pytest.mark.parametrize(
    ("change", "restamp", "named"),
    [
        (set_in("policy.threshold", float("nan")), True, "policy.threshold"),
        (set_in("policy.threshold", float("inf")), True, "policy.threshold"),
        (set_in("policy.threshold", 5), True, "policy.threshold"),
        (set_in("policy.threshold", "0.5"), True, "policy.threshold"),
        (set_in("policy.threshold", 0.0), False, "version"),
        (set_in("policy.rule", "median"), True, "policy.rule"),
        (negative_cost, True, r"tier_costs_usd \(opus\)"),
        (set_in("tier_costs_usd", [0.001, float("inf"), 0.01]), True, r"tier_costs_usd \(sonnet\)"),
        (one_cost_too_few, True, "tier_costs_usd has 2 entries for 3 tiers"),
        (nan_price, True, "ladder: tier #1"),
        (set_in("version", "0123456789ab"), False, "version '0123456789ab'"),
        (set_in("encoder.dims", 0), True, "encoder.dims"),
        (set_in("encoder.max_tokens", "many"), True, "encoder.max_tokens"),
        (set_in("encoder.add_special_tokens", "no"), True, "encoder.add_special_tokens"),
        (outside_entry, True, r"files: '\.\./\.\./etc/passwd'"),
        (absolute_entry, True, r"files: '/etc/passwd'"),
        (checksum_not_a_hash, True, "not a SHA-256"),
        (faster_top_tier, False, "version"),
        (nan_latency, True, r"tier_times\[0\]"),
        (reversed_latencies, True, r"tier_times\[1\].*must not decrease"),
        (one_time_model_too_few, True, "tier_times must list one time model per tier"),
    ],
    ids=[
        "nan-threshold",
        "inf-threshold",
        "threshold-5",
        "string-threshold",
        "threshold-0-stale-version",
        "unknown-rule",
        "negative-cost",
        "infinite-cost",
        "cost-per-tier-missing",
        "nan-price",
        "forged-version",
        "zero-dims",
        "text-max-tokens",
        "text-special-tokens",
        "dot-dot-entry",
        "absolute-entry",
        "bad-checksum-text",
        "time-model-stale-version",
        "nan-latency",
        "decreasing-latencies",
        "time-model-per-tier-missing",
    ],
)
def test_tampered_manifests_are_refused_naming_the_field(trained_bundle, tmp_path, change, restamp, named):
    copy = tampered(trained_bundle, tmp_path, change, restamp)
    with pytest.raises(BundleError, match=named):
        Router.load(copy)


def test_a_symlink_out_of_the_bundle_is_not_followed(trained_bundle, tmp_path):
    """The tokenizer replaced by a link to an identical file outside: its checksum matches, the link is refused."""
    copy = tmp_path / "bundle"
    shutil.copytree(trained_bundle, copy)
    outside = tmp_path / "elsewhere" / "tokenizer.json"
    outside.parent.mkdir()
    shutil.copyfile(copy / "tokenizer.json", outside)
    (copy / "tokenizer.json").unlink()
    (copy / "tokenizer.json").symlink_to(outside)
    with pytest.raises(BundleError, match=r"tokenizer\.json is a link to a file outside the bundle"):
        read_manifest(copy)


def test_a_symlinked_manifest_out_of_the_bundle_is_not_read(trained_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(trained_bundle, copy)
    outside = tmp_path / "manifest-elsewhere.json"
    shutil.move(copy / MANIFEST, outside)
    (copy / MANIFEST).symlink_to(outside)
    with pytest.raises(BundleError, match=r"manifest\.json is a link to a file outside the bundle"):
        read_manifest(copy)


def test_a_restamped_sane_change_is_a_new_version_that_loads(trained_bundle, tmp_path):
    """The rule is consistency: a manifest whose version is its content's loads, under its own version."""
    copy = tampered(trained_bundle, tmp_path, set_in("policy.threshold", 0.5))
    router = Router.load(copy)
    assert router.policy.threshold == 0.5
    assert router.version != Router.load(trained_bundle).version


def test_predict_on_a_tampered_bundle_exits_2_naming_the_field(trained_bundle, tmp_path):
    copy = tampered(trained_bundle, tmp_path, set_in("policy.threshold", float("nan")))
    result = CliRunner().invoke(main, ["predict", "--model", str(copy), "hello"])
    assert result.exit_code == 2
    assert "policy.threshold must be a finite number in [0, 1], got nan" in result.output
