"""A local stand-in for the Anthropic Messages and Message Batches API, for tests that cannot reach the network.

It speaks the subset `tierwise replay`, the routed client and the proxy use, with the real paths, JSON shapes,
headers and status codes: create / retrieve / list / cancel batches, batch results as JSONL, synchronous
messages (the judge, with tool use and prompt-caching usage; answers cut off at `max_tokens` with
`stop_reason: "max_tokens"`), streamed messages (SSE, sent event by event), count_tokens, error envelopes,
429 and 529; any other path is answered 404 and logged, so tests see which paths reached it (`base_path` puts
the API below a path, as a gateway's tenant prefix). The real
`anthropic` client is pointed at it with `base_url`. It records what it was sent, so tests can assert that
nothing was submitted or billed twice, and it can inject faults: error statuses (for one model only, if asked),
malformed bodies, items that error or expire, a batch held in progress, a creation that is accepted but answered
with an error, a stream whose connection drops in the middle of an event (`cut_streams_after`), and message
calls held until released (`hold_messages`), each noticing a caller that goes away meanwhile (`abandoned`).

`python -m tests.anthropic_fake [--port 0]` runs it on its own (for benchmarks), printing one
`listening on 127.0.0.1:PORT ` line.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_MALFORMED = object()
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

Answer = Callable[[dict[str, Any]], str]
ItemOutcome = Callable[[str, dict[str, Any]], str]
Judge = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Fault:
    """Answer the next `times` requests matching `method` and `path` (a regex) with `status` and `body`.

    `body=None` sends the API's error envelope for the status. With `after_handling`, the request is first
    served normally (a batch really gets created) and then answered with the fault, like a lost response.
    With `model`, only requests whose body names that model match.
    """

    method: str
    path: str
    status: int
    body: bytes | None = None
    times: int = 1
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    after_handling: bool = False
    model: str | None = None


@dataclass(frozen=True)
class SseStream:
    """A streamed answer: its events, sent one by one, `delay_s` apart."""

    events: list[dict[str, Any]]
    delay_s: float = 0.0
    cut_after: int | None = None  # send this many events and half the next one, then drop the connection


@dataclass
class FakeBatch:
    """A batch as the server holds it: its requests, how often it was polled, and its results once ended."""

    id: str
    requests: list[dict[str, Any]]
    created_at: datetime
    polls: int = 0
    status: str = "in_progress"
    ended_at: datetime | None = None
    cancel_initiated_at: datetime | None = None
    results: list[dict[str, Any]] = field(default_factory=list)


def _iso(when: datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when else None


def _token_count(text: str) -> int:
    return max(1, len(text) // 4)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def default_answer(params: dict[str, Any]) -> str:
    """A deterministic answer per (model, prompt), so repeated runs agree."""
    prompt = "".join(_text_of(m.get("content")) for m in params.get("messages", []))
    digest = hashlib.sha256(f"{params.get('model')}|{prompt}".encode()).hexdigest()[:8]
    return f"Answer {digest}."


def default_judge(params: dict[str, Any]) -> dict[str, Any]:
    """Pass a candidate answer when it contains the reference answer's text."""
    text = _text_of(params["messages"][-1]["content"])
    reference = re.search(r"<reference_answer>\s*(.*?)\s*</reference_answer>", text, re.S)
    candidate = re.search(r"<candidate_answer>\s*(.*?)\s*</candidate_answer>", text, re.S)
    passed = bool(reference and candidate and reference.group(1).strip() in candidate.group(1))
    return {"passed": passed, "reason": "matches the reference" if passed else "differs from the reference"}


class FakeAnthropic:
    """The fake API server; use as a context manager, then give `url` to the client as `base_url`."""

    def __init__(
        self,
        api_key: str = "sk-ant-test-key",
        answer: Answer = default_answer,
        item_outcome: ItemOutcome | None = None,
        judge: Judge = default_judge,
        polls_to_end: int = 1,
        stream_delay_s: float = 0.0,
        port: int = 0,
        base_path: str = "",
    ) -> None:
        self.api_key = api_key
        self.stream_delay_s = stream_delay_s
        self.base_path = base_path  # the API is served below it (a gateway's tenant path); `url` includes it
        self.answer = answer
        self.item_outcome = item_outcome
        self.judge = judge
        self.polls_to_end = polls_to_end
        self.faults: list[Fault] = []
        self.batches: dict[str, FakeBatch] = {}
        self.submissions: list[tuple[str, str]] = []
        self.billed: list[tuple[str, str]] = []
        self.message_calls: list[dict[str, Any]] = []
        self.log: list[tuple[str, str, int]] = []
        self.release = threading.Event()
        self.release.set()
        self.created = threading.Event()
        self.hold_create = threading.Event()
        self.hold_create.set()
        self.hold_messages = threading.Event()  # clear it to hold every POST /v1/messages until it is set again
        self.hold_messages.set()
        self.held = threading.Semaphore(0)  # released once for each message call that starts being held
        self.abandoned = threading.Semaphore(0)  # released once for each held call whose caller went away
        self.cut_streams_after: int | None = None  # the next stream is cut after this many events
        self._cached_prefixes: set[str] = set()
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.base_path}"

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.hold_create.set()
        self._server.shutdown()
        self._server.server_close()

    def fail(self, method: str, path: str, status: int, **kwargs: Any) -> None:
        """Queue a fault for the next matching request(s)."""
        self.faults.append(Fault(method, path, status, **kwargs))

    def submitted_ids(self) -> list[str]:
        """Every custom_id the server accepted, in order, repeats included."""
        return [custom_id for _, custom_id in self.submissions]

    # --- request handling -------------------------------------------------------------------------------

    def _take_fault(self, method: str, path: str, model: object = None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.model is not None and fault.model != model:
                    continue
                if fault.method == method and re.fullmatch(fault.path, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if method == "POST" and path == "/v1/messages/batches":
            return self._create_batch(body)
        if method == "GET" and path == "/v1/messages/batches":
            return self._list_batches(query)
        match = re.fullmatch(r"/v1/messages/batches/([^/]+)(/results|/cancel)?", path)
        if match:
            batch = self.batches.get(match.group(1))
            if batch is None:
                return 404, _error(404, f"message_batch {match.group(1)} not found")
            if method == "GET" and match.group(2) is None:
                return 200, self._retrieve(batch)
            if method == "GET" and match.group(2) == "/results":
                if batch.status != "ended":
                    return 400, _error(400, f"Batch {batch.id} has not finished processing; no results yet.")
                return 200, batch.results
            if method == "POST" and match.group(2) == "/cancel":
                return 200, self._cancel(batch)
        if method == "POST" and path == "/v1/messages":
            return self._message(body)
        if method == "POST" and path == "/v1/messages/count_tokens":
            return self._count_tokens(body)
        return 404, _error(404, f"{method} {path} is not an endpoint of this server")

    def _create_batch(self, body: Any) -> tuple[int, Any]:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return 400, _error(400, "requests: field required and must be a non-empty list")
        if len(requests) > 100_000:
            return 400, _error(400, "requests: a batch holds at most 100,000 requests")
        seen: set[str] = set()
        for index, request in enumerate(requests):
            custom_id = request.get("custom_id") if isinstance(request, dict) else None
            params = request.get("params") if isinstance(request, dict) else None
            if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
                return 400, _error(400, f"requests.{index}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$")
            if custom_id in seen:
                return 400, _error(400, f"requests.{index}.custom_id: duplicate custom_id {custom_id}")
            seen.add(custom_id)
            problem = _check_message_params(params)
            if problem:
                return 400, _error(400, f"requests.{index}.params.{problem}")
        with self._lock:
            batch = FakeBatch(f"msgbatch_01{secrets.token_hex(12)}", requests, datetime.now(UTC))
            self.batches[batch.id] = batch
            self.submissions.extend((batch.id, r["custom_id"]) for r in requests)
        self.created.set()
        self.hold_create.wait()
        return 200, self._retrieve(batch, poll=False)

    def _retrieve(self, batch: FakeBatch, poll: bool = True) -> dict[str, Any]:
        with self._lock:
            if poll and batch.status == "in_progress":
                batch.polls += 1
                if batch.polls >= self.polls_to_end and self.release.is_set():
                    self._finish(batch)
            return self._batch_json(batch)

    def _finish(self, batch: FakeBatch, canceled: bool = False) -> None:
        for request in batch.requests:
            custom_id, params = request["custom_id"], request["params"]
            outcome = "canceled" if canceled else "succeeded"
            if not canceled and self.item_outcome is not None:
                outcome = self.item_outcome(custom_id, params)
            batch.results.append({"custom_id": custom_id, "result": self._result(outcome, custom_id, params)})
        batch.status = "ended"
        batch.ended_at = datetime.now(UTC)

    def _result(self, outcome: str, custom_id: str, params: dict[str, Any]) -> dict[str, Any]:
        if outcome == "succeeded":
            self.billed.append((custom_id, params["model"]))
            text = self.answer(params)
            prompt = "".join(_text_of(m.get("content")) for m in params["messages"]) + _text_of(params.get("system"))
            output_tokens = min(_token_count(text), params["max_tokens"])
            message = _message_json(params["model"], [{"type": "text", "text": text}], "end_turn")
            message["usage"] = _usage(_token_count(prompt) + 8, output_tokens)
            return {"type": "succeeded", "message": message}
        if outcome == "errored":
            return {
                "type": "errored",
                "error": {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}},
            }
        if outcome == "invalid":
            return {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "prompt is too long"},
                },
            }
        return {"type": outcome}

    def _batch_json(self, batch: FakeBatch) -> dict[str, Any]:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch.status == "ended":
            for line in batch.results:
                counts[line["result"]["type"]] += 1
        else:
            counts["processing"] = len(batch.requests)
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": batch.status,
            "request_counts": counts,
            "created_at": _iso(batch.created_at),
            "expires_at": _iso(batch.created_at + timedelta(hours=24)),
            "ended_at": _iso(batch.ended_at),
            "cancel_initiated_at": _iso(batch.cancel_initiated_at),
            "archived_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch.id}/results" if batch.status == "ended" else None,
        }

    def _list_batches(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        limit = int(query.get("limit", ["20"])[0])
        with self._lock:
            newest_first = sorted(self.batches.values(), key=lambda b: b.created_at, reverse=True)
            ids = [b.id for b in newest_first]
            start = 0
            if "after_id" in query:
                start = ids.index(query["after_id"][0]) + 1 if query["after_id"][0] in ids else len(ids)
            page = newest_first[start : start + limit]
            data = [self._batch_json(b) for b in page]
        return 200, {
            "data": data,
            "has_more": start + limit < len(ids),
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def _cancel(self, batch: FakeBatch) -> dict[str, Any]:
        with self._lock:
            if batch.status == "in_progress":
                batch.cancel_initiated_at = datetime.now(UTC)
                self._finish(batch, canceled=True)
            return self._batch_json(batch)

    def _message(self, body: Any) -> tuple[int, Any]:
        problem = _check_message_params(body)
        if problem:
            return 400, _error(400, problem)
        with self._lock:
            self.message_calls.append(body)
        system = body.get("system")
        cached_tokens = 0
        if isinstance(system, list) and any("cache_control" in block for block in system):
            prefix = json.dumps([body.get("tools"), system], sort_keys=True)
            cached_tokens = _token_count(prefix)
            with self._lock:
                hit = prefix in self._cached_prefixes
                self._cached_prefixes.add(prefix)
        prompt_tokens = _token_count("".join(_text_of(m.get("content")) for m in body["messages"]))
        usage = _usage(prompt_tokens, 40, "standard")
        if cached_tokens:
            usage["cache_read_input_tokens" if hit else "cache_creation_input_tokens"] = cached_tokens
        if body.get("tools"):
            tool = body["tools"][0]["name"]
            content = [
                {"type": "tool_use", "id": f"toolu_01{secrets.token_hex(10)}", "name": tool, "input": self.judge(body)}
            ]
            message = _message_json(body["model"], content, "tool_use")
        else:
            text, stop_reason = _cut(self.answer(body), body["max_tokens"])
            usage["output_tokens"] = _token_count(text)
            message = _message_json(body["model"], [{"type": "text", "text": text}], stop_reason)
        message["usage"] = usage
        if body.get("stream"):
            with self._lock:
                cut, self.cut_streams_after = self.cut_streams_after, None
            return 200, SseStream(_sse_events(message), self.stream_delay_s, cut)
        return 200, message

    def _held_until_released(self, connection: socket.socket) -> bool:
        """Hold a message call while `hold_messages` is clear; False if its caller closed the connection first."""
        if self.hold_messages.is_set():
            return True
        self.held.release()
        while not self.hold_messages.wait(0.02):
            readable, _, _ = select.select([connection], [], [], 0)
            if readable and not connection.recv(1, socket.MSG_PEEK):
                self.abandoned.release()
                return False
        return True

    def _count_tokens(self, body: Any) -> tuple[int, Any]:
        problem = _check_message_params({"max_tokens": 1, **body} if isinstance(body, dict) else body)
        if problem:
            return 400, _error(400, problem)
        text = "".join(_text_of(m.get("content")) for m in body["messages"]) + _text_of(body.get("system"))
        return 200, {"input_tokens": _token_count(text)}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the tests read `fake.log` instead."""

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                bearer = (self.headers.get("authorization") or "").removeprefix("Bearer ")
                if fake.api_key not in (self.headers.get("x-api-key"), bearer):
                    return self._send(401, _error(401, "invalid x-api-key"))
                if not self.headers.get("anthropic-version"):
                    return self._send(400, _error(400, "anthropic-version: header is required"))
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = _MALFORMED
                inside = url.path.startswith(fake.base_path + "/")
                path = url.path[len(fake.base_path) :] if inside else f"{url.path} (outside {fake.base_path})"
                fault = fake._take_fault(method, path, body.get("model") if isinstance(body, dict) else None)
                if fault and not fault.after_handling:
                    return self._send_fault(fault)
                if body is _MALFORMED:
                    return self._send(400, _error(400, "There was an issue with the body of your request."))
                if (method, path) == ("POST", "/v1/messages") and not fake._held_until_released(self.connection):
                    self.close_connection = True
                    return None
                status, payload = fake._route(method, path, parse_qs(url.query), body)
                if fault:
                    return self._send_fault(fault)
                with fake._lock:
                    fake.log.append((method, url.path, status))
                if isinstance(payload, SseStream):
                    return self._send_stream(payload)
                if isinstance(payload, list):
                    lines = "".join(json.dumps(line) + "\n" for line in payload).encode()
                    return self._send_bytes(status, lines, "application/binary")
                return self._send(status, payload)

            def _send_fault(self, fault: Fault) -> None:
                with fake._lock:
                    fake.log.append(("FAULT", self.path, fault.status))
                body = fault.body if fault.body is not None else json.dumps(_error(fault.status)).encode()
                self._send_bytes(fault.status, body, fault.content_type, fault.headers)

            def _send_stream(self, stream: SseStream) -> None:
                try:
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("transfer-encoding", "chunked")
                    self.send_header("request-id", f"req_01{secrets.token_hex(12)}")
                    self.end_headers()
                    for index, event in enumerate(stream.events):
                        if index and stream.delay_s:
                            time.sleep(stream.delay_s)
                        chunk = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
                        if index == stream.cut_after:
                            self.wfile.write(b"%x\r\n%s" % (len(chunk), chunk[: len(chunk) // 2]))
                            self.wfile.flush()
                            self.close_connection = True
                            return
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send(self, status: int, payload: Any) -> None:
                self._send_bytes(status, json.dumps(payload).encode(), "application/json")

            def _send_bytes(
                self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
            ) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(body)))
                    self.send_header("request-id", f"req_01{secrets.token_hex(12)}")
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


def _error(status: int, message: str | None = None) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "api_error")
    text = message or {
        429: "Number of request tokens has exceeded your per-minute rate limit",
        529: "Overloaded",
        500: "Internal server error",
    }.get(status, kind)
    return {"type": "error", "error": {"type": kind, "message": text}, "request_id": f"req_01{secrets.token_hex(12)}"}


def _check_message_params(params: Any) -> str | None:
    """What the Messages API would reject in these params, or None."""
    if not isinstance(params, dict):
        return "params: must be an object"
    if not isinstance(params.get("model"), str) or not params["model"]:
        return "model: field required"
    if not isinstance(params.get("max_tokens"), int) or params["max_tokens"] < 1:
        return "max_tokens: field required (a positive integer)"
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: field required (a non-empty list)"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{index}.role: must be 'user' or 'assistant'"
        if not _text_of(message.get("content")):
            return f"messages.{index}.content: must be non-empty"
    return None


def _message_json(model: str, content: list[dict[str, Any]], stop_reason: str) -> dict[str, Any]:
    return {
        "id": f"msg_01{secrets.token_hex(12)}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
    }


def _usage(input_tokens: int, output_tokens: int, service_tier: str = "batch") -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": service_tier,
    }


def _cut(text: str, max_tokens: int) -> tuple[str, str]:
    """The answer as the API returns it: cut off after `max_tokens` tokens, with the stop reason that says so."""
    if _token_count(text) <= max_tokens:
        return text, "end_turn"
    return text[: max_tokens * 4], "max_tokens"


def _sse_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message as the Messages API streams it: start, one text block in a few deltas, delta with usage, stop."""
    usage = message["usage"]
    text = message["content"][0]["text"]
    step = max(1, len(text) // 3)
    return [
        {
            "type": "message_start",
            "message": {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}},
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text[at : at + step]}}
            for at in range(0, len(text), step)
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
        {"type": "message_stop"},
    ]


def main() -> None:
    """Serve the fake on its own until interrupted (benchmarks run it in a process of its own)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sk-ant-test-key")
    args = parser.parse_args()
    with FakeAnthropic(api_key=args.api_key, port=args.port) as fake:
        print(f"anthropic fake: listening on {fake.url.removeprefix('http://')} ", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
