"""The README's "Use it from your app" examples run as written: the client (against a real `tierwise serve`), the
proxy command (the router inside the proxy), the proxy's one `base_url` change and the curl request, against the
local fake of the API.

Only the addresses and the bundle change (`localhost:50051` becomes the test router's, `127.0.0.1:8080` a free port,
the metrics port any free one, `bundle/` the test bundle); the API key and the fake's URL come from the environment
the examples already read (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL` for `anthropic.Anthropic()`,
`TIERWISE_UPSTREAM` for the proxy).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from tierwise.serving.process import ServerProcess

from tests.anthropic_fake import FakeAnthropic
from tests.helpers import closed_port

README = Path(__file__).resolve().parents[1] / "README.md"
API_KEY = "sk-ant-readme-test"


def section_blocks(title: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block in the README section with this title."""
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```(\w+)\n(.*?)```", text[start:end], re.S)


def one_block(blocks: list[tuple[str, str]], language: str, marker: str) -> str:
    [code] = [code for lang, code in blocks if lang == language and marker in code]
    return code


@pytest.fixture(scope="module")
def blocks():
    return section_blocks("Use it from your app")


def test_the_readme_examples_run_as_written(blocks, trained_bundle, monkeypatch):
    client_code = one_block(blocks, "python", "RoutedAnthropic")
    proxy_code = one_block(blocks, "python", "base_url")
    [proxy_line] = [
        line
        for lang, code in blocks
        if lang == "bash"
        for line in code.splitlines()
        if line.startswith("tierwise proxy")
    ]
    curl = one_block(blocks, "bash", "curl ")
    assert "localhost:50051" in client_code and "127.0.0.1:8080" in proxy_code and "127.0.0.1:8080" in curl
    assert "--model bundle/" in proxy_line, "the proxy runs the router inside it"

    with (
        FakeAnthropic(api_key=API_KEY) as fake,
        ServerProcess(["--model", str(trained_bundle), "--port", "0", "--no-metrics"]) as router,
    ):
        listen = f"127.0.0.1:{closed_port()}"

        def here(code: str) -> str:
            for written, used in (
                ("localhost:50051", router.target),
                ("127.0.0.1:8080", listen),
                ("--metrics-port 9464", "--metrics-port 0"),
                ("bundle/", str(trained_bundle)),
            ):
                code = code.replace(written, used)
            return code

        monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("TIERWISE_UPSTREAM", fake.url)
        env = dict(os.environ)
        client = subprocess.run([sys.executable, "-c", here(client_code)], env=env, capture_output=True, text=True)
        assert client.returncode == 0, client.stderr
        tier, cost = client.stdout.split()[-2:]
        assert client.stdout.startswith("Answer ") and tier in ("haiku", "sonnet", "opus") and float(cost) > 0

        # `tierwise proxy ...` as the installed console script would run it.
        command = [sys.executable, "-m", "tierwise", *shlex.split(here(proxy_line))[1:]]
        with ServerProcess([], program=command, ready_timeout_s=60) as proxy:
            assert proxy.port == int(listen.rsplit(":", 1)[1])
            via_sdk = subprocess.run([sys.executable, "-c", here(proxy_code)], env=env, capture_output=True, text=True)
            via_curl = subprocess.run(["bash", "-c", here(curl)], env=env, capture_output=True, text=True)
    assert via_sdk.returncode == 0 and via_sdk.stdout.startswith("Answer "), via_sdk.stderr
    assert via_curl.returncode == 0, via_curl.stderr
    message = json.loads(via_curl.stdout)
    assert message["type"] == "message" and message["content"][0]["text"].startswith("Answer ")
    routed_models = [call["model"] for call in fake.message_calls]
    assert len(routed_models) == 3 and "tierwise" not in routed_models, "every example's request was routed"
