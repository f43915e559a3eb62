"""The one routing request: every bad field is refused where the request is built, named as the wire names it,
with the limit from classifier/limits.py; a good request is normalised once and compares by value."""

from __future__ import annotations

import dataclasses
import math

import pytest
from tierwise.classifier.limits import ALLOWED_TIERS, IDENTIFIER, MESSAGES, PROMPT, REQUEST_ID, TIER_NAME, FieldError
from tierwise.classifier.request import Message, RouteOptions, RouteRequest
from tierwise.classifier.text import render_messages


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"quality_target": 1.5}, "quality_target"),
        ({"quality_target": -0.1}, "quality_target"),
        ({"quality_target": math.nan}, "quality_target"),
        ({"quality_target": "0.5"}, "quality_target"),
        ({"quality_target": True}, "quality_target"),
        ({"max_latency_ms": 0.0}, "max_latency_ms"),
        ({"max_latency_ms": -5.0}, "max_latency_ms"),
        ({"max_latency_ms": math.nan}, "max_latency_ms"),
        ({"max_latency_ms": math.inf}, "max_latency_ms"),
        ({"latency_band": "tolerant", "value_of_time_usd_per_s": -1.0}, "value_of_time_usd_per_s"),
        ({"value_of_time_usd_per_s": math.inf}, "value_of_time_usd_per_s"),
        ({"latency_band": "urgent"}, "latency_band"),
        ({"latency_band": ""}, "latency_band"),
        ({"mode": "cheapest"}, "mode"),
        ({"allowed_tiers": "haiku"}, "allowed_tiers"),
        ({"allowed_tiers": ["haiku", ""]}, "allowed_tiers[1]"),
        ({"allowed_tiers": ["haiku", "x" * (TIER_NAME.maximum + 1)]}, "allowed_tiers[1]"),
        ({"allowed_tiers": ["t"] * (ALLOWED_TIERS.maximum + 1)}, "allowed_tiers"),
        ({"allow_explore": "no"}, "allow_explore"),
        ({"workload": ""}, "workload"),
        ({"workload": 7}, "workload"),
        ({"workload": "w" * (IDENTIFIER.maximum + 1)}, "workload"),
    ],
)
def test_a_bad_option_is_refused_naming_its_field(options, field):
    with pytest.raises(FieldError) as error:
        RouteOptions(**options)
    assert error.value.field == field
    assert str(error.value).startswith(f"{field}: ")
    assert len(str(error.value)) < 200, "the caller's value is shown cut short, never whole"


def test_over_a_limit_the_error_names_the_limit():
    with pytest.raises(FieldError, match=r"allowed_tiers\[0\]: 65 characters is over the limit of 64 characters"):
        RouteOptions(allowed_tiers=["x" * 65])


def test_options_are_normalised_once_and_compare_by_value():
    options = RouteOptions(latency_band="ASYNC", mode="Cost", allowed_tiers=["haiku", "sonnet"])
    assert (options.latency_band, options.mode, options.allowed_tiers) == ("async", "cost", ("haiku", "sonnet"))
    same = RouteOptions(latency_band="async", mode="cost", allowed_tiers=("haiku", "sonnet"))
    assert options == same and hash(options) == hash(same)  # requests sharing options share a batch run
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.mode = "threshold"  # type: ignore[misc]


def test_updated_replaces_only_what_is_given_and_checks_it_again():
    options = RouteOptions(quality_target=0.9, latency_band="tolerant")
    assert options.updated(quality_target=None, latency_band=None) is options
    assert options.updated(latency_band="ASYNC") == RouteOptions(quality_target=0.9, latency_band="async")
    with pytest.raises(FieldError, match="quality_target"):
        options.updated(quality_target=2.0)


def test_an_unset_band_or_mode_is_interactive_and_threshold_until_something_behind_the_request_sets_one():
    unset = RouteOptions(max_latency_ms=500.0)
    assert (unset.latency_band, unset.mode) == (None, None)
    assert (unset.band, unset.routing_mode, unset.budget_ms) == ("interactive", "threshold", 500.0)


def test_over_fills_in_only_what_a_request_leaves_unset():
    workload = RouteOptions(quality_target=0.8, allowed_tiers=("haiku",), latency_band="async", mode="cost")
    request = RouteOptions(quality_target=0.95, latency_band="interactive", workload="triage")
    merged = request.over(workload)
    assert merged == RouteOptions(
        quality_target=0.95, allowed_tiers=("haiku",), latency_band="interactive", mode="cost", workload="triage"
    )
    assert RouteOptions().over(RouteOptions(workload="w")).workload == "w"
    assert request.over(RouteOptions()) is request  # nothing to fill in: no copy
    assert not RouteOptions().over(RouteOptions(allow_explore=False)).allow_explore  # an opt-out anywhere holds
    assert not RouteOptions(allow_explore=False).over(RouteOptions()).allow_explore


def test_the_budget_applies_in_the_interactive_band_only():
    assert RouteOptions(max_latency_ms=500.0).budget_ms == 500.0
    assert RouteOptions(latency_band="tolerant", max_latency_ms=500.0).budget_ms is None


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({}, "prompt"),
        ({"prompt": " \n\t"}, "prompt"),
        ({"prompt": "hi", "messages": (Message("user", "hi"),)}, "prompt"),
        ({"messages": (Message("user", "  "),)}, "messages"),
        ({"messages": (Message("user", "hi"),) * (MESSAGES.maximum + 1)}, "messages"),
        ({"prompt": "x" * (PROMPT.maximum + 1)}, "prompt"),
        ({"prompt": "hi", "request_id": "r" * (REQUEST_ID.maximum + 1)}, "request_id"),
        ({"prompt": "hi", "request_id": b"r-1"}, "request_id"),
        ({"prompt": "hi", "options": {"mode": "cost"}}, "options"),
    ],
)
def test_a_bad_request_is_refused_naming_its_field(request_kwargs, field):
    with pytest.raises(FieldError) as error:
        RouteRequest(**request_kwargs)
    assert error.value.field == field


def test_a_huge_request_id_is_refused_with_the_limit_and_not_echoed():
    with pytest.raises(FieldError) as error:
        RouteRequest("hi", request_id="r" * 4_000_000)
    assert str(error.value) == "request_id: 4,000,000 characters is over the limit of 128 characters"


def test_messages_are_read_as_training_renders_them():
    request = RouteRequest(messages=(Message("system", "Be brief."), Message("user", "What is 2+2?")))
    assert request.text == render_messages(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    )
    assert RouteRequest("Say hi.").text == "Say hi."


def test_a_server_byte_limit_names_the_field_the_text_came_from():
    RouteRequest("é" * 500).check_bytes(1000)
    with pytest.raises(FieldError, match=r"^prompt: is over the size limit \(1,002 > 1,000 bytes\)"):
        RouteRequest("é" * 501).check_bytes(1000)  # under the limit in characters, over it in bytes
    with pytest.raises(FieldError) as error:
        RouteRequest(messages=(Message("user", "x" * 1000),)).check_bytes(1000)
    assert error.value.field == "messages"


def test_an_item_error_is_the_same_error_inside_its_list():
    with pytest.raises(FieldError) as error:
        RouteRequest("")
    inner = error.value.within("requests[3].")
    assert (inner.field, inner.problem) == ("requests[3].prompt", error.value.problem)
    assert str(inner) == f"requests[3].prompt: {error.value.problem}"
