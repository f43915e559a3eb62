"""One decision path: the same request through `tierwise predict` (in process), `tierwise client predict` (a real
server on 127.0.0.1), `tierwise proxy --router` (in front of that server) and `tierwise proxy --model` (the router
inside the proxy), both proxies calling the local stand-in API, gets the same decision: tier, model, fallback
chain, probabilities, quality target, expected cost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anthropic
import pytest
from click.testing import CliRunner
from tierwise.classifier.router import Router
from tierwise.serving.process import ServerProcess
from tierwise.serving.standin import StandIn

from tests.helpers import PROXY, logged_rows
from tierwise.cli import main as cli

API_KEY = "sk-ant-one-decision-test"
HARD = "Analyze the trade-offs of a merger under antitrust review, step by step, and justify each move."
# (flags of predict and client predict, headers of a proxied request), for one set of routing options each
CASES = {
    "defaults": ([], {}),
    "lenient target": (["--quality-target", "0"], {"x-tierwise-quality-target": "0"}),
    "two tiers": (
        ["--allowed-tier", "haiku", "--allowed-tier", "sonnet"],
        {"x-tierwise-allowed-tiers": "haiku,sonnet"},
    ),
    "async band": (["--latency-band", "ASYNC"], {"x-tierwise-latency-band": "async"}),
}


@pytest.fixture(scope="module")
def budget_ms(trained_bundle) -> float:
    """Just under the top tier's fastest attempts: a budget that changes the decision."""
    return Router.load(trained_bundle).policy.times.tiers[-1].quantile(0.01) - 1


@pytest.fixture(scope="module")
def server(trained_bundle, tmp_path_factory):
    log = tmp_path_factory.mktemp("one-decision") / "decisions.jsonl"
    with ServerProcess(
        ["--model", str(trained_bundle), "--port", "0", "--no-metrics", "--decision-log", str(log)]
    ) as s:
        s.decision_log = log
        yield s


@pytest.fixture(scope="module")
def upstream():
    with StandIn(api_key=API_KEY) as fake:
        yield fake


def run(*args: str) -> dict:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@contextmanager
def in_process(bundle: Path, upstream: StandIn, log: Path, *defaults: str) -> Iterator[ServerProcess]:
    """`tierwise proxy --model`, the router inside it logging its decisions to `log`."""
    args = ["--model", str(bundle), "--no-metrics", "--decision-log", str(log), *defaults]
    with ServerProcess([*args, "--listen", "127.0.0.1:0", "--upstream", upstream.url], program=PROXY) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def local_proxy(trained_bundle, upstream, tmp_path_factory):
    log = tmp_path_factory.mktemp("in-process") / "decisions.jsonl"
    with in_process(trained_bundle, upstream, log) as proxy:
        proxy.decision_log = log
        yield proxy


def asked(proxy: ServerProcess, headers: dict[str, str], decision_log: Path) -> dict:
    """The decision a proxy acted on: its routing headers, and the router's decision log row for them."""
    client = anthropic.Anthropic(api_key=API_KEY, base_url=f"http://127.0.0.1:{proxy.port}", max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="tierwise", max_tokens=100, messages=[{"role": "user", "content": HARD}], extra_headers=headers
    )
    [row] = logged_rows(decision_log, [raw.headers["x-tierwise-request-id"]])
    assert (raw.headers["x-tierwise-tier"], raw.headers["x-tierwise-model"]) == (row["tier"], row["model"])
    assert raw.parse().model == row["model"]
    return row


def proxied(server, upstream, headers: dict[str, str], *defaults: str) -> dict:
    """The decision `tierwise proxy --router` acted on, asking `server`."""
    args = ["--router", server.target, "--listen", "127.0.0.1:0", "--upstream", upstream.url, *defaults]
    with ServerProcess(args, program=PROXY) as proxy:
        return asked(proxy, headers, server.decision_log)


def decision(answer: dict) -> tuple:
    return (
        answer["tier"],
        answer["model"],
        list(answer["fallback_chain"]),
        answer["probabilities"],
        answer["quality_target"],
    )


@pytest.mark.parametrize("case", list(CASES))
def test_predict_the_client_and_both_proxies_decide_alike(trained_bundle, server, upstream, local_proxy, case):
    flags, headers = CASES[case]
    local = run("predict", HARD, "--model", str(trained_bundle), *flags)
    remote = run("client", "predict", HARD, "--target", server.target, *flags)
    row = proxied(server, upstream, headers)
    inside = asked(local_proxy, headers, local_proxy.decision_log)
    assert decision(local) == decision(remote) == decision(row) == decision(inside)
    assert (inside["mode"], inside["latency_band"]) == (row["mode"], row["latency_band"])
    assert local["expected_cost_usd"] == pytest.approx(remote["expected_cost_usd"], rel=1e-12)
    assert local["mode"] == row["mode"] and remote["use_batch_api"] is (case == "async band")


def test_the_options_change_the_decision(trained_bundle):
    """The cases above are not one decision four times."""
    chains = {
        tuple(run("predict", HARD, "--model", str(trained_bundle), *flags)["fallback_chain"])
        for flags, _ in CASES.values()
    }
    assert len(chains) >= 3


def test_the_proxies_take_routing_defaults_from_the_shared_options(
    trained_bundle, server, upstream, budget_ms, tmp_path
):
    flags = ["--max-latency-ms", str(budget_ms)]
    local = run("predict", HARD, "--model", str(trained_bundle), *flags)
    remote = run("client", "predict", HARD, "--target", server.target, *flags)
    row = proxied(server, upstream, {}, *flags)
    with in_process(trained_bundle, upstream, tmp_path / "decisions.jsonl", *flags) as proxy:
        inside = asked(proxy, {}, tmp_path / "decisions.jsonl")
    assert decision(local) == decision(remote) == decision(row) == decision(inside)
    assert "opus" not in local["fallback_chain"], "the budget must change the decision for this test to mean anything"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--quality-target", "1.5"], "Invalid value for '--quality-target': must be within [0, 1], got 1.5"),
        (["--max-latency-ms", "0"], "Invalid value for '--max-latency-ms': must be a finite number > 0, got 0.0"),
        (["--allowed-tier", "x" * 65], "Invalid value for '--allowed-tier': 65 characters is over the limit of 64"),
    ],
)
def test_every_command_refuses_a_bad_option_naming_the_flag(trained_bundle, flags, message):
    for command in (["predict", "hi", "--model", str(trained_bundle)], ["client", "predict", "hi"], ["proxy"]):
        result = CliRunner().invoke(cli, [*command, *flags])
        assert result.exit_code == 2 and message in result.output, result.output
