"""The README's main-job command runs the whole loop (logs, train + register, serve, Predict, retrain, compare,
audit), and a first run piped into a file is quiet: no library load reports, no warnings, no progress redraws."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_a_first_demo_run_piped_does_the_whole_loop_quietly(tmp_path):
    env = {**os.environ, "TIERWISE_CACHE_DIR": str(tmp_path / "fresh-cache")}  # first run: distils the encoder
    command = [sys.executable, "-m", "tierwise", "demo", "--workdir", str(tmp_path / "demo"), "--requests", "300"]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=600)
    output = done.stdout
    assert done.returncode == 0, output
    steps = ["sample logs", "labels", "train + register", "serve models:/tierwise-demo@champion", "retrain", "compare"]
    steps.append("audit")
    positions = [output.index(f"== {step}") for step in steps]
    assert positions == sorted(positions)
    assert "registered tierwise-demo version 1 as champion" in output
    assert len(re.findall(r"^\s*(haiku|sonnet|opus) \(claude-", output, re.MULTILINE)) == 5  # Predict over gRPC
    assert re.search(r"decision: v2 (PROMOTED to champion|kept as challenger)", output)
    assert re.search(r"^version\s+v1\s+v2$", output, re.MULTILINE)
    assert re.search(r"^greetings\s+\d+\s+[\d.]+\s+haiku: ", output, re.MULTILINE)  # the audit's headline
    assert (tmp_path / "demo" / "audit" / "report.html").exists()
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'demo' / 'mlflow.db'}" in output
    assert re.search(r"^distilling: done in [\d.]+s$", output, re.MULTILINE)
    for noise in ("\r", "\x1b[", "LOAD REPORT", "Warning", "warn(", "Traceback"):
        assert noise not in output, f"{noise!r} in the piped output"
