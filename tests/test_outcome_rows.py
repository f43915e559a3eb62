"""Every attempt the client and the proxy make arrives at the router as an outcome row (`tierwise serve
--outcome-log`), and a later grade (`client.grade`, `POST /v1/tierwise/feedback`) as another row for the same
request, model and attempt."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.tiers import TierLadder
from tierwise.serving.process import ServerProcess
from tierwise.serving.routed_anthropic import RoutedAnthropic
from tierwise.serving.standin import StandIn

from tests.helpers import PROXY, logged_rows

API_KEY = "sk-ant-outcome-test"
HAIKU, SONNET, _ = (tier.model for tier in TierLadder.load().tiers)
HI = [{"role": "user", "content": "Say hi."}]


def long_on_haiku(params):
    return "x" * 400 if params["model"] == HAIKU else "Short."


@pytest.fixture
def router(trained_bundle, tmp_path):
    log = tmp_path / "outcomes.jsonl"
    args = ["--model", str(trained_bundle), "--port", "0", "--no-metrics", "--outcome-log", str(log)]
    with ServerProcess(args) as server:
        server.outcome_log = log
        yield server


def test_the_client_reports_every_attempt_and_a_later_grade(router):
    with StandIn(api_key=API_KEY, answer=long_on_haiku) as fake:
        client = anthropic.Anthropic(api_key=API_KEY, base_url=fake.url, max_retries=0)
        with RoutedAnthropic(router=router.target, client=client, routing=RouteOptions(quality_target=0.0)) as routed:
            message = routed.messages.create(max_tokens=20, messages=HI)
            routed.grade(message.tierwise, score=0.25)
            assert routed.reporter.flush(10)
            assert routed.reporter.counts.failed == 0
    first, second, grade = logged_rows(router.outcome_log, [message.tierwise.request_id] * 3)
    assert (first["model"], first["attempt"], first["success"]) == (HAIKU, 0, False)
    assert (second["model"], second["attempt"], second["success"]) == (SONNET, 1, True)
    assert second["output_tokens"] == message.usage.output_tokens and second["cost_usd"] > 0
    assert first["latency_ms"] > 0 and first["input_tokens"] > 0
    assert (grade["model"], grade["attempt"], grade["score"]) == (SONNET, 1, 0.25)


def test_the_proxy_reports_attempts_streams_and_feedback(router):
    with (
        StandIn(api_key=API_KEY, answer=long_on_haiku) as fake,
        ServerProcess(
            ["--router", router.target, "--listen", "127.0.0.1:0", "--upstream", fake.url], program=PROXY
        ) as proxy,
    ):
        url = f"http://127.0.0.1:{proxy.port}"
        client = anthropic.Anthropic(api_key=API_KEY, base_url=url, max_retries=0)
        headers = {"x-tierwise-quality-target": "0"}
        raw = client.messages.with_raw_response.create(
            model="tierwise", max_tokens=20, messages=HI, extra_headers=headers
        )
        with client.messages.stream(model="tierwise", max_tokens=200, messages=HI, extra_headers=headers) as stream:
            stream.until_done()
            streamed_id = stream.response.headers["x-tierwise-request-id"]
        request_id = raw.headers["x-tierwise-request-id"]
        feedback = httpx.post(
            f"{url}/v1/tierwise/feedback",
            json={"request_id": request_id, "success": False},
            headers={"x-api-key": API_KEY},
        )
    assert feedback.status_code == 200
    assert feedback.json() == {"request_id": request_id, "model": SONNET, "attempt": 1, "known_request": True}
    first, second, grade = logged_rows(router.outcome_log, [request_id] * 3)
    assert [(r["model"], r["attempt"], r["success"]) for r in (first, second, grade)] == [
        (HAIKU, 0, False),
        (SONNET, 1, True),
        (SONNET, 1, False),
    ]
    [streamed] = logged_rows(router.outcome_log, [streamed_id])
    assert streamed["success"] and 0 < streamed["ttft_ms"] <= streamed["latency_ms"]
