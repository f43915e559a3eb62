"""Fault suite: every directory and file a command writes. A directory that is not a previous output of the same
kind is refused before any work; a file is replaced only whole, so a killed or failed run (kill -9, a full disk, a
path that cannot be written) leaves the earlier output as it was, says so in one `Error:` line with exit code 2,
and leaves no temporary file behind once the next run has written."""

from __future__ import annotations

import ast
import os
import resource
import stat
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from tierwise.classifier.outputs import MARKER, OutputError, atomic_file, staging_dir

from tierwise.cli import main
from tierwise.demo import DEMO_DIR

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[1]
TIERWISE = [sys.executable, "-m", "tierwise"]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


def _users_directory(path: Path) -> dict[str, bytes]:
    (path / "sub").mkdir(parents=True)
    (path / "thesis.txt").write_text("draft")
    return _tree(path)


# --- output directories ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["sample-logs", "--requests", "50", "--out"],
        ["demo", "--requests", "50", "--workdir"],
        ["retrain", "router", "no-such-logs/", "--out"],
        ["train", "no-such-logs/", "--out"],
    ],
    ids=["sample-logs", "demo", "retrain", "train"],
)
def test_a_directory_of_user_files_is_refused_before_any_work_and_untouched(tmp_path, command):
    important = tmp_path / "important"
    before = _users_directory(important)

    result = CliRunner().invoke(main, [*command, str(important)])

    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: {important}: holds 2 entries (sub, thesis.txt)"), result.output
    assert _tree(important) == before
    assert "no-such-logs" not in result.output  # refused before the logs were even looked at


def test_a_demo_directory_is_recognised_by_its_marker_not_by_names_alone(tmp_path):
    lookalike = tmp_path / "project"
    (lookalike / "logs").mkdir(parents=True)
    (lookalike / "mlflow.db").write_text("the user's own store")
    before = _tree(lookalike)
    result = CliRunner().invoke(main, ["demo", "--workdir", str(lookalike)])
    assert result.exit_code == 2 and "mlflow.db" in result.output, result.output
    assert _tree(lookalike) == before

    previous = tmp_path / "previous-demo"
    DEMO_DIR.start(previous)
    (previous / "mlflow.db").write_text("store")
    (previous / "logs").mkdir()
    (previous / f".labels.parquet-{2**22 + 1}-abcdefgh.tmp").write_text("what a killed run left")
    DEMO_DIR.check(previous)
    (previous / "notes.md").write_text("mine")
    with pytest.raises(OutputError, match=r"holds 5 entries .* is not a demo work directory"):
        DEMO_DIR.check(previous)


def test_sample_logs_replace_a_previous_sample_logs_directory_whole(tmp_path):
    out = tmp_path / "logs"
    assert CliRunner().invoke(main, ["sample-logs", "--out", str(out), "--requests", "50"]).exit_code == 0
    result = CliRunner().invoke(main, ["sample-logs", "--out", str(out), "--requests", "60", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "attempts.csv"]
    assert pl.read_csv(out / "attempts.csv")["request_id"].n_unique() == 60
    assert [p.name for p in tmp_path.iterdir()] == ["logs"]  # no staging or retired directory left


def test_sample_logs_into_a_device_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["sample-logs", "--out", "/dev/full", "--requests", "50"])
    assert result.exit_code == 2
    assert result.output == "Error: /dev/full: exists and is not a directory; name a missing or empty directory " \
        "or a sample-logs directory\n"  # fmt: skip


# --- files ------------------------------------------------------------------------------------------------------

KILLED_MID_WRITE = """
import os, signal, sys
import polars as pl
from tierwise.cli import main

write = pl.DataFrame.write_parquet


def write_half_then_die(frame, file, *args, **kwargs):
    write(frame.head(frame.height // 2), file, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)


pl.DataFrame.write_parquet = write_half_then_die
main(sys.argv[1:])
"""


def test_label_killed_mid_write_keeps_the_earlier_output_and_the_next_run_leaves_no_temporary_file(
    tmp_path, sample_logs
):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "labels.parquet"
    pl.DataFrame({"request_id": ["earlier"]}).write_parquet(out)
    earlier = out.read_bytes()

    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_WRITE, "label", str(sample_logs), "--out", str(out)], capture_output=True
    )

    assert killed.returncode == -9, killed.stderr
    assert out.read_bytes() == earlier
    assert len(list(out_dir.iterdir())) == 2  # the earlier output and the killed run's half-written temporary file

    again = subprocess.run([*TIERWISE, "label", str(sample_logs), "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert pl.read_parquet(out).height > 1
    assert [p.name for p in out_dir.iterdir()] == ["labels.parquet"]


def _file_size_limit(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # a write past `limit` bytes fails: a full disk


@pytest.mark.parametrize("target", ["labels.parquet", "labels.jsonl", "logs"], ids=["parquet", "jsonl", "sample-logs"])
def test_a_full_disk_keeps_the_earlier_output_says_so_in_one_line_and_leaves_nothing_behind(
    tmp_path, sample_logs, target
):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / target
    command = ["label", str(sample_logs), "--out"]
    if target == "logs":
        command = ["sample-logs", "--requests", "300", "--out"]
    assert subprocess.run([*TIERWISE, *command, str(out)], capture_output=True).returncode == 0
    before = _tree(out_dir)

    full = subprocess.run(
        [*TIERWISE, *command, str(out)], capture_output=True, text=True, preexec_fn=lambda: _file_size_limit(4096)
    )

    assert full.returncode == 2, full.stderr
    assert full.stderr.startswith("Error: ") and full.stderr.count("\n") == 1, full.stderr
    assert "File too large" in full.stderr and "Traceback" not in full.stderr
    assert _tree(out_dir) == before


@pytest.mark.parametrize(
    "args",
    [
        ["label", "{logs}", "--out", "{file}/labels.parquet"],
        ["sample-logs", "--out", "{file}/logs"],
        ["eval", "{logs}", "--model", "{bundle}", "--json", "{file}/eval.json"],
        ["eval", "{logs}", "--model", "{bundle}", "--plot", "{file}/chart.png"],
    ],
    ids=["label", "sample-logs", "eval-json", "eval-plot"],
)
def test_an_output_under_a_file_is_one_error_line(tmp_path, sample_logs, trained_bundle, args):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    filled = [a.format(logs=sample_logs, bundle=trained_bundle, file=a_file) for a in args]

    result = CliRunner().invoke(main, filled)

    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and f"{a_file} is a file, not a directory" in error[0], result.output
    assert a_file.read_text() == "not a directory"


def test_charts_written_atomically_keep_the_format_of_their_name(tmp_path, sample_logs, trained_bundle):
    png, svg = tmp_path / "chart.png", tmp_path / "chart.svg"
    for chart in (png, svg):
        args = ["eval", str(sample_logs), "--model", str(trained_bundle), "--plot", str(chart)]
        assert CliRunner().invoke(main, args).exit_code == 0
    assert png.read_bytes().startswith(b"\x89PNG") and b"<svg" in svg.read_bytes()[:500]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png", "chart.svg"]


def test_what_a_killed_writer_left_is_removed_by_the_next_write_and_a_live_writers_is_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "attempts.parquet"
    orphan_file = tmp_path / f".attempts.parquet-{dead.pid}-abcdefgh.tmp"
    orphan_dir = tmp_path / f".attempts.parquet-{dead.pid}-ijklmnop"
    live = tmp_path / f".attempts.parquet-{os.getpid()}-qrstuvwx.tmp"
    users = tmp_path / ".attempts.parquet-notes.tmp"
    for path in (orphan_file, live, users):
        path.write_text("x")
    orphan_dir.mkdir()

    with atomic_file(target) as tmp:
        tmp.write_text("new")

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, live.name, users.name])


def test_a_new_output_directory_follows_the_users_umask(tmp_path):
    staging = staging_dir(tmp_path / "out")
    mode = stat.S_IMODE(staging.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o777 & ~umask, oct(mode)


def test_no_directory_a_user_sees_is_made_by_mkdtemp_outside_the_outputs_module():
    """mkdtemp makes 0700 directories: a server running as another user could not read them (staging_dir)."""
    found = []
    for package in ("classifier", "registry", "training", "serving", "tierwise"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr == "mkdtemp":
                    found.append(str(path.relative_to(ROOT)))
    assert sorted(set(found)) == ["classifier/outputs.py"]
