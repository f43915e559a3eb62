"""Request validation: every bad input is refused with the offending field named, good ones pass through."""

from __future__ import annotations

import pytest
from tierwise.classifier.text import render_messages
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.validation import MalformedRequest, RequestError, lenient_deserializer, route_args

LIMIT = 1000


def field_of_error(request: pb.PredictRequest) -> str:
    with pytest.raises(RequestError) as caught:
        route_args(request, LIMIT)
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
    ],
)
def test_bad_requests_name_the_field(request_kwargs, field):
    assert field_of_error(pb.PredictRequest(**request_kwargs)) == field


def test_batch_items_are_named_by_index():
    with pytest.raises(RequestError) as caught:
        route_args(pb.PredictRequest(), LIMIT, prefix="requests[3].")
    assert caught.value.field == "requests[3].prompt"
    assert str(caught.value).startswith("requests[3].prompt: ")


def test_good_request_becomes_router_arguments():
    args = route_args(
        pb.PredictRequest(
            prompt="Prove that there are infinitely many primes.",
            request_id="r-1",
            quality_target=0.9,
            allowed_tiers=["sonnet", "opus"],
            mode=pb.COST,
            latency_band=pb.ASYNC,
        ),
        LIMIT,
    )
    assert args.request_id == "r-1"
    assert args.text == "Prove that there are infinitely many primes."
    assert args.quality_target == pytest.approx(0.9)
    assert args.allowed_tiers == ("sonnet", "opus")
    assert args.mode == "cost"
    assert args.use_batch_api is True


def test_defaults_threshold_mode_no_override_and_a_fresh_request_id():
    first = route_args(pb.PredictRequest(prompt="hi"), LIMIT)
    second = route_args(pb.PredictRequest(prompt="hi"), LIMIT)
    assert (first.mode, first.quality_target, first.allowed_tiers, first.use_batch_api) == (
        "threshold",
        None,
        None,
        False,
    )
    assert first.request_id and first.request_id != second.request_id


def test_messages_render_like_training_does():
    messages = [pb.ChatMessage(role="system", content="Be brief."), pb.ChatMessage(content="What is 2+2?")]
    args = route_args(pb.PredictRequest(messages=messages), LIMIT)
    assert args.text == render_messages(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    )


def test_quality_target_zero_is_an_override_not_unset():
    assert route_args(pb.PredictRequest(prompt="hi", quality_target=0.0), LIMIT).quality_target == 0.0


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
