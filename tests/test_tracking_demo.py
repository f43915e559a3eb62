"""The README's main-job command runs the whole loop: logs, train + register, serve, Predict, retrain, compare."""

from __future__ import annotations

import re

from click.testing import CliRunner

from training.cli import main


def test_demo_runs_the_whole_loop(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path / "demo"), "--requests", "300"])
    assert result.exit_code == 0, result.output
    output = result.output
    steps = ["sample logs", "labels", "train + register", "serve models:/tierwise-demo@champion", "retrain", "compare"]
    positions = [output.index(f"== {step}") for step in steps]
    assert positions == sorted(positions)
    assert "registered tierwise-demo version 1 as champion" in output
    assert len(re.findall(r"^\s*(haiku|sonnet|opus) \(claude-", output, re.MULTILINE)) == 5  # Predict over gRPC
    assert re.search(r"decision: v2 (PROMOTED to champion|kept as challenger)", output)
    assert re.search(r"^version\s+v1\s+v2$", output, re.MULTILINE)
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'demo' / 'mlflow.db'}" in output
