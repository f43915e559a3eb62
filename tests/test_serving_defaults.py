"""Safe defaults: `tierwise serve` listens on loopback unless told otherwise, metrics follow --host, and
listening beyond loopback without TLS or a token is said once."""

from __future__ import annotations

import urllib.request

import pytest
from click.testing import CliRunner
from tierwise.serving.config import ServeConfig
from tierwise.serving.process import ServerProcess

from tests.helpers import run_serve, taken_port
from tierwise.cli import main as cli

WARNING = "reaches beyond loopback"


def test_the_default_address_is_loopback_in_the_config_and_on_the_command_line():
    assert ServeConfig(model="m").host == "127.0.0.1"
    help_text = CliRunner().invoke(cli, ["serve", "--help"], terminal_width=200).output
    assert "[default: 127.0.0.1]" in help_text


def test_a_server_started_without_host_listens_on_loopback_and_warns_of_nothing(trained_bundle):
    with ServerProcess(["--model", str(trained_bundle), "--port", "0", "--metrics-port", "0"]) as server:
        assert "listening on 127.0.0.1:" in server.ready_line
        with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as response:
            assert response.status == 200
        assert server.stop() == 0
    assert WARNING not in server.log


def test_metrics_listen_on_the_host_given(trained_bundle):
    args = ["--model", str(trained_bundle), "--host", "127.0.0.2", "--port", "0", "--metrics-port", "0"]
    with ServerProcess(args) as server:
        with urllib.request.urlopen(f"http://127.0.0.2:{server.metrics_port}/metrics", timeout=10) as response:
            assert response.status == 200
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_needs_no_warning(host):
    assert ServeConfig(model="m", host=host).exposure_warning() is None


@pytest.mark.parametrize(
    ("tls", "token", "says"),
    [
        (False, False, "with neither TLS nor a token"),
        (False, True, "without TLS: the token and every prompt cross the network in plaintext"),
        (True, False, "without a token"),
    ],
)
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "10.0.0.7", "router.internal"])
def test_beyond_loopback_without_tls_or_a_token_is_one_warning_line(host, tls, token, says):
    config = ServeConfig(
        model="m", host=host, tls_cert="c.pem" if tls else None, auth_token_file="token" if token else None
    )
    warning = config.exposure_warning()
    assert warning is not None and "\n" not in warning
    assert warning.startswith(f"--host {host} reaches beyond loopback {says}")


def test_beyond_loopback_with_tls_and_a_token_needs_no_warning():
    config = ServeConfig(model="m", host="0.0.0.0", tls_cert="c.pem", tls_key="k.pem", auth_token_file="token")
    assert config.exposure_warning() is None


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_command_warns_once_even_with_workers(trained_bundle, workers):
    """The port is taken, so the server stops before it listens anywhere: the warning comes first."""
    with taken_port() as port:
        args = ["--model", str(trained_bundle), "--host", "0.0.0.0", "--port", str(port), "--no-metrics"]
        result = run_serve([*args, "--workers", workers])
    assert result.returncode == 2
    assert f"cannot listen on 0.0.0.0:{port}" in result.stderr
    warnings = [line for line in result.stderr.splitlines() if WARNING in line]
    assert len(warnings) == 1 and " WARNING " in warnings[0], result.stderr
