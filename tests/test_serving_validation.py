"""Protobuf and the routing request: a PredictRequest becomes a RouteRequest (which refuses a bad field, named as the
wire names it) and back; bytes that do not decode are a named field error, never an exception."""

from __future__ import annotations

import pytest
from tierwise.classifier.limits import FieldError
from tierwise.classifier.request import Message, RouteOptions, RouteRequest
from tierwise.classifier.text import render_messages
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.validation import MalformedRequest, lenient_deserializer, route_request, wire_request

LIMIT = 1000


def field_of_error(request: pb.PredictRequest) -> str:
    with pytest.raises(FieldError) as caught:
        route_request(request, LIMIT)
    return caught.value.field


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({}, "prompt"),
        ({"prompt": " \n\t"}, "prompt"),
        ({"prompt": "hi", "messages": [pb.ChatMessage(role="user", content="hi")]}, "prompt"),
        ({"messages": [pb.ChatMessage(role="user", content="  ")]}, "messages"),
        ({"prompt": "x" * (LIMIT + 1)}, "prompt"),
        ({"prompt": "é" * (LIMIT // 2 + 1)}, "prompt"),  # under the limit in characters, over it in bytes
        ({"messages": [pb.ChatMessage(role="user", content="x" * LIMIT)]}, "messages"),
        ({"prompt": "hi", "mode": 7}, "mode"),
        ({"prompt": "hi", "latency_band": 9}, "latency_band"),
        ({"prompt": "hi", "quality_target": 1.5}, "quality_target"),
        ({"prompt": "hi", "max_latency_ms": -1.0}, "max_latency_ms"),
        ({"prompt": "hi", "allowed_tiers": ["haiku", "t" * 65]}, "allowed_tiers[1]"),
        ({"prompt": "hi", "request_id": "r" * 129}, "request_id"),
    ],
)
def test_bad_requests_name_the_field(request_kwargs, field):
    assert field_of_error(pb.PredictRequest(**request_kwargs)) == field


def test_a_request_becomes_the_routing_request():
    routed = route_request(
        pb.PredictRequest(
            prompt="Prove that there are infinitely many primes.",
            request_id="r-1",
            quality_target=0.9,
            allowed_tiers=["sonnet", "opus"],
            mode=pb.COST,
            latency_band=pb.ASYNC,
            allow_explore=False,
        ),
        LIMIT,
    )
    assert routed == RouteRequest(
        "Prove that there are infinitely many primes.",
        options=RouteOptions(
            quality_target=0.9, allowed_tiers=("sonnet", "opus"), mode="cost", latency_band="async", allow_explore=False
        ),
        request_id="r-1",
    )


def test_unset_fields_are_the_defaults():
    routed = route_request(pb.PredictRequest(prompt="hi"), LIMIT)
    assert routed == RouteRequest("hi") and routed.options == RouteOptions()
    assert route_request(pb.PredictRequest(prompt="hi", quality_target=0.0), LIMIT).options.quality_target == 0.0


def test_messages_render_like_training_does():
    messages = [pb.ChatMessage(role="system", content="Be brief."), pb.ChatMessage(content="What is 2+2?")]
    routed = route_request(pb.PredictRequest(messages=messages), LIMIT)
    assert routed.messages == (Message("system", "Be brief."), Message("user", "What is 2+2?"))
    assert routed.text == render_messages(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    )


@pytest.mark.parametrize(
    "routed",
    [
        RouteRequest("hi"),
        RouteRequest(
            messages=(Message("system", "Be brief."), Message("user", "2+2?")),
            options=RouteOptions(
                quality_target=0.0,
                allowed_tiers=("haiku",),
                latency_band="tolerant",
                mode="cost",
                max_latency_ms=900.0,
                value_of_time_usd_per_s=0.5,
                allow_explore=False,
            ),
            request_id="r-2",
        ),
    ],
)
def test_the_client_sends_what_the_server_reads(routed):
    assert route_request(pb.PredictRequest.FromString(wire_request(routed).SerializeToString()), LIMIT) == routed


def _with_invalid_utf8(message, marker: str) -> bytes:
    data = message.SerializeToString()
    assert data.count(marker.encode()) == 1
    return data.replace(marker.encode(), b"\xff\xfe")


@pytest.mark.parametrize(
    ("message", "marker", "path"),
    [
        (pb.PredictRequest(prompt="AB"), "AB", "prompt"),
        (pb.PredictRequest(prompt="hi", request_id="AB"), "AB", "request_id"),
        (
            pb.PredictRequest(messages=[pb.ChatMessage(role="user", content="ok"), pb.ChatMessage(content="AB")]),
            "AB",
            "messages[1].content",
        ),
        (pb.PredictRequest(prompt="hi", allowed_tiers=["haiku", "AB"]), "AB", "allowed_tiers[1]"),
    ],
)
def test_invalid_utf8_becomes_a_named_field_error(message, marker, path):
    decoded = lenient_deserializer(pb.PredictRequest)(_with_invalid_utf8(message, marker))
    assert isinstance(decoded, MalformedRequest)
    assert decoded.error.field == path
    assert "UTF-8" in str(decoded.error)


def test_invalid_utf8_inside_a_batch_names_the_item():
    batch = pb.PredictBatchRequest(requests=[pb.PredictRequest(prompt="fine"), pb.PredictRequest(prompt="AB")])
    decoded = lenient_deserializer(pb.PredictBatchRequest)(_with_invalid_utf8(batch, "AB"))
    assert isinstance(decoded, MalformedRequest)
    assert decoded.error.field == "requests[1].prompt"


def test_garbage_bytes_are_a_malformed_request_not_an_exception():
    decoded = lenient_deserializer(pb.PredictRequest)(b"\xff\xff\xff\xff")
    assert isinstance(decoded, MalformedRequest)
    assert decoded.error.field == "request"


def test_valid_bytes_decode_normally():
    request = pb.PredictRequest(prompt="héllo", quality_target=0.5)
    assert lenient_deserializer(pb.PredictRequest)(request.SerializeToString()) == request


def test_options_are_built_once_per_distinct_set_and_the_memory_of_them_is_bounded():
    from tierwise.serving import validation

    first = route_request(pb.PredictRequest(prompt="a", quality_target=0.5), LIMIT)
    again = route_request(pb.PredictRequest(prompt="b", quality_target=0.5), LIMIT)
    assert again.options is first.options
    for i in range(validation._SEEN_OPTIONS_MAX + 10):
        route_request(pb.PredictRequest(prompt="c", quality_target=i / 10_000), LIMIT)
    assert len(validation._SEEN_OPTIONS) <= validation._SEEN_OPTIONS_MAX
