"""Protobuf in and out of the routing request: `PredictRequest` <-> `RouteRequest`, bytes that do not decode as a
message turned into a `FieldError` naming the field, and a `Decision` as a `PredictResponse`.

The request type checks every field itself (`tierwise.classifier.request`); this module only translates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf import descriptor, empty_pb2, message, unknown_fields
from tierwise.classifier.decider import Decision
from tierwise.classifier.limits import FieldError
from tierwise.classifier.request import NUMBERS, Conversation, Message, RouteOptions, RouteRequest
from tierwise.serving.tierwise.v1 import router_pb2 as pb

# Wire enums by name, unspecified as None (unset); an unknown number is passed on as it is, for RouteOptions to refuse.
MODE_ENUM = {None: pb.ROUTING_MODE_UNSPECIFIED, "threshold": pb.THRESHOLD, "cost": pb.COST}
_MODES = {number: name for name, number in MODE_ENUM.items()}
BAND_ENUM = {
    None: pb.LATENCY_BAND_UNSPECIFIED,
    "interactive": pb.INTERACTIVE,
    "tolerant": pb.TOLERANT,
    "async": pb.ASYNC,
}
_BANDS = {number: name for name, number in BAND_ENUM.items()}
# Options already built, by their wire values: most traffic repeats a few sets of options, each checked once.
_SEEN_OPTIONS: dict[tuple[object, ...], RouteOptions] = {}
_SEEN_OPTIONS_MAX = 4096


@dataclass(frozen=True)
class MalformedRequest:
    """What the lenient deserializer hands over when the bytes are not a valid message."""

    error: FieldError


def route_request(request: pb.PredictRequest, max_prompt_bytes: int) -> RouteRequest:
    """The routing request a PredictRequest carries; FieldError names a bad field, or a text over the server's
    `--max-prompt-bytes`."""
    messages = tuple(Message(m.role or "user", m.content) for m in request.messages) if request.messages else ()
    conversation = None
    if request.HasField("conversation"):
        wire = request.conversation
        try:
            conversation = Conversation(wire.warm_tier, wire.cached_tokens, wire.output_tokens)
        except FieldError as exc:
            raise exc.within("conversation.") from None
    routed = RouteRequest(request.prompt, messages, _options(request), request.request_id, conversation)
    routed.check_bytes(max_prompt_bytes)
    return routed


def _options(request: pb.PredictRequest) -> RouteOptions:
    """The request's RouteOptions, built (and so checked) once per distinct set of options a server sees."""
    has = request.HasField
    key = (
        *[getattr(request, name) if has(name) else None for name in NUMBERS],
        request.allow_explore if has("allow_explore") else True,
        request.latency_band,
        request.mode,
        request.workload,
        *request.allowed_tiers,
    )
    options = _SEEN_OPTIONS.get(key)
    if options is None:
        options = RouteOptions(
            allowed_tiers=tuple(request.allowed_tiers),
            latency_band=_BANDS.get(request.latency_band, str(request.latency_band)),
            mode=_MODES.get(request.mode, str(request.mode)),
            allow_explore=key[len(NUMBERS)],
            workload=request.workload or None,
            **{name: value for name, value in zip(NUMBERS, key, strict=False) if value is not None},
        )
        if len(_SEEN_OPTIONS) >= _SEEN_OPTIONS_MAX:
            _SEEN_OPTIONS.clear()
        _SEEN_OPTIONS[key] = options
    return options


def wire_request(request: RouteRequest) -> pb.PredictRequest:
    """The PredictRequest that asks a server for this routing request."""
    options = request.options
    wire = pb.PredictRequest(
        prompt=request.prompt,
        messages=[pb.ChatMessage(role=m.role, content=m.content) for m in request.messages],
        request_id=request.request_id,
        allowed_tiers=options.allowed_tiers,
        latency_band=BAND_ENUM[options.latency_band],
        mode=MODE_ENUM[options.mode],
        workload=options.workload or "",
    )
    for name in NUMBERS:
        if getattr(options, name) is not None:
            setattr(wire, name, getattr(options, name))
    if not options.allow_explore:
        wire.allow_explore = False
    if request.conversation is not None:
        wire.conversation.warm_tier = request.conversation.warm_tier
        wire.conversation.cached_tokens = request.conversation.cached_tokens
        wire.conversation.output_tokens = request.conversation.output_tokens
    return wire


def predict_response(decision: Decision) -> pb.PredictResponse:
    """A decision as the Predict RPC answers it."""
    prediction = decision.prediction
    response = pb.PredictResponse(
        request_id=decision.request_id,
        tier=prediction.tier,
        model=prediction.model,
        probabilities=prediction.probabilities,
        fallback_chain=prediction.fallback_chain,
        model_version=decision.model_version,
        inference_us=decision.inference_us,
        quality_target=prediction.quality_target,
        mode=MODE_ENUM[prediction.mode],
        use_batch_api=decision.use_batch_api,
        latency_budget_met=prediction.latency_budget_met,
        explored=decision.explored,
        propensity=decision.propensity,
        kept_warm=prediction.kept_warm,
    )
    if prediction.expected_cost_usd is not None:
        response.expected_cost_usd = prediction.expected_cost_usd
    if prediction.expected_latency_ms is not None:
        response.expected_latency_ms = prediction.expected_latency_ms
    return response


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
                return MalformedRequest(FieldError(where, "is not valid UTF-8"))
            return MalformedRequest(FieldError("request", f"is not a valid {message_type.DESCRIPTOR.name}"))

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
