"""`tierwise proxy`: the real `anthropic` SDK pointed at the proxy (`base_url`), the proxy pointed at the local stand-in
API, a real `tierwise serve` behind it. Routing, options in headers, escalation on a truncated or failed answer,
streams, pass-through, count_tokens, feedback checks, bad bodies, bounded concurrency, the router down."""

from __future__ import annotations

import json
import threading

import anthropic
import httpx
import pytest
from tierwise.classifier.request import RouteRequest
from tierwise.classifier.tiers import TierLadder
from tierwise.serving.client import predict_once
from tierwise.serving.process import ServerProcess
from tierwise.serving.standin import StandIn
from tierwise.serving.standin_text import default_answer

from tests.helpers import closed_port, start_proxy

API_KEY = "sk-ant-proxy-test-0123456789"
LADDER = TierLadder.load()
HAIKU, SONNET, OPUS = (tier.model for tier in LADDER.tiers)
HI = [{"role": "user", "content": "Say hi."}]
CHEAPEST_FIRST = {"x-tierwise-quality-target": "0"}  # every tier clears 0: the chain starts at the cheapest
API_HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def router(trained_bundle):
    with ServerProcess(["--model", str(trained_bundle), "--port", "0", "--no-metrics"]) as server:
        yield server


@pytest.fixture(scope="module")
def upstream():
    with StandIn(api_key=API_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(router, upstream):
    with start_proxy(router.target, upstream.url, "--max-body-bytes", "100000") as server:
        yield server


@pytest.fixture
def fake(upstream):
    """The module's stand-in API, as new: nothing recorded, no faults queued, nothing held or cut, default answers."""
    return upstream.reset()


def proxy_url(proxy: ServerProcess) -> str:
    return f"http://127.0.0.1:{proxy.port}"


def sdk(proxy: ServerProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=API_KEY, base_url=proxy_url(proxy), max_retries=0)


def routed(headers: httpx.Headers) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.startswith("x-tierwise-")}


def models_called(fake: StandIn) -> list[str]:
    return [call["model"] for call in fake.message_calls]


def long_on_haiku(params):
    return "x" * 400 if params["model"] == HAIKU else "Short."


def test_model_tierwise_is_routed_and_the_answer_names_its_routing(router, proxy, fake):
    expected = predict_once(router.target, RouteRequest("Say hi."))
    raw = sdk(proxy).messages.with_raw_response.create(model="tierwise", max_tokens=100, messages=HI)
    message = raw.parse()
    assert models_called(fake) == [expected["model"]] and message.model == expected["model"]
    headers = routed(raw.headers)
    assert headers["x-tierwise-tier"] == expected["tier"] and headers["x-tierwise-model"] == expected["model"]
    assert headers["x-tierwise-attempts"] == "1" and headers["x-tierwise-accepted"] == "true"
    assert headers["x-tierwise-request-id"] and float(headers["x-tierwise-cost-usd"]) > 0
    assert "x-tierwise-router-error" not in headers
    assert message.content[0].text == default_answer({"model": expected["model"], "messages": HI})


def test_options_travel_in_headers(proxy, fake):
    client = sdk(proxy)
    raw = client.messages.with_raw_response.create(
        model="tierwise", max_tokens=100, messages=HI, extra_headers={"x-tierwise-allowed-tiers": "sonnet, opus"}
    )
    cheapest = client.messages.with_raw_response.create(
        model="tierwise", max_tokens=100, messages=HI, extra_headers=CHEAPEST_FIRST
    )
    assert raw.headers["x-tierwise-tier"] in ("sonnet", "opus") and cheapest.headers["x-tierwise-tier"] == "haiku"
    assert all(not name.startswith("x-tierwise") for call in fake.message_calls for name in call)


def test_an_answer_cut_off_at_max_tokens_escalates(proxy, fake):
    fake.answer = long_on_haiku
    raw = sdk(proxy).messages.with_raw_response.create(
        model="tierwise", max_tokens=20, messages=HI, extra_headers=CHEAPEST_FIRST
    )
    assert models_called(fake) == [HAIKU, SONNET] and raw.parse().content[0].text == "Short."
    headers = routed(raw.headers)
    assert (headers["x-tierwise-tier"], headers["x-tierwise-model"], headers["x-tierwise-attempts"]) == (
        "sonnet",
        SONNET,
        "2",
    )


def test_the_chain_ends_on_the_last_truncated_answer_marked_not_accepted(proxy, fake):
    fake.answer = lambda params: "x" * 400
    raw = sdk(proxy).messages.with_raw_response.create(
        model="tierwise", max_tokens=20, messages=HI, extra_headers=CHEAPEST_FIRST
    )
    assert models_called(fake) == [HAIKU, SONNET, OPUS] and raw.parse().stop_reason == "max_tokens"
    assert raw.headers["x-tierwise-accepted"] == "false" and raw.headers["x-tierwise-attempts"] == "3"


def test_an_upstream_error_worth_retrying_escalates_and_a_bad_request_comes_back_as_is(proxy, fake):
    client = sdk(proxy)
    fake.fail("POST", "/v1/messages", 529, model=HAIKU)
    raw = client.messages.with_raw_response.create(
        model="tierwise", max_tokens=100, messages=HI, extra_headers=CHEAPEST_FIRST
    )
    assert raw.parse().model == SONNET and raw.headers["x-tierwise-attempts"] == "2"
    fake.fail("POST", "/v1/messages", 400, model=HAIKU)
    with pytest.raises(anthropic.BadRequestError) as error:
        client.messages.create(model="tierwise", max_tokens=100, messages=HI, extra_headers=CHEAPEST_FIRST)
    assert error.value.response.headers["x-tierwise-attempts"] == "1"
    assert error.value.body["error"]["type"] == "invalid_request_error"


def test_every_tier_overloaded_gives_the_last_upstream_error(proxy, fake):
    for model in (HAIKU, SONNET, OPUS):
        fake.fail("POST", "/v1/messages", 529, model=model)
    with pytest.raises(anthropic.InternalServerError) as error:
        sdk(proxy).messages.create(model="tierwise", max_tokens=100, messages=HI, extra_headers=CHEAPEST_FIRST)
    assert error.value.status_code == 529 and error.value.response.headers["x-tierwise-attempts"] == "3"


def test_a_routed_stream_passes_through_as_sse(proxy, fake):
    with sdk(proxy).messages.stream(
        model="tierwise", max_tokens=100, messages=HI, extra_headers=CHEAPEST_FIRST
    ) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
        headers = routed(stream.response.headers)
    assert text == default_answer({"model": HAIKU, "messages": HI}) and message.stop_reason == "end_turn"
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    assert (headers["x-tierwise-model"], headers["x-tierwise-attempts"]) == (HAIKU, "1")
    assert fake.message_calls[0]["stream"] is True


def test_a_stream_escalates_only_before_it_starts(proxy, fake):
    fake.answer = long_on_haiku
    client = sdk(proxy)
    fake.fail("POST", "/v1/messages", 529, model=HAIKU)
    with client.messages.stream(model="tierwise", max_tokens=20, messages=HI, extra_headers=CHEAPEST_FIRST) as stream:
        escalated = stream.get_final_message()
        attempts = stream.response.headers["x-tierwise-attempts"]
    with client.messages.stream(model="tierwise", max_tokens=20, messages=HI, extra_headers=CHEAPEST_FIRST) as stream:
        truncated = stream.get_final_message()
    assert (escalated.model, attempts) == (SONNET, "2")
    assert truncated.model == HAIKU and truncated.stop_reason == "max_tokens", "a started stream is never escalated"


def test_any_other_model_passes_through_untouched(proxy, fake):
    body = {"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": HI, "metadata": {"user_id": "u-1"}}
    response = httpx.post(f"{proxy_url(proxy)}/v1/messages", json=body, headers=API_HEADERS)
    assert response.status_code == 200 and fake.message_calls == [body]
    assert routed(response.headers) == {} and response.headers["request-id"].startswith("req_")
    assert response.json()["model"] == "claude-sonnet-4-6"
    with sdk(proxy).messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=HI) as stream:
        assert stream.get_final_text() == default_answer({"model": "claude-haiku-4-5", "messages": HI})
    batch = sdk(proxy).messages.batches.create(
        requests=[{"custom_id": "a", "params": {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": HI}}]
    )
    assert batch.id in fake.batches and fake.submitted_ids() == ["a"], "every other /v1 path passes through too"


def test_a_wrong_api_key_is_forwarded_and_refused_upstream_never_logged(proxy, fake):
    wrong = anthropic.Anthropic(api_key="sk-ant-wrong-key-987", base_url=proxy_url(proxy), max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(model="tierwise", max_tokens=100, messages=HI)
    sdk(proxy).messages.create(model="tierwise", max_tokens=100, messages=HI)
    assert "sk-ant-wrong-key-987" not in proxy.log and API_KEY not in proxy.log


def test_count_tokens_passes_through_with_tierwise_counted_on_the_top_tier(proxy, fake):
    client = sdk(proxy)
    routed_count = client.messages.count_tokens(model="tierwise", messages=HI)
    named = client.messages.count_tokens(model="claude-haiku-4-5", messages=HI)
    direct = anthropic.Anthropic(api_key=API_KEY, base_url=fake.url).messages.count_tokens(
        model=LADDER.top.model, messages=HI
    )
    assert routed_count.input_tokens == named.input_tokens == direct.input_tokens
    assert [entry[1] for entry in fake.log] == ["/v1/messages/count_tokens"] * 3


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"{not json", {}, 400, "body: must be a JSON object"),
        (b"[1, 2]", {}, 400, "body: must be a JSON object"),
        (b'{"max_tokens": 5, "messages": []}', {}, 400, "model: field required"),
        (b'{"model": "tierwise", "max_tokens": 5}', {}, 400, "messages: field required"),
        (b'{"model": "tierwise", "max_tokens": 5, "messages": ["hi"]}', {}, 400, "messages.0: must be an object"),
        (
            json.dumps({"model": "tierwise", "max_tokens": 5, "messages": HI}).encode(),
            {"x-tierwise-quality-target": "high"},
            400,
            "x-tierwise-quality-target: 'high' is not a number",
        ),
        (
            json.dumps({"model": "tierwise", "max_tokens": 5, "messages": HI}).encode(),
            {"x-tierwise-quality-target": "2"},
            400,
            "x-tierwise-quality-target: must be within [0, 1], got 2.0",
        ),
        (
            json.dumps({"model": "tierwise", "max_tokens": 5, "messages": HI}).encode(),
            {"x-tierwise-latency-band": "SOON"},
            400,
            "x-tierwise-latency-band: 'SOON' is not one of",
        ),
        (
            json.dumps({"model": "tierwise", "max_tokens": 5, "messages": HI}).encode(),
            {"x-tierwise-allowed-tiers": "gpt"},
            400,
            "allowed_tiers",
        ),
        (b"{" + b" " * 100_001 + b"}", {}, 413, "body: over 100000 bytes"),
    ],
)
def test_bad_requests_get_a_4xx_in_the_api_error_format(proxy, fake, body, headers, status, message):
    response = httpx.post(
        f"{proxy_url(proxy)}/v1/messages",
        content=body,
        headers={**API_HEADERS, "content-type": "application/json", **headers},
    )
    assert response.status_code == status
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] in ("invalid_request_error", "request_too_large")
    assert message in error["error"]["message"]
    assert fake.message_calls == []


@pytest.mark.parametrize(
    ("grade", "status", "message"),
    [
        ({"success": True}, 400, "request_id: field required"),
        ({"request_id": "never-seen", "success": True}, 404, "not a request this proxy remembers"),
        ({"request_id": "r", "model": "m", "attempt": 0}, 400, "success or score: give at least one"),
        ({"request_id": "r", "model": "m", "attempt": 0, "success": "yes"}, 400, "success: must be true or false"),
        ({"request_id": "r", "model": "m", "attempt": -1, "score": 1}, 400, "attempt: must be a non-negative integer"),
    ],
)
def test_feedback_names_what_is_wrong_with_a_grade(proxy, grade, status, message):
    response = httpx.post(f"{proxy_url(proxy)}/v1/tierwise/feedback", json=grade, headers=API_HEADERS)
    assert response.status_code == status and message in response.json()["error"]["message"]


def test_health_answers_with_what_it_saw_of_the_router(proxy):
    response = httpx.get(f"{proxy_url(proxy)}/health")
    assert response.status_code == 200 and response.json() == {"status": "ok", "router": "ok"}


def test_requests_beyond_max_concurrency_get_529_and_health_still_answers(router):
    with (
        StandIn(api_key=API_KEY, stream_delay_s=0.3) as slow,
        start_proxy(router.target, slow.url, "--max-concurrency", "1") as proxy,
    ):
        client = sdk(proxy)
        started = threading.Event()

        def hold() -> None:
            with client.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=HI) as stream:
                started.set()
                stream.until_done()

        holder = threading.Thread(target=hold)
        holder.start()
        assert started.wait(10)
        with pytest.raises(anthropic.APIStatusError) as error:
            client.messages.create(model="tierwise", max_tokens=100, messages=HI)
        health = httpx.get(f"{proxy_url(proxy)}/health")
        holder.join(10)
        assert not holder.is_alive()
        # The proxy frees the slot just after the stream's last bytes leave it, so the next request may still
        # meet 529 for an instant: a client retrying as the SDK does gets through.
        after = client.with_options(max_retries=2).messages.create(model="tierwise", max_tokens=100, messages=HI)
    assert error.value.status_code == 529 and error.value.body["error"]["type"] == "overloaded_error"
    assert "--max-concurrency" in error.value.body["error"]["message"]
    assert health.status_code == 200 and after.content


def test_a_router_that_is_down_means_the_fallback_model_flagged_or_503(upstream, fake):
    dead = f"127.0.0.1:{closed_port()}"
    with start_proxy(dead, upstream.url, "--router-timeout", "2") as proxy:
        client = sdk(proxy)
        first = client.messages.with_raw_response.create(model="tierwise", max_tokens=100, messages=HI)
        second = client.messages.with_raw_response.create(model="tierwise", max_tokens=100, messages=HI)
        health = httpx.get(f"{proxy_url(proxy)}/health").json()
    assert models_called(fake) == [LADDER.top.model] * 2
    assert first.headers["x-tierwise-router-error"].startswith("UNAVAILABLE") and second.parse().content
    assert health["router"].startswith("unavailable: UNAVAILABLE")
    assert proxy.log.count("tierwise router cannot route") == 1, "one warning per outage, not one per request"
    with (
        start_proxy(dead, upstream.url, "--router-down", "fail") as failing,
        pytest.raises(anthropic.APIStatusError) as error,
    ):
        sdk(failing).messages.create(model="tierwise", max_tokens=100, messages=HI)
    assert error.value.status_code == 503 and "tierwise router unavailable" in error.value.body["error"]["message"]
    assert len(fake.message_calls) == 2


def test_the_router_token_travels_with_every_routing_call(trained_bundle, upstream, fake, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("router-secret\n")
    args = ["--model", str(trained_bundle), "--port", "0", "--no-metrics", "--auth-token-file", str(token_file)]
    with (
        ServerProcess(args) as guarded,
        start_proxy(guarded.target, upstream.url, "--auth-token-file", str(token_file)) as with_token,
        start_proxy(guarded.target, upstream.url) as without,
    ):
        answer = sdk(with_token).messages.with_raw_response.create(model="tierwise", max_tokens=100, messages=HI)
        with pytest.raises(anthropic.APIStatusError) as refused:
            sdk(without).messages.create(model="tierwise", max_tokens=100, messages=HI)
    assert answer.headers["x-tierwise-request-id"] and "x-tierwise-router-error" not in answer.headers
    assert refused.value.status_code == 502 and "UNAUTHENTICATED" in refused.value.body["error"]["message"]
    assert "router-secret" not in with_token.log
