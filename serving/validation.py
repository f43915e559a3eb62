"""Turning wire requests into router arguments, and bad ones into errors that name the offending field."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.protobuf import descriptor, empty_pb2, message, unknown_fields
from tierwise.classifier.errors import InputError
from tierwise.classifier.text import render_messages
from tierwise.serving.tierwise.v1 import router_pb2 as pb

_MODES = {pb.ROUTING_MODE_UNSPECIFIED: "threshold", pb.THRESHOLD: "threshold", pb.COST: "cost"}
MODE_ENUM = {"threshold": pb.THRESHOLD, "cost": pb.COST}
_BANDS = {
    pb.LATENCY_BAND_UNSPECIFIED: "interactive",
    pb.INTERACTIVE: "interactive",
    pb.TOLERANT: "tolerant",
    pb.ASYNC: "async",
}


class RequestError(InputError):
    """A request the caller got wrong; `field` is the path of the offending field, e.g. `requests[2].prompt`."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


@dataclass(frozen=True)
class MalformedRequest:
    """What the lenient deserializer hands over when the bytes are not a valid message."""

    error: RequestError


@dataclass(slots=True)
class RouteArgs:
    """One validated request: the text to classify and how to choose its tier."""

    request_id: str
    text: str
    quality_target: float | None
    allowed_tiers: tuple[str, ...] | None
    mode: str
    band: str
    max_latency_ms: float | None
    value_of_time_usd_per_s: float | None
    messages: Sequence[pb.ChatMessage] = ()  # the request's chat messages, for the decision log
    allow_explore: bool = True  # PredictRequest.allow_explore: unset means allowed

    @property
    def use_batch_api(self) -> bool:
        return self.band == "async"

    @property
    def policy_key(self) -> tuple[object, ...]:
        """Requests sharing this key can be classified in one batch."""
        return (
            self.quality_target,
            self.allowed_tiers,
            self.mode,
            self.band,
            self.max_latency_ms,
            self.value_of_time_usd_per_s,
        )


_ID_PREFIX = os.urandom(6).hex()
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """A unique id for a request that came without one: a per-process random prefix and a counter.

    Cheaper than uuid4 on the hot path, and as unique in practice (48 random bits per server process).
    """
    return f"{_ID_PREFIX}-{next(_id_counter):x}"


def lenient_deserializer(message_type: type[message.Message]) -> Callable[[bytes], object]:
    """A request deserializer that never raises, so bad bytes become INVALID_ARGUMENT instead of INTERNAL.

    proto3 rejects invalid UTF-8 in `string` fields while parsing; gRPC would answer that with a bare
    INTERNAL. This one returns a `MalformedRequest` naming the field with the bad bytes.
    """

    def deserialize(data: bytes) -> object:
        try:
            return message_type.FromString(data)
        except message.DecodeError:
            where = invalid_utf8_field(message_type.DESCRIPTOR, data)
            if where is not None:
                return MalformedRequest(RequestError(where, "is not valid UTF-8"))
            return MalformedRequest(RequestError("request", f"is not a valid {message_type.DESCRIPTOR.name}"))

    return deserialize


def invalid_utf8_field(desc: descriptor.Descriptor, data: bytes, prefix: str = "") -> str | None:
    """Path of the first string field in `data` (a serialized `desc`) holding invalid UTF-8, if any."""
    try:
        fields = unknown_fields.UnknownFieldSet(empty_pb2.Empty.FromString(data))
    except message.DecodeError:
        return None
    seen: dict[int, int] = {}
    for item in fields:
        field = desc.fields_by_number.get(item.field_number)
        if field is None or item.wire_type != 2:
            continue
        index = seen.get(item.field_number, 0)
        seen[item.field_number] = index + 1
        path = prefix + field.name + (f"[{index}]" if field.is_repeated else "")
        if field.type == descriptor.FieldDescriptor.TYPE_STRING:
            try:
                item.data.decode("utf-8")
            except UnicodeDecodeError:
                return path
        elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            found = invalid_utf8_field(field.message_type, item.data, path + ".")
            if found is not None:
                return found
    return None


def route_args(request: pb.PredictRequest, max_prompt_bytes: int, prefix: str = "") -> RouteArgs:
    """Validate one request and extract what the router needs; raises RequestError naming the field."""
    if request.messages:
        if request.prompt:
            raise RequestError(prefix + "prompt", "set either prompt or messages, not both")
        text = _messages_text(request, max_prompt_bytes, prefix)
    else:
        text = request.prompt
        if not text or text.isspace():
            raise RequestError(prefix + "prompt", "must not be empty (set prompt or messages)")
        _check_size(prefix + "prompt", text, max_prompt_bytes)
    quality_target = request.quality_target if request.HasField("quality_target") else None
    mode = _MODES.get(request.mode)
    if mode is None:
        raise RequestError(prefix + "mode", f"unknown routing mode {request.mode}")
    band = _BANDS.get(request.latency_band)
    if band is None:
        raise RequestError(prefix + "latency_band", f"unknown latency band {request.latency_band}")
    return RouteArgs(
        request_id=request.request_id or new_request_id(),
        text=text,
        quality_target=quality_target,
        allowed_tiers=tuple(request.allowed_tiers) or None,
        mode=mode,
        band=band,
        max_latency_ms=request.max_latency_ms if request.HasField("max_latency_ms") else None,
        value_of_time_usd_per_s=(
            request.value_of_time_usd_per_s if request.HasField("value_of_time_usd_per_s") else None
        ),
        messages=request.messages,
        allow_explore=request.allow_explore if request.HasField("allow_explore") else True,
    )


def _messages_text(request: pb.PredictRequest, max_prompt_bytes: int, prefix: str) -> str:
    if all(not m.content or m.content.isspace() for m in request.messages):
        raise RequestError(prefix + "messages", "no message has any content")
    text = render_messages([{"role": m.role or "user", "content": m.content} for m in request.messages])
    _check_size(prefix + "messages", text, max_prompt_bytes)
    return text


def _check_size(field: str, text: str, max_bytes: int) -> None:
    # A character is 1 to 4 bytes of UTF-8: most prompts are decided without encoding them.
    if len(text) * 4 <= max_bytes:
        return
    size = len(text) if len(text) > max_bytes else len(text.encode("utf-8"))
    if size > max_bytes:
        raise RequestError(field, f"is over the size limit ({size} > {max_bytes} bytes)")
