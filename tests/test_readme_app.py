"""The README's "Use it from your app" examples run as written against `tierwise stand-in`: the router command, the
client, the proxy command, the proxy's one `base_url` change and the curl request.

As a user following "Try it offline" would: the stand-in and every command start on the addresses the README
gives, in a directory holding the `bundle/` trained in "Train a router", with nothing changed but the environment
variables the stand-in prints (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`, `TIERWISE_UPSTREAM`, ...). `pip install`
lines are not run (this environment has the install).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tierwise.serving.process import ServerProcess

from tests.readme_outputs import commands, section_blocks, stand_in, tierwise_argv


def one_block(blocks: list[tuple[str, str]], language: str, marker: str) -> str:
    [code] = [code for lang, code in blocks if lang == language and marker in code]
    return code


@pytest.fixture(scope="module")
def blocks():
    return section_blocks("Use it from your app")


def test_the_readme_examples_run_as_written(blocks, trained_bundle, tmp_path, monkeypatch):
    client_code = one_block(blocks, "python", "RoutedAnthropic")
    proxy_code = one_block(blocks, "python", "base_url")
    curl = one_block(blocks, "bash", "curl ")
    lines = [line for lang, code in blocks if lang == "bash" for line in commands(code)]
    [serve_line] = [line for line in lines if line.startswith("tierwise serve")]
    [proxy_line] = [line for line in lines if line.startswith("tierwise proxy")]
    (tmp_path / "bundle").symlink_to(trained_bundle)
    monkeypatch.chdir(tmp_path)

    with stand_in() as (_, variables):
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        env = dict(os.environ)

        def python(code: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)

        with ServerProcess([], program=tierwise_argv(serve_line)):
            client = python(client_code)
            with ServerProcess([], program=tierwise_argv(proxy_line), ready_timeout_s=60):
                via_sdk = python(proxy_code)
                via_curl = subprocess.run(["bash", "-c", curl], env=env, capture_output=True, text=True)

    assert client.returncode == 0, client.stderr
    tier, cost = client.stdout.split()[-2:]
    assert client.stdout.startswith("Answer ") and tier in ("haiku", "sonnet", "opus") and float(cost) > 0
    assert via_sdk.returncode == 0 and via_sdk.stdout.startswith("Answer "), via_sdk.stderr
    assert via_curl.returncode == 0, via_curl.stderr
    message = json.loads(via_curl.stdout)
    assert message["type"] == "message" and message["content"][0]["text"].startswith("Answer ")
    assert message["model"].startswith("claude-"), "the proxy routed the request to a tier's model"
