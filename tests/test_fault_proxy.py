"""The proxy against a careless or hostile caller and a broken upstream (the Trust issue, items 5-12 and 17): a real
`tierwise proxy` in front of the local stand-in API (`tierwise.serving.standin`) under a tenant's base path, a real
router behind it, the real `anthropic` SDK where a client is involved and raw HTTP where the SDK would tidy the
request up. Every refusal is an answer in the API's error format naming the field: never a 500."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anthropic
import httpx
import pytest
from tierwise.classifier.tiers import TierLadder
from tierwise.serving.process import ServerProcess
from tierwise.serving.standin import StandIn

from tests.helpers import start_proxy

pytestmark = pytest.mark.fault

API_KEY = "sk-tenant-a-key"
OTHER_KEY = "sk-someone-else"
FEEDBACK_TOKEN = "grader-token-42"
BASE = "/tenant-a"
HAIKU, SONNET, OPUS = (tier.model for tier in TierLadder.load().tiers)
HI = [{"role": "user", "content": "Say hi."}]
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
CHEAPEST_FIRST = {"x-tierwise-quality-target": "0"}
HTML = b"<html><body>502 Bad Gateway</body></html>"


@pytest.fixture(scope="module")
def router(trained_bundle):
    with ServerProcess(["--model", str(trained_bundle), "--port", "0", "--no-metrics"]) as server:
        yield server


@pytest.fixture(scope="module")
def upstream():
    with StandIn(api_key=API_KEY, base_path=BASE) as server:
        yield server


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("feedback") / "token"
    path.write_text(FEEDBACK_TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def proxy(router, upstream, token_file):
    with start_proxy(router.target, upstream.url, "--feedback-token-file", str(token_file)) as server:
        yield server


@pytest.fixture
def fake(upstream):
    """The module's stand-in API, as new: nothing recorded, no faults queued, nothing held or cut, default answers."""
    return upstream.reset()


def url(proxy: ServerProcess) -> str:
    return f"http://127.0.0.1:{proxy.port}"


def sdk(proxy: ServerProcess, api_key: str = API_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=api_key, base_url=url(proxy), max_retries=0)


def raw(proxy: ServerProcess, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple:
    """One request sent exactly as written (no normalising of the path): (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={**HEADERS, **(headers or {})})
        answer = connection.getresponse()
        return answer.status, answer.headers, answer.read()
    finally:
        connection.close()


def api_error(body: bytes) -> tuple[str, str]:
    error = json.loads(body)
    assert error["type"] == "error"
    return error["error"]["type"], error["error"]["message"]


def until(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Whether `check` comes true within `timeout_s` (polled): for effects another process makes on its own."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def routed(proxy: ServerProcess, **headers: str) -> httpx.Response:
    body = {"model": "tierwise", "max_tokens": 50, "messages": HI}
    return httpx.post(f"{url(proxy)}/v1/messages", json=body, headers={**HEADERS, **headers}, timeout=30)


def feedback(proxy: ServerProcess, grade: dict | bytes, **headers: str) -> httpx.Response:
    content = grade if isinstance(grade, bytes) else json.dumps(grade).encode()
    return httpx.post(f"{url(proxy)}/v1/tierwise/feedback", content=content, headers=headers, timeout=30)


# --- item 5: one table of limits, on every identifier and body the proxy takes --------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "named"),
    [
        ({"model": "m" * 257, "max_tokens": 5, "messages": HI}, {}, "model: 257 characters is over the limit of 256"),
        (
            {"model": "tierwise", "max_tokens": 5, "messages": HI * 10_001},
            {},
            "messages: 10,001 items is over the limit of 10,000 items",
        ),
        (
            {"model": "tierwise", "max_tokens": 5, "messages": [{"role": "user", "content": "x" * 4_000_001}]},
            {},
            "messages (their text, with the system prompt): 4,000,001 characters is over the limit of 4,000,000",
        ),
        (
            {"model": "tierwise", "max_tokens": 5, "messages": HI},
            {"x-tierwise-allowed-tiers": ",".join(["haiku"] * 65)},
            "x-tierwise-allowed-tiers: 65 items is over the limit of 64 items",
        ),
        (
            {"model": "tierwise", "max_tokens": 5, "messages": HI},
            {"x-tierwise-allowed-tiers": "t" * 65},
            "x-tierwise-allowed-tiers: 65 characters is over the limit of 64 characters",
        ),
        (
            {"model": "tierwise", "max_tokens": 5, "messages": HI},
            {"x-tierwise-latency-band": "b" * 129},
            "x-tierwise-latency-band: 129 characters is over the limit of 128 characters",
        ),
    ],
)
def test_a_request_over_a_limit_is_refused_naming_the_field_and_the_limit(proxy, fake, body, headers, named):
    response = httpx.post(f"{url(proxy)}/v1/messages", json=body, headers={**HEADERS, **headers}, timeout=60)
    kind, message = api_error(response.content)
    assert response.status_code == 400 and kind == "invalid_request_error" and message.startswith(named)
    assert fake.message_calls == []


@pytest.mark.parametrize(
    ("grade", "named"),
    [
        ({"request_id": "r" * 129, "success": True}, "request_id: 129 characters is over the limit of 128"),
        ({"request_id": "r", "model": "m" * 257, "attempt": 0, "success": True}, "model: 257 characters is over"),
        ({"request_id": "r", "model": "m", "attempt": 1001, "success": True}, "attempt: 1,001 is over the limit"),
    ],
)
def test_a_grade_over_a_limit_is_refused_naming_the_field_and_the_limit(proxy, grade, named):
    response = feedback(proxy, grade, authorization=f"Bearer {FEEDBACK_TOKEN}")
    kind, message = api_error(response.content)
    assert response.status_code == 400 and kind == "invalid_request_error" and message.startswith(named)


# --- item 6: only the caller that made a request, or the feedback token, may grade it --------------------------


def test_only_the_api_key_that_made_a_request_or_the_feedback_token_may_grade_it(proxy, fake):
    answer = routed(proxy)
    request_id = answer.headers["x-tierwise-request-id"]
    grade = {"request_id": request_id, "success": False}
    nobody = feedback(proxy, grade)
    someone_else = feedback(proxy, grade, **{"x-api-key": OTHER_KEY})
    wrong_token = feedback(proxy, grade, authorization="Bearer not-the-token")
    own_key = feedback(proxy, grade, **{"x-api-key": API_KEY})
    own_key_as_bearer = feedback(proxy, grade, authorization=f"Bearer {API_KEY}")
    grader = feedback(proxy, grade, authorization=f"Bearer {FEEDBACK_TOKEN}")
    for refused in (nobody, someone_else, wrong_token):
        assert refused.status_code == 401 and api_error(refused.content)[0] == "authentication_error"
    model, attempt = answer.headers["x-tierwise-model"], int(answer.headers["x-tierwise-attempts"]) - 1
    for taken in (own_key, own_key_as_bearer, grader):
        assert taken.status_code == 200
        assert taken.json() == {"request_id": request_id, "model": model, "attempt": attempt, "known_request": True}


def test_the_feedback_token_grades_a_request_the_proxy_does_not_remember_given_model_and_attempt(proxy):
    grade = {"request_id": "routed-elsewhere", "model": HAIKU, "attempt": 0, "score": 0.5}
    by_token = feedback(proxy, grade, **{"x-api-key": FEEDBACK_TOKEN})
    by_key = feedback(proxy, grade, **{"x-api-key": API_KEY})
    assert by_token.status_code == 200 and by_token.json()["known_request"] is False
    assert by_key.status_code == 404 and "feedback token" in api_error(by_key.content)[1]


def test_a_grade_names_an_attempt_the_request_made(proxy, fake):
    request_id = routed(proxy, **CHEAPEST_FIRST).headers["x-tierwise-request-id"]
    wrong_model = feedback(proxy, {"request_id": request_id, "model": OPUS, "attempt": 0, "success": True}, **HEADERS)
    no_such = feedback(proxy, {"request_id": request_id, "attempt": 5, "success": True}, **HEADERS)
    for refused in (wrong_model, no_such):
        assert refused.status_code == 400 and f"its attempts: 0: {HAIKU}" in api_error(refused.content)[1]


# --- item 7: only normalised /v1 paths, always below the upstream's base path ------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/../../tenant-b/v1/models",
        "/v1/%2e%2e/%2e%2e/internal/admin",
        "/v1/models%2f..%2f..%2finternal",
        "/v1/./models",
        "/v1//models",
        "/v1/models/..",
        "/v1/%6dodels",
        "/v2/models",
        "/internal/admin",
        "/v1/messages/../../tenant-b/v1/messages",
    ],
)
def test_a_path_that_is_not_a_normalised_v1_path_never_reaches_the_upstream(proxy, fake, path):
    method, body = ("POST", json.dumps({"model": HAIKU, "max_tokens": 5, "messages": HI}).encode())
    status, _, answer = raw(proxy, method, path, body, {"content-type": "application/json"})
    kind, message = api_error(answer)
    assert status == 400 and kind == "invalid_request_error" and message.startswith("path: ")
    assert fake.log == []


def test_a_normalised_path_goes_below_the_upstream_base_path(proxy, fake):
    status, _, _ = raw(proxy, "GET", "/v1/files?limit=2")
    assert status == 404 and fake.log == [("GET", f"{BASE}/v1/files", 404)]


# --- item 8: --max-body-bytes while a chunked body is read --------------------------------------------------------


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


def test_a_chunked_body_over_the_limit_is_refused_while_it_is_read_and_memory_stays_flat(router, upstream):
    body_mib, chunk = 64, b" " * (1 << 20)
    with start_proxy(router.target, upstream.url, "--max-body-bytes", "1000000") as proxy:
        before = _peak_rss_mib(proxy.proc.pid)
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            head = (
                f"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {API_KEY}\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            sock.sendall(head.encode())
            answer = bytearray()
            reader = threading.Thread(target=_read_all, args=(sock, answer))
            reader.start()
            sent = 0
            try:
                for _ in range(body_mib):
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += 1
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the proxy answered and closed the connection: it reads no more of the body
            reader.join(30)
        grown = _peak_rss_mib(proxy.proc.pid) - before
    assert answer.startswith(b"HTTP/1.1 413 ") and b"body: over 1000000 bytes" in answer
    assert grown < 16, f"the proxy's peak RSS grew {grown:.0f} MiB for a {body_mib} MiB body ({sent} MiB sent)"


def _read_all(sock: socket.socket, into: bytearray) -> None:
    try:
        while part := sock.recv(65536):
            into += part
    except OSError:
        pass


# --- item 9: a stream cut upstream is a failure for the client, never a clean end ----------------------------------


def test_an_upstream_stream_cut_mid_event_ends_with_an_error_event(proxy, fake):
    fake.cut_streams_after = 4
    with (
        pytest.raises(anthropic.APIStatusError) as error,
        sdk(proxy).messages.stream(model="tierwise", max_tokens=50, messages=HI) as stream,
    ):
        stream.until_done()
    assert "upstream stream ended before its end" in str(error.value)
    fake.cut_streams_after = 4
    response = httpx.post(
        f"{url(proxy)}/v1/messages",
        json={"model": "tierwise", "max_tokens": 50, "messages": HI, "stream": True},
        headers=HEADERS,
        timeout=30,
    )
    events = [block for block in response.text.split("\n\n") if block]
    assert events[-1].startswith("event: error\ndata: ")
    assert json.loads(events[-1].split("data: ", 1)[1])["error"]["type"] == "api_error"
    assert all(block.startswith("event: ") and block.count("\ndata: {") == 1 for block in events), "whole events only"


def test_a_stream_whose_first_answer_is_not_an_event_stream_escalates(proxy, fake):
    fake.fail("POST", "/v1/messages", 200, body=HTML, content_type="text/html", model=HAIKU)
    with sdk(proxy).messages.stream(
        model="tierwise", max_tokens=50, messages=HI, extra_headers=CHEAPEST_FIRST
    ) as stream:
        message = stream.get_final_message()
        attempts = stream.response.headers["x-tierwise-attempts"]
    assert (message.model, attempts, message.stop_reason) == (SONNET, "2", "end_turn")


# --- item 10: a client that disconnects cancels the upstream call and frees its slot --------------------------------


def test_a_client_that_disconnects_cancels_the_upstream_call_and_frees_its_slot(router, upstream, fake):
    with start_proxy(router.target, upstream.url, "--max-concurrency", "1", "--upstream-timeout", "300") as proxy:
        fake.hold_messages.clear()
        body = json.dumps({"model": "tierwise", "max_tokens": 5, "messages": HI}).encode()
        with socket.create_connection(("127.0.0.1", proxy.port)) as client:
            head = f"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {API_KEY}\r\nanthropic-version: 2023-06-01\r\n"
            client.sendall(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
            assert fake.held.acquire(timeout=30), "the upstream call never started"
        assert fake.abandoned.acquire(timeout=10), "the upstream call was not cancelled"
        assert until(lambda: httpx.get(f"{url(proxy)}/v1/models", headers=HEADERS).status_code == 200)
        fake.hold_messages.set()
        after = httpx.post(f"{url(proxy)}/v1/messages", json=json.loads(body), headers=HEADERS, timeout=30)
    assert after.status_code == 200


# --- item 11: an upstream 200 that is not a Message is a failed attempt, escalated ----------------------------------


@pytest.mark.parametrize(("body", "content_type"), [(HTML, "text/html"), (b'{"ok": true}', "application/json")])
def test_an_upstream_200_that_is_not_a_message_escalates(proxy, fake, body, content_type):
    fake.fail("POST", "/v1/messages", 200, body=body, content_type=content_type, model=HAIKU)
    answer = routed(proxy, **CHEAPEST_FIRST)
    assert answer.status_code == 200 and answer.json()["model"] == SONNET
    assert (answer.headers["x-tierwise-attempts"], answer.headers["x-tierwise-tier"]) == ("2", "sonnet")
    for model in (HAIKU, SONNET, OPUS):
        fake.fail("POST", "/v1/messages", 200, body=body, content_type=content_type, model=model)
    failed = routed(proxy, **CHEAPEST_FIRST)
    assert failed.status_code == 502 and failed.headers["x-tierwise-attempts"] == "3"
    assert api_error(failed.content) == (
        "api_error",
        "no usable upstream answer on any tier tried (last error: invalid_response)",
    )


# --- item 12: inputs that gave a 500 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        ("/v1/messages", b'{"model": "tierwise", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "body: "),
        ("/v1/tierwise/feedback", b"[" * 100_000 + b"]" * 100_000, "body: "),
        ("/v1/messages/count_tokens", b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "body: "),
        (
            "/v1/messages",
            b'{"model": "tierwise", "max_tokens": 5, "messages": [{"role": "user", "content": "a\\ud800b"}]}',
            "messages.0.content: not valid Unicode",
        ),
        (
            "/v1/messages",
            b'{"model": "tierwise", "max_tokens": 5, "system": "\\udfff", '
            b'"messages": [{"role": "user", "content": "a"}]}',
            "system: not valid Unicode",
        ),
        (
            "/v1/messages",
            b'{"model": "tierwise", "max_tokens": 5, "messages": [{"role": "\\ud800", "content": "a"}]}',
            "messages.0.role: must be one of user, assistant",
        ),
        ("/v1/messages", b'{"model": "\\ud800", "max_tokens": 5, "messages": []}', "model: not valid Unicode"),
        ("/v1/tierwise/feedback", b'{"request_id": "\\ud800", "success": true}', "request_id: not valid Unicode"),
        (
            "/v1/tierwise/feedback",
            b'{"request_id": "r", "model": "m", "attempt": 1099511627776, "success": true}',
            "attempt: 1,099,511,627,776 is over the limit of 1,000",
        ),
        ("/v1/tierwise/feedback", b'{"request_id": "r", "model": "m", "attempt": 0, "score": 1e400}', "score: "),
        (
            "/v1/tierwise/feedback",
            b'{"request_id": "r", "model": "m", "attempt": 0, "score": 1' + b"0" * 400 + b"}",
            "score: ",
        ),
    ],
    ids=[
        "messages-nested-100000-deep",
        "feedback-nested-100000-deep",
        "count-tokens-nested-100000-deep",
        "surrogate-in-content",
        "surrogate-in-system",
        "surrogate-as-role",
        "surrogate-as-model",
        "surrogate-in-feedback-request-id",
        "feedback-attempt-2**40",
        "feedback-score-1e400",
        "feedback-score-10**400",
    ],
)
def test_inputs_that_once_gave_a_500_get_a_400_in_the_api_error_format(proxy, fake, path, body, named):
    headers = {"content-type": "application/json", "authorization": f"Bearer {FEEDBACK_TOKEN}"}
    status, _, answer = raw(proxy, "POST", path, body, headers)
    kind, message = api_error(answer)
    assert (status, kind) == (400, "invalid_request_error") and message.startswith(named), message
    assert fake.message_calls == [] and "Traceback" not in proxy.log


# --- item 17: one date and one server header ---------------------------------------------------------------------


def test_a_proxied_answer_has_one_date_and_one_server_header(proxy, fake):
    answers = [routed(proxy), httpx.post(f"{url(proxy)}/v1/messages", json={"model": HAIKU}, headers=HEADERS)]
    for answer in answers:
        assert len(answer.headers.get_list("date")) == 1 and len(answer.headers.get_list("server")) == 1
