"""No password in a URI is ever shown: tracking store, registry and upstream URIs are masked in errors, log lines and
printed output, and an unreachable tracking server is called unreachable, not "no such registered model"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tierwise.classifier.uris import masked
from tierwise.serving.process import ServerProcess

from tests.helpers import closed_port

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[1]
TIERWISE = (sys.executable, "-m", "tierwise")
PASSWORD = "PASSWORD123"


def tierwise(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*TIERWISE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_an_unreachable_tracking_server_is_named_with_its_password_masked(tmp_path):
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{closed_port()}/"
    result = tierwise(
        tmp_path, "serve", "--model", "models:/router@champion", "--tracking-uri", uri, "--port", "0", "--no-metrics"
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert PASSWORD not in output
    assert "no such registered model" not in output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert f"cannot reach the tracking store {masked(uri)} (Connection refused)" in line
    assert "http://alice:***@127.0.0.1" in line


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://alice:PASSWORD123@127.0.0.1:9/", "http://alice:***@127.0.0.1:9/"),
        ("postgresql://u:p@ss@db:5432/mlflow?x=1", "postgresql://u:***@db:5432/mlflow?x=1"),
        ("https://TOKEN@mlflow.example/", "https://***@mlflow.example/"),
        (
            "API request to http://a:b@h/x failed (http://c:d@e)",
            "API request to http://a:***@h/x failed (http://c:***@e)",
        ),
        (
            "sqlite:////tmp/mlflow.db and mail me at user@example.com",
            "sqlite:////tmp/mlflow.db and mail me at user@example.com",
        ),
    ],
)
def test_uris_are_shown_with_their_credentials_masked(text, shown):
    assert masked(text) == shown


def test_the_proxy_shows_its_upstream_with_the_password_masked():
    upstream = f"http://alice:{PASSWORD}@127.0.0.1:{closed_port()}/tenant"
    args = ["--router", f"127.0.0.1:{closed_port()}", "--upstream", upstream, "--listen", "127.0.0.1:0"]
    with ServerProcess(args, program=(*TIERWISE, "proxy")) as proxy:
        assert f"upstream {masked(upstream)})" in proxy.ready_line
    assert PASSWORD not in proxy.ready_line + proxy.log
    refused = tierwise(ROOT, "proxy", "--router", "127.0.0.1:1", "--upstream", f"ftp://alice:{PASSWORD}@files.example/")
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == ["Error: --upstream: 'ftp://alice:***@files.example/' is not an http(s) URL"]
