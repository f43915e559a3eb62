"""A local stand-in for the Anthropic and OpenAI APIs, for trying tierwise offline and for tests that cannot reach
the network (`tierwise stand-in` runs it).

It speaks, with the real paths, JSON shapes, headers and status codes:
- Anthropic (any `claude-*` model; `anthropic-version` required): Messages, streamed (SSE, sent event by event)
  and not, with tool use (a judge's verdict), stop sequences, answers cut off at `max_tokens`, and prompt-caching
  usage; count_tokens; the Message Batches API (create / retrieve / list / cancel, results as JSONL); models.
- OpenAI (any model name, a local model's too): Chat Completions, streamed (`data:` chunks ending with
  `data: [DONE]`) and not, with `finish_reason` stop/length, usage with `cached_tokens`; models.
`GET /v1/models` answers in the format of whichever API asks (Anthropic's sends `anthropic-version`). One key is
accepted, as `x-api-key` or `authorization: Bearer`; errors come in each API's own format. Prompt caching
follows `standin_cache.py`. Any other path is answered 404 and logged, so tests see which paths reached it
(`base_path` puts the APIs below a path, as a gateway's tenant prefix). Answers are deterministic per (model,
prompt) (`standin_text.default_answer`), and so are batch ids on a fresh server.

It records what it was sent, so tests can assert that nothing was submitted or billed twice, and it can inject
faults: error statuses (for one model only, if asked), malformed bodies, items that error or expire, a batch held
in progress, a creation that is accepted but answered with an error, a stream whose connection drops in the
middle of an event (`cut_streams_after`), and message calls held until released (`hold_messages`), each noticing
a caller that goes away meanwhile (`abandoned`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tierwise.classifier.tiers import TierLadder
from tierwise.serving import standin_chat as chat
from tierwise.serving import standin_messages as messages
from tierwise.serving.standin_cache import PromptCache
from tierwise.serving.standin_defaults import STAND_IN_KEY
from tierwise.serving.standin_text import Answer, Judge, default_answer, default_judge, finish, text_of, token_count

ANTHROPIC, OPENAI = "anthropic", "openai"
ANSWERED_CALLS = {"/v1/messages", "/v1/chat/completions"}  # the calls `hold_messages` holds
_MALFORMED = object()
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

ItemOutcome = Callable[[str, dict[str, Any]], str]
log = logging.getLogger("tierwise.standin")


class _Server(ThreadingHTTPServer):
    """The stand-in's HTTP server: a caller that goes away mid-answer is not an error (real APIs shrug it off);
    anything else a handler raises is logged, not printed to stderr."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        log.exception("stand-in: failed answering %s", client_address)


@dataclass
class Fault:
    """Answer the next `times` requests matching `method` and `path` (a regex) with `status` and `body`.

    `body=None` sends the API's error body for the status (in the format of the API the path belongs to). With
    `after_handling`, the request is first served normally (a batch really gets created) and then answered with
    the fault, like a lost response. With `model`, only requests whose body names that model match.
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
    """A streamed answer: its frames, sent one by one, `delay_s` apart."""

    frames: list[bytes]
    delay_s: float = 0.0
    cut_after: int | None = None  # send this many frames and half the next one, then drop the connection


@dataclass
class Batch:
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


def api_of(path: str, anthropic_version: str | None) -> str:
    """Which API a request is for: Chat Completions and models asked without `anthropic-version` are OpenAI's."""
    if path == "/v1/chat/completions":
        return OPENAI
    if (path == "/v1/models" or path.startswith("/v1/models/")) and not anthropic_version:
        return OPENAI
    return ANTHROPIC


def error_body(api: str, status: int, message: str | None = None) -> dict[str, Any]:
    """The error body of `api` for a status."""
    return chat.error_body(status, message) if api == OPENAI else messages.error_body(status, message)


class StandIn:
    """The stand-in server; use as a context manager, then give `url` to a client as its base URL."""

    def __init__(
        self,
        api_key: str = STAND_IN_KEY,
        answer: Answer = default_answer,
        item_outcome: ItemOutcome | None = None,
        judge: Judge = default_judge,
        polls_to_end: int = 1,
        stream_delay_s: float = 0.0,
        port: int = 0,
        base_path: str = "",
        host: str = "127.0.0.1",
        cache: PromptCache | None = None,
    ) -> None:
        self.api_key = api_key
        self.stream_delay_s = stream_delay_s
        self.base_path = base_path  # the APIs are served below it (a gateway's tenant path); `url` includes it
        self.answer = answer
        self.item_outcome = item_outcome
        self.judge = judge
        self.polls_to_end = polls_to_end
        self.cache = cache or PromptCache()
        self.models = [tier.model for tier in TierLadder.load().tiers]  # listed by /v1/models, with every one asked
        self.faults: list[Fault] = []
        self.batches: dict[str, Batch] = {}
        self.submissions: list[tuple[str, str]] = []
        self.billed: list[tuple[str, str]] = []
        self.message_calls: list[dict[str, Any]] = []
        self.chat_calls: list[dict[str, Any]] = []
        self.log: list[tuple[str, str, int]] = []
        self.release = threading.Event()
        self.release.set()
        self.created = threading.Event()
        self.hold_create = threading.Event()
        self.hold_create.set()
        self.hold_messages = threading.Event()  # clear it to hold every answered call until it is set again
        self.hold_messages.set()
        self.held = threading.Semaphore(0)  # released once for each answered call that starts being held
        self.abandoned = threading.Semaphore(0)  # released once for each held call whose caller went away
        self.cut_streams_after: int | None = None  # the next stream is cut after this many frames
        self._lock = threading.RLock()
        self._server = _Server((host, port), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def reset(self, answer: Answer = default_answer) -> StandIn:
        """As new for the next test on a shared server: nothing recorded, no fault queued, held or cut."""
        with self._lock:
            self.message_calls.clear()
            self.chat_calls.clear()
            self.log.clear()
            self.faults.clear()
            self.answer = answer
            self.cut_streams_after = None
        self.hold_messages.set()
        return self

    @property
    def address(self) -> str:
        """HOST:PORT it listens on."""
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        """The Anthropic base URL (the OpenAI one is this plus `/v1`)."""
        return f"http://{self.address}{self.base_path}"

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.hold_create.set()
        self.hold_messages.set()
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

    def _route(self, api: str, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if path == "/v1/models" and method == "GET":
            return 200, self._models_page(api)
        if path.startswith("/v1/models/") and method == "GET":
            model = path.removeprefix("/v1/models/")
            if model not in self._listed(api):
                return 404, error_body(api, 404, f"model: {model}")
            return 200, chat.model_json(model) if api == OPENAI else messages.model_json(model)
        if (method, path) == ("POST", "/v1/chat/completions"):
            return self._chat(body)
        if method == "POST" and path == "/v1/messages/batches":
            return self._create_batch(body)
        if method == "GET" and path == "/v1/messages/batches":
            return self._list_batches(query)
        match = re.fullmatch(r"/v1/messages/batches/([^/]+)(/results|/cancel)?", path)
        if match:
            batch = self.batches.get(match.group(1))
            if batch is None:
                return 404, messages.error_body(404, f"message_batch {match.group(1)} not found")
            if method == "GET" and match.group(2) is None:
                return 200, self._retrieve(batch)
            if method == "GET" and match.group(2) == "/results":
                if batch.status != "ended":
                    unfinished = f"Batch {batch.id} has not finished processing; no results yet."
                    return 400, messages.error_body(400, unfinished)
                return 200, batch.results
            if method == "POST" and match.group(2) == "/cancel":
                return 200, self._cancel(batch)
        if method == "POST" and path == "/v1/messages":
            return self._message(body)
        if method == "POST" and path == "/v1/messages/count_tokens":
            return self._count_tokens(body)
        return 404, error_body(api, 404, f"{method} {path} is not an endpoint of this server")

    def _listed(self, api: str) -> list[str]:
        with self._lock:
            return [m for m in self.models if api == OPENAI or m.startswith(messages.MODEL_PREFIX)]

    def _models_page(self, api: str) -> dict[str, Any]:
        listed = self._listed(api)
        return chat.models_page(listed) if api == OPENAI else messages.models_page(listed)

    def _asked_for(self, model: str) -> None:
        with self._lock:
            if model not in self.models:
                self.models.append(model)

    def _create_batch(self, body: Any) -> tuple[int, Any]:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return 400, messages.error_body(400, "requests: field required and must be a non-empty list")
        if len(requests) > 100_000:
            return 400, messages.error_body(400, "requests: a batch holds at most 100,000 requests")
        seen: set[str] = set()
        for index, request in enumerate(requests):
            custom_id = request.get("custom_id") if isinstance(request, dict) else None
            params = request.get("params") if isinstance(request, dict) else None
            if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
                return 400, messages.error_body(400, f"requests.{index}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$")
            if custom_id in seen:
                return 400, messages.error_body(400, f"requests.{index}.custom_id: duplicate custom_id {custom_id}")
            seen.add(custom_id)
            problem = messages.check_params(params) or _unknown_model(params["model"])
            if problem:
                return 400, messages.error_body(400, f"requests.{index}.params.{problem}")
        with self._lock:
            content = json.dumps([len(self.batches), requests], sort_keys=True).encode()
            batch = Batch(f"msgbatch_01{hashlib.sha256(content).hexdigest()[:24]}", requests, datetime.now(UTC))
            self.batches[batch.id] = batch
            self.submissions.extend((batch.id, r["custom_id"]) for r in requests)
        self.created.set()
        self.hold_create.wait()
        return 200, self._retrieve(batch, poll=False)

    def _retrieve(self, batch: Batch, poll: bool = True) -> dict[str, Any]:
        with self._lock:
            if poll and batch.status == "in_progress":
                batch.polls += 1
                if batch.polls >= self.polls_to_end and self.release.is_set():
                    self._finish(batch)
            return self._batch_json(batch)

    def _finish(self, batch: Batch, canceled: bool = False) -> None:
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
            finished = finish(self.answer(params), params["max_tokens"], params.get("stop_sequences") or [])
            prompt = "".join(text_of(m.get("content")) for m in params["messages"]) + text_of(params.get("system"))
            message = messages.message_json(params["model"], [{"type": "text", "text": finished.text}], finished)
            message["usage"] = messages.usage_json(token_count(prompt) + 8, token_count(finished.text))
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

    def _batch_json(self, batch: Batch) -> dict[str, Any]:
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

    def _cancel(self, batch: Batch) -> dict[str, Any]:
        with self._lock:
            if batch.status == "in_progress":
                batch.cancel_initiated_at = datetime.now(UTC)
                self._finish(batch, canceled=True)
            return self._batch_json(batch)

    def _message(self, body: Any) -> tuple[int, Any]:
        problem = messages.check_params(body)
        if problem:
            return 400, messages.error_body(400, problem)
        if _unknown_model(body["model"]):
            return 404, messages.error_body(404, f"model: {body['model']}")
        with self._lock:
            self.message_calls.append(body)
        self._asked_for(body["model"])
        segments = messages.cache_segments(body)
        cached = self.cache.anthropic(body["model"], segments)
        prompt_tokens = max(1, sum(segment.tokens for segment in segments) - cached.read - cached.written)
        usage = messages.usage_json(prompt_tokens, 40, "standard")
        usage["cache_read_input_tokens"] = cached.read
        usage["cache_creation_input_tokens"] = cached.written
        if body.get("tools"):
            tool = body["tools"][0]["name"]
            content = [
                {"type": "tool_use", "id": f"toolu_01{secrets.token_hex(10)}", "name": tool, "input": self.judge(body)}
            ]
            message = messages.message_json(body["model"], content, None)
        else:
            finished = finish(self.answer(body), body["max_tokens"], body.get("stop_sequences") or [])
            usage["output_tokens"] = token_count(finished.text)
            message = messages.message_json(body["model"], [{"type": "text", "text": finished.text}], finished)
        message["usage"] = usage
        if body.get("stream"):
            return 200, self._stream([messages.sse_frame(event) for event in messages.sse_events(message)])
        return 200, message

    def _chat(self, body: Any) -> tuple[int, Any]:
        problem = chat.check_params(body)
        if problem:
            param, why = problem
            return 400, {"error": {**chat.error_body(400, f"{param}: {why}")["error"], "param": param}}
        with self._lock:
            self.chat_calls.append(body)
        self._asked_for(body["model"])
        segments = chat.cache_segments(body)
        cached = self.cache.openai(body["model"], segments)
        finished = finish(self.answer(body), chat.max_tokens(body), chat.stops(body))
        usage = chat.usage_json(chat.prompt_tokens(segments), token_count(finished.text), cached)
        completion = chat.completion_json(body["model"], finished, usage)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            frames = [chat.sse_frame(chunk) for chunk in chat.chunks(completion, include_usage)]
            return 200, self._stream([*frames, chat.sse_frame(None)])
        return 200, completion

    def _stream(self, frames: list[bytes]) -> SseStream:
        with self._lock:
            cut, self.cut_streams_after = self.cut_streams_after, None
        return SseStream(frames, self.stream_delay_s, cut)

    def _held_until_released(self, connection: socket.socket) -> bool:
        """Hold an answered call while `hold_messages` is clear; False if its caller closed the connection first."""
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
        problem = messages.check_params({"max_tokens": 1, **body} if isinstance(body, dict) else body)
        if problem:
            return 400, messages.error_body(400, problem)
        text = "".join(text_of(m.get("content")) for m in body["messages"]) + text_of(body.get("system"))
        return 200, {"input_tokens": token_count(text)}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the tests read `stand_in.log` instead."""

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                inside = url.path.startswith(stand_in.base_path + "/")
                path = url.path[len(stand_in.base_path) :] if inside else f"{url.path} (outside {stand_in.base_path})"
                api = api_of(path, self.headers.get("anthropic-version"))
                bearer = (self.headers.get("authorization") or "").removeprefix("Bearer ")
                if stand_in.api_key not in (self.headers.get("x-api-key"), bearer):
                    return self._send(401, error_body(api, 401, "invalid x-api-key" if api == ANTHROPIC else None))
                if api == ANTHROPIC and not self.headers.get("anthropic-version"):
                    return self._send(400, messages.error_body(400, "anthropic-version: header is required"))
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = _MALFORMED
                fault = stand_in._take_fault(method, path, body.get("model") if isinstance(body, dict) else None)
                if fault and not fault.after_handling:
                    return self._send_fault(fault, api)
                if body is _MALFORMED:
                    return self._send(400, error_body(api, 400, "There was an issue with the body of your request."))
                if method == "POST" and path in ANSWERED_CALLS and not stand_in._held_until_released(self.connection):
                    self.close_connection = True
                    return None
                status, payload = stand_in._route(api, method, path, parse_qs(url.query), body)
                if fault:
                    return self._send_fault(fault, api)
                with stand_in._lock:
                    stand_in.log.append((method, url.path, status))
                if isinstance(payload, SseStream):
                    return self._send_stream(payload)
                if isinstance(payload, list):
                    lines = "".join(json.dumps(line) + "\n" for line in payload).encode()
                    return self._send_bytes(status, lines, "application/binary")
                return self._send(status, payload)

            def _send_fault(self, fault: Fault, api: str) -> None:
                with stand_in._lock:
                    stand_in.log.append(("FAULT", self.path, fault.status))
                body = fault.body if fault.body is not None else json.dumps(error_body(api, fault.status)).encode()
                self._send_bytes(fault.status, body, fault.content_type, fault.headers)

            def _send_stream(self, stream: SseStream) -> None:
                try:
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("transfer-encoding", "chunked")
                    self.send_header("request-id", f"req_01{secrets.token_hex(12)}")
                    self.end_headers()
                    for index, frame in enumerate(stream.frames):
                        if index and stream.delay_s:
                            time.sleep(stream.delay_s)
                        if index == stream.cut_after:
                            self.wfile.write(b"%x\r\n%s" % (len(frame), frame[: len(frame) // 2]))
                            self.wfile.flush()
                            self.close_connection = True
                            return
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
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


def _unknown_model(model: str) -> str | None:
    """Why the Anthropic side does not answer this model, or None (it answers any `claude-*`)."""
    return None if model.startswith(messages.MODEL_PREFIX) else f"model: {model}"


def serve_stand_in(host: str, port: int, api_key: str, echo: Callable[[str], None]) -> None:
    """Run the stand-in until SIGINT or SIGTERM, after telling the user the key and base URLs to use."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with StandIn(api_key=api_key, port=port, host=host) as stand_in:
        echo(f"stand-in API listening on {stand_in.address} (Anthropic Messages and Batches, OpenAI Chat Completions)")
        echo(f"export ANTHROPIC_API_KEY={api_key} ANTHROPIC_BASE_URL={stand_in.url}")
        echo(f"export OPENAI_API_KEY={api_key} OPENAI_BASE_URL={stand_in.url}/v1")
        echo(f"export TIERWISE_UPSTREAM={stand_in.url}")
        echo("Ctrl-C stops it.")
        stop.wait()
