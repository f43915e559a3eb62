"""`tierwise proxy --model`: the router inside the proxy.

The real `anthropic` SDK against a proxy that decides in its own process, calling the local stand-in API: it routes,
escalates, streams and takes feedback, and its decision log, outcome log and metrics hold what the same traffic
leaves with a shared `tierwise serve` behind `--router`. SIGHUP reopens its logs; it takes exactly one router.
(`test_one_decision.py`: the same request gets the same decision both ways; `test_registry_serving.py`: a
`models:/NAME@champion` model follows a promotion.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from tierwise.classifier.tiers import TierLadder
from tierwise.serving.process import ServerProcess
from tierwise.serving.standin import StandIn

from tests.helpers import PROXY, logged_rows
from tierwise.cli import main as cli

API_KEY = "sk-ant-proxy-model-test"
HAIKU, SONNET, _ = (tier.model for tier in TierLadder.load().tiers)
HI = [{"role": "user", "content": "Say hi."}]
CHEAPEST_FIRST = {"x-tierwise-quality-target": "0"}


def long_on_haiku(params):
    return "x" * 400 if params["model"] == HAIKU else "Short."


@dataclass
class Setup:
    """A proxy and where the router behind it logs and counts."""

    proxy: ServerProcess
    decisions: Path
    outcomes: Path
    metrics_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    def client(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(api_key=API_KEY, base_url=self.url, max_retries=0)

    def grade(self, request_id: str, success: bool) -> httpx.Response:
        grade = {"request_id": request_id, "success": success}
        return httpx.post(f"{self.url}/v1/tierwise/feedback", json=grade, headers={"x-api-key": API_KEY})

    def metrics(self) -> dict[str, float]:
        """Every sample of the router's /metrics, by name and labels."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        return {
            f"{sample.name}{sorted(sample.labels.items())}": sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@contextmanager
def started(kind: str, bundle: Path, upstream: str, work: Path) -> Iterator[Setup]:
    """The router in the proxy (`model`), or a `tierwise serve` behind `--router` (`router`): the same logs, metrics."""
    decisions, outcomes = work / "decisions.jsonl", work / "outcomes.jsonl"
    router_flags = ["--decision-log", str(decisions), "--outcome-log", str(outcomes), "--metrics-port", "0"]
    proxy_flags = ["--listen", "127.0.0.1:0", "--upstream", upstream]
    if kind == "model":
        with ServerProcess(["--model", str(bundle), *router_flags, *proxy_flags], program=PROXY) as proxy:
            assert proxy.metrics_port is not None
            yield Setup(proxy, decisions, outcomes, proxy.metrics_port)
        return
    with (
        ServerProcess(["--model", str(bundle), "--port", "0", *router_flags]) as router,
        ServerProcess(["--router", router.target, *proxy_flags], program=PROXY) as proxy,
    ):
        assert router.metrics_port is not None
        yield Setup(proxy, decisions, outcomes, router.metrics_port)


def total(metrics: dict[str, float], name: str) -> float:
    return sum(value for key, value in metrics.items() if key.startswith(f"{name}["))


@pytest.mark.parametrize("kind", ["model", "router"])
def test_routes_escalates_streams_and_takes_feedback_logging_what_the_router_behind_router_logs(
    kind, trained_bundle, tmp_path
):
    with (
        StandIn(api_key=API_KEY, answer=long_on_haiku) as fake,
        started(kind, trained_bundle, fake.url, tmp_path) as setup,
    ):
        client = setup.client()
        raw = client.messages.with_raw_response.create(
            model="tierwise", max_tokens=20, messages=HI, extra_headers=CHEAPEST_FIRST
        )
        with client.messages.stream(
            model="tierwise", max_tokens=200, messages=HI, extra_headers=CHEAPEST_FIRST
        ) as stream:
            text = "".join(stream.text_stream)
            streamed = stream.response.headers
        request_id, streamed_id = raw.headers["x-tierwise-request-id"], streamed["x-tierwise-request-id"]
        graded = setup.grade(request_id, False)
        again = setup.grade(request_id, False)
        last = client.messages.with_raw_response.create(model="tierwise", max_tokens=100, messages=HI)
        last_id = last.headers["x-tierwise-request-id"]
        health = httpx.get(f"{setup.url}/health").json()
        decisions = {row["request_id"]: row for row in logged_rows(setup.decisions, [request_id, streamed_id, last_id])}
        outcomes = logged_rows(setup.outcomes, [request_id] * 3 + [streamed_id, last_id])
        metrics = setup.metrics()
    assert [call["model"] for call in fake.message_calls[:3]] == [HAIKU, SONNET, HAIKU]
    assert (raw.headers["x-tierwise-model"], raw.headers["x-tierwise-attempts"]) == (SONNET, "2")
    assert raw.parse().content[0].text == "Short." and text == "x" * 400 and streamed["x-tierwise-attempts"] == "1"
    assert health == {"status": "ok", "router": "ok"}

    for answer in (raw, last):
        row = decisions[answer.headers["x-tierwise-request-id"]]
        assert row["fallback_chain"][0] == row["tier"] and row["model_version"] and row["prompt"] == "Say hi."
    assert decisions[request_id]["fallback_chain"][:2] == ["haiku", "sonnet"]
    assert (decisions[last_id]["tier"], decisions[last_id]["model"]) == (
        last.headers["x-tierwise-tier"],
        last.headers["x-tierwise-model"],
    )

    assert (
        graded.json()
        == again.json()
        == {"request_id": request_id, "model": SONNET, "attempt": 1, "known_request": True}
    )
    first, second, grade = [row for row in outcomes if row["request_id"] == request_id]
    assert [(r["model"], r["attempt"], r["success"]) for r in (first, second, grade)] == [
        (HAIKU, 0, False),
        (SONNET, 1, True),
        (SONNET, 1, False),
    ], "the repeated grade changes nothing and is not logged again"
    assert second["cost_usd"] > 0 and all(row["known_request"] for row in outcomes)
    [stream_row] = [row for row in outcomes if row["request_id"] == streamed_id]
    assert stream_row["success"] and 0 < stream_row["ttft_ms"] <= stream_row["latency_ms"]

    assert total(metrics, "tierwise_predicted_tier_total") == 3
    assert total(metrics, "tierwise_outcome_duplicates_total") == 1
    assert metrics["tierwise_outcomes_total[('result', 'failure'), ('tier', 'sonnet')]"] == 1, "the first grade"


def test_sighup_reopens_the_decision_and_outcome_logs(trained_bundle, tmp_path):
    with StandIn(api_key=API_KEY) as fake, started("model", trained_bundle, fake.url, tmp_path) as setup:
        client = setup.client()
        before = client.messages.with_raw_response.create(model="tierwise", max_tokens=100, messages=HI)
        before_id = before.headers["x-tierwise-request-id"]
        logged_rows(setup.decisions, [before_id])
        logged_rows(setup.outcomes, [before_id])
        for log in (setup.decisions, setup.outcomes):
            log.rename(log.with_suffix(".1"))
        setup.proxy.send(signal.SIGHUP)
        setup.proxy.wait_for_log(r"decisions\.jsonl: reopened")
        setup.proxy.wait_for_log(r"outcomes\.jsonl: reopened")
        after = client.messages.with_raw_response.create(model="tierwise", max_tokens=100, messages=HI)
        after_id = after.headers["x-tierwise-request-id"]
        for log in (setup.decisions, setup.outcomes):
            assert [row["request_id"] for row in logged_rows(log, [after_id])] == [after_id]
            assert [json.loads(line)["request_id"] for line in log.read_text().splitlines()] == [after_id]
            assert before_id in log.with_suffix(".1").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --model (the router in this process) or --router HOST:PORT, one of the two"),
        (["--model", "bundle", "--router", "localhost:50051"], "one of the two"),
        (
            ["--router", "localhost:50051", "--decision-log", "d.jsonl", "--no-metrics"],
            "--no-metrics, --decision-log: only with --model",
        ),
        (["--model", "bundle", "--router-timeout", "2"], "--router-timeout: only with --router"),
    ],
)
def test_the_proxy_takes_one_router_and_only_its_options(args, message):
    result = CliRunner().invoke(cli, ["proxy", *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_model_that_cannot_be_loaded_stops_the_proxy_in_one_line(tmp_path):
    args = ["--model", str(tmp_path / "missing"), "--listen", "127.0.0.1:0", "--no-metrics"]
    result = subprocess.run([*PROXY, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Error: cannot serve:" in result.stderr and "Traceback" not in result.stderr
