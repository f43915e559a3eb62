"""The CLI as a user runs it: sample logs, labels, errors with exit code 2, help on every command."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest
from click.testing import CliRunner

from tierwise.cli import main


def test_sample_logs_then_label_round_trip(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["sample-logs", "--out", str(tmp_path), "--requests", "300", "--format", "csv"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "labels.parquet"
    result = runner.invoke(main, ["label", str(tmp_path / "attempts.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    labels = pl.read_parquet(out)
    assert labels.height == 300
    assert set(labels["status"]) == {"solved", "unsolved", "censored"}
    assert set(labels["label"].drop_nulls()) == {"haiku", "sonnet", "opus"}
    assert "requests:          300" in result.output


def test_sample_logs_are_reproducible(tmp_path):
    from tierwise.training.data.sample_logs import generate_attempts

    assert generate_attempts(50, seed=3).equals(generate_attempts(50, seed=3))
    assert not generate_attempts(50, seed=3).equals(generate_attempts(50, seed=4))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["label", "{tmp}/missing.jsonl"], "no such file"),
        (["label", "{tmp}/notes.txt"], "unknown log format"),
        (["label", "{tmp}/good.jsonl", "--tiers", "{tmp}/missing.toml"], "cannot read tier ladder"),
        (["label", "{tmp}/bad.jsonl"], "row 1: column success: not a boolean"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "good.jsonl").write_text('{"request_id": "a", "prompt": "p", "model": "m", "success": true}\n')
    (tmp_path / "bad.jsonl").write_text('{"request_id": "a", "prompt": "p", "model": "m", "success": "no way"}\n')
    args = [a.replace("{tmp}", str(tmp_path)) for a in args] + ["--out", str(tmp_path / "labels.parquet")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "labels.parquet").exists()


def test_every_subcommand_explains_itself():
    for name, command in main.commands.items():
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0, name
        assert command.help and command.help.split()[0] in result.output


def test_help_loads_no_heavy_library():
    """`tierwise --help` and every command's help (the registries' choices included) load neither torch, grpc,
    polars, MLflow nor the anthropic SDK: those are imported by the command that runs."""
    code = (
        "import sys, click\n"
        "from tierwise.cli import main\n"
        "main.get_help(click.Context(main))\n"
        "for command in main.commands.values():\n"
        "    command.get_help(click.Context(command))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'grpc', 'polars', 'mlflow', 'anthropic', 'sklearn', 'sentence_transformers'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_console_script_is_installed():
    result = subprocess.run(["tierwise", "--help"], capture_output=True, text=True, check=True)
    assert "label" in result.stdout and "sample-logs" in result.stdout
