"""`RoutedAnthropic` and `AsyncRoutedAnthropic` when the API answers 200 with something that is not a Message (an
HTML page from a gateway, a JSON body of another shape): a failed attempt, `invalid_response`, escalated like a 5xx
and reported to the router (the Trust issue, item 11). The real `anthropic` SDK against the local stand-in API, a real
`tierwise serve` on loopback writing its outcome log."""

from __future__ import annotations

import asyncio

import anthropic
import pytest
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.tiers import TierLadder
from tierwise.serving.process import ServerProcess
from tierwise.serving.routed_anthropic import AsyncRoutedAnthropic, RoutedAnthropic
from tierwise.serving.standin import StandIn

from tests.helpers import logged_rows

pytestmark = pytest.mark.fault

API_KEY = "sk-ant-client-fault-test"
HAIKU, SONNET, OPUS = (tier.model for tier in TierLadder.load().tiers)
HI = [{"role": "user", "content": "Say hi."}]
NOT_MESSAGES = [(b"<html><body>502 Bad Gateway</body></html>", "text/html"), (b'{"ok": true}', "application/json")]

EVERY_TIER = RouteOptions(quality_target=0.0)  # the cheapest tier first, so escalation shows


@pytest.fixture(scope="module")
def router(trained_bundle, tmp_path_factory):
    log = tmp_path_factory.mktemp("routed-client") / "outcomes.jsonl"
    args = ["--model", str(trained_bundle), "--port", "0", "--no-metrics", "--outcome-log", str(log)]
    with ServerProcess(args) as server:
        server.outcome_log = log
        yield server


@pytest.fixture
def fake():
    with StandIn(api_key=API_KEY) as server:
        yield server


def answer_not_a_message(fake: StandIn, body: bytes, content_type: str, *models: str) -> None:
    for model in models:
        fake.fail("POST", "/v1/messages", 200, body=body, content_type=content_type, model=model)


@pytest.mark.parametrize(("body", "content_type"), NOT_MESSAGES)
def test_a_200_that_is_not_a_message_is_a_failed_attempt_escalated_and_reported(router, fake, body, content_type):
    answer_not_a_message(fake, body, content_type, HAIKU)
    client = anthropic.Anthropic(api_key=API_KEY, base_url=fake.url, max_retries=0)
    with RoutedAnthropic(router=router.target, client=client, routing=EVERY_TIER) as routed:
        message = routed.messages.create(max_tokens=50, messages=HI)
        answer_not_a_message(fake, body, content_type, HAIKU, SONNET, OPUS)
        with pytest.raises(anthropic.APIResponseValidationError) as error:
            routed.messages.create(max_tokens=50, messages=HI)
        assert routed.reporter.flush(10) and routed.reporter.counts.failed == 0
    attempts = message.tierwise.attempts
    assert (message.model, [(a.model, a.error, a.accepted) for a in attempts]) == (
        SONNET,
        [(HAIKU, "invalid_response", None), (SONNET, "", True)],
    )
    assert "the answer is not a Message" in str(error.value)
    first, second = logged_rows(router.outcome_log, [message.tierwise.request_id] * 2)
    assert (first["model"], first["error"], first["success"]) == (HAIKU, "invalid_response", None)
    assert (second["model"], second["success"]) == (SONNET, True)


@pytest.mark.parametrize(("body", "content_type"), NOT_MESSAGES)
def test_the_async_client_escalates_a_200_that_is_not_a_message_the_same_way(router, fake, body, content_type):
    async def calls() -> tuple[object, BaseException]:
        client = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=fake.url, max_retries=0)
        async with AsyncRoutedAnthropic(router=router.target, client=client, routing=EVERY_TIER) as routed:
            answer_not_a_message(fake, body, content_type, HAIKU)
            message = await routed.messages.create(max_tokens=50, messages=HI)
            answer_not_a_message(fake, body, content_type, HAIKU, SONNET, OPUS)
            try:
                await routed.messages.create(max_tokens=50, messages=HI)
            except anthropic.APIError as exc:
                return message, exc
        raise AssertionError("a chain of answers that are not Messages raised nothing")

    message, error = asyncio.run(calls())
    assert message.model == SONNET and [a.error for a in message.tierwise.attempts] == ["invalid_response", ""]
    assert isinstance(error, anthropic.APIResponseValidationError)
