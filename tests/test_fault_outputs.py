"""Fault suite: an output directory a command writes never costs the user a file they already had."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from tierwise.classifier.bundle import check_bundle_out
from tierwise.classifier.outputs import OutputError, atomic_file

from tierwise.cli import main

pytestmark = pytest.mark.fault


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


def test_train_out_refuses_a_directory_of_user_files_and_touches_nothing(tmp_path: Path, sample_logs: Path) -> None:
    important = tmp_path / "important"
    (important / "sub").mkdir(parents=True)
    (important / "thesis.txt").write_text("draft")
    before = _tree(important)

    result = CliRunner().invoke(main, ["train", str(sample_logs), "--out", str(important)])

    assert result.exit_code == 2
    assert str(important) in result.output and "thesis.txt" in result.output and "sub" in result.output
    assert _tree(important) == before


def test_train_out_refuses_the_directory_of_its_own_training_logs(tmp_path: Path, sample_logs: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    shutil.copy(sample_logs, victim / sample_logs.name)
    before = _tree(victim)

    result = CliRunner().invoke(main, ["train", str(victim), "--out", str(victim)])

    assert result.exit_code == 2
    assert sample_logs.name in result.output
    assert _tree(victim) == before


def test_a_previous_bundle_is_replaceable_but_not_one_with_a_stray_file(tmp_path: Path, trained_bundle: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle, bundle)
    check_bundle_out(bundle)
    check_bundle_out(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    check_bundle_out(tmp_path / "empty")

    (bundle / "notes.md").write_text("mine")
    with pytest.raises(OutputError, match=r"notes\.md"):
        check_bundle_out(bundle)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        check_bundle_out(tmp_path / "a-file")


def test_a_new_bundle_directory_follows_the_users_umask(trained_bundle: Path) -> None:
    mode = stat.S_IMODE(trained_bundle.stat().st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IXGRP and mode & stat.S_IROTH, oct(mode)


def test_a_failed_file_write_keeps_the_earlier_output_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "labels.jsonl"
    target.write_text("earlier output\n")

    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half of the new out")
        raise RuntimeError("killed mid-write")

    assert target.read_text() == "earlier output\n"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.jsonl"]

    with atomic_file(target) as tmp:
        tmp.write_text("new output\n")
    assert target.read_text() == "new output\n"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.jsonl"]
