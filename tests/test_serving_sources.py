"""Bundle directory sources: the change token moves exactly when the bundle's content does."""

from __future__ import annotations

import os

import pytest
from tierwise.registry.sources import DirectorySource, SourceError


def make_bundle(path, weights: bytes = b"v1"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text("{}")
    (path / "model.onnx").write_bytes(weights)
    return path


def test_token_is_stable_while_nothing_changes(tmp_path):
    source = DirectorySource(make_bundle(tmp_path / "b"))
    assert source.resolve() == source.resolve()


def test_token_changes_when_a_file_is_rewritten(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    source = DirectorySource(bundle)
    before = source.resolve().token
    (bundle / "model.onnx").write_bytes(b"v2")
    os.utime(bundle / "model.onnx", ns=(1, 1))
    assert source.resolve().token != before


def test_token_changes_when_a_file_is_added(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    source = DirectorySource(bundle)
    before = source.resolve().token
    (bundle / "extra.json").write_text("{}")
    assert source.resolve().token != before


def test_a_repointed_symlink_resolves_to_the_new_bundle(tmp_path):
    old, new = make_bundle(tmp_path / "v1"), make_bundle(tmp_path / "v2", b"other")
    link = tmp_path / "current"
    link.symlink_to(old)
    source = DirectorySource(link)
    first = source.resolve()
    link.unlink()
    link.symlink_to(new)
    second = source.resolve()
    assert (first.path, second.path) == (old.resolve(), new.resolve())
    assert first.token != second.token


def test_a_missing_bundle_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="not a directory"):
        DirectorySource(tmp_path / "nope").resolve()
