"""Who serves a tier: `provider`, `base_url` and `api_key_env` in the ladder, checked when the ladder is read."""

from __future__ import annotations

import pytest
from tierwise.classifier.tiers import ANTHROPIC, OPENAI, TierError, TierLadder

PRICES = {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0}


def ladder(**fields) -> TierLadder:
    return TierLadder.from_dict({"tier": [{"name": "local", "models": ["llama"], **PRICES, **fields}]})


def test_a_tier_names_its_provider_url_and_key_variable():
    tier = ladder(provider="openai", base_url="http://127.0.0.1:8000/v1/", api_key_env="LOCAL_KEY").top
    assert (tier.provider, tier.base_url, tier.api_key_env) == (OPENAI, "http://127.0.0.1:8000/v1", "LOCAL_KEY")
    assert TierLadder.from_dict(ladder(provider="openai", base_url="http://h/v1").to_dict()).top.provider == OPENAI


def test_a_tier_without_them_goes_to_the_upstream_with_the_callers_key():
    tier = ladder().top
    assert (tier.provider, tier.base_url, tier.api_key_env) == (ANTHROPIC, None, None)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"provider": "mistral"}, "'provider' must be one of anthropic, openai"),
        ({"provider": "openai"}, "needs its 'base_url'"),
        ({"base_url": "ftp://host"}, "'base_url' must be an http(s) URL"),
        ({"api_key_env": "NOT A NAME"}, "'api_key_env' must name an environment variable"),
    ],
)
def test_a_bad_one_is_refused_naming_the_tier_and_key(fields, problem):
    with pytest.raises(TierError, match="tier #1 \\(local\\)") as refused:
        ladder(**fields)
    assert problem in str(refused.value)
