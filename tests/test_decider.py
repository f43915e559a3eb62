"""The transport-free decider: band defaults, the policy, exploration and the decision record, with hooks that see
every decision once; what `tierwise serve` and `tierwise predict` both run."""

from __future__ import annotations

import pytest
from tierwise.classifier.decider import BATCH_CHUNK, BandDefaults, Decider, Decision
from tierwise.classifier.limits import FieldError
from tierwise.classifier.request import RouteOptions, RouteRequest
from tierwise.classifier.router import Router
from tierwise.classifier.workloads import Workloads

HARD = "Analyze the trade-offs of a merger under antitrust review, step by step, and justify each move."
EASY = "Say hello to the team in a friendly way."


@pytest.fixture(scope="module")
def router(trained_bundle) -> Router:
    return Router.load(trained_bundle)


@pytest.fixture(scope="module")
def untimed(untimed_bundle) -> Router:
    return Router.load(untimed_bundle)


def test_a_decision_is_the_policy_choice_with_its_record(router):
    decisions: list[Decision] = []
    request = RouteRequest(HARD, options=RouteOptions(mode="cost"), request_id="r-1")
    decision = Decider(hooks=[decisions.append]).decide(router, request)
    assert decision.prediction == router.predict(HARD, RouteOptions(mode="cost"))
    assert (decision.request_id, decision.request, decision.model_version) == ("r-1", request, router.version)
    assert (decision.explored, decision.propensity, decision.propensities) == (False, 1.0, None)
    assert decision.inference_us >= 0 and not decision.use_batch_api
    assert decisions == [decision]


def test_a_request_without_an_id_gets_a_fresh_one(router):
    first, second = (Decider().decide(router, RouteRequest(EASY)) for _ in range(2))
    assert first.request_id and second.request_id and first.request_id != second.request_id


def test_band_defaults_fill_in_what_a_request_left_unset_on_a_timed_model(router, untimed):
    budget = router.policy.times.tiers[-1].quantile(0.01) - 1  # the top tier cannot finish in time
    bounded = Decider(BandDefaults(max_latency_ms=budget))
    assert bounded.decide(router, RouteRequest(HARD)).prediction == router.predict(
        HARD, RouteOptions(max_latency_ms=budget)
    )
    own = RouteRequest(HARD, options=RouteOptions(max_latency_ms=3_600_000.0))
    assert bounded.decide(router, own).prediction == router.predict(HARD, own.options)
    # a model without a time model routes as if no default were set
    assert bounded.decide(untimed, RouteRequest(HARD)).prediction == untimed.predict(HARD)
    with pytest.raises(FieldError, match="value_of_time_usd_per_s"):
        BandDefaults(value_of_time_usd_per_s=-1.0)


def test_a_workloads_policy_fills_in_what_the_request_leaves_unset_and_is_replaced_whole(router, untimed):
    budget = router.policy.times.tiers[-1].quantile(0.01) - 1
    policy = f"""
[default]
quality_target = 0.0
[workload.nightly]
band = "async"
[workload.budget]
max_latency_ms = {budget}
"""
    decider = Decider(workloads=Workloads.from_toml(policy))
    nightly = decider.decide(router, RouteRequest(HARD, options=RouteOptions(workload="nightly")))
    assert nightly.options == RouteOptions(quality_target=0.0, latency_band="async", workload="nightly")
    assert nightly.use_batch_api and nightly.prediction == router.predict(HARD, nightly.options)
    own = decider.decide(
        router, RouteRequest(HARD, options=RouteOptions(workload="nightly", latency_band="interactive"))
    )
    assert not own.use_batch_api and own.options.quality_target == 0.0
    timed = decider.decide(router, RouteRequest(HARD, options=RouteOptions(workload="budget")))
    assert timed.prediction == router.predict(HARD, RouteOptions(quality_target=0.0, max_latency_ms=budget))
    # a model without a time model routes as if the entry set no budget, as the server's own default
    assert decider.decide(untimed, RouteRequest(HARD, options=RouteOptions(workload="budget"))).prediction == (
        untimed.predict(HARD, RouteOptions(quality_target=0.0))
    )
    decider.workloads = Workloads()  # what a reload does
    assert decider.decide(router, RouteRequest(HARD, options=RouteOptions(workload="nightly"))).options == (
        RouteOptions(workload="nightly")
    )


def test_exploration_serves_a_cheaper_tier_unless_the_request_opts_out(router):
    strict = RouteOptions(quality_target=1.0)
    chosen = router.predict(HARD, strict)
    assert chosen.tier != router.ladder.names[0], "the test needs a request routed above the cheapest tier"
    always = Decider(explore_rate=1.0, explore_seed=3)
    explored = always.decide(router, RouteRequest(HARD, options=strict))
    assert explored.explored and explored.prediction.fallback_chain[1:] == chosen.fallback_chain
    assert sum(explored.propensities.values()) == pytest.approx(1.0)
    assert explored.propensity == explored.propensities[explored.prediction.tier]
    kept = always.decide(router, RouteRequest(HARD, options=RouteOptions(quality_target=1.0, allow_explore=False)))
    assert (kept.explored, kept.propensity, kept.prediction) == (False, 1.0, chosen)


def test_a_batch_decides_each_request_as_alone_in_order(router):
    requests = [
        RouteRequest(text, options=options)
        for text in (HARD, EASY)
        for options in (RouteOptions(), RouteOptions(mode="cost"), RouteOptions(latency_band="async"))
    ]
    seen: list[str] = []
    batch = Decider(hooks=[lambda d: seen.append(d.request_id)]).decide_batch(router, requests)
    single = [Decider().decide(router, request) for request in requests]
    assert [d.request for d in batch] == requests
    for one, alone in zip(batch, single, strict=True):
        assert one.prediction.tier == alone.prediction.tier
        assert one.prediction.fallback_chain == alone.prediction.fallback_chain
        assert one.prediction.probabilities == pytest.approx(alone.prediction.probabilities, abs=1e-6)
    assert sorted(seen) == sorted(d.request_id for d in batch)


def test_a_batch_runs_the_callers_check_between_chunks_and_names_the_failing_item(router):
    checks: list[int] = []
    requests = [RouteRequest(f"{EASY} {i}") for i in range(BATCH_CHUNK + 1)]
    Decider().decide_batch(router, requests, lambda: checks.append(1))
    assert len(checks) == 2

    def stop() -> None:
        raise TimeoutError("deadline")

    with pytest.raises(TimeoutError):
        Decider().decide_batch(router, requests, stop)
    unknown = [RouteRequest(EASY), RouteRequest(HARD, options=RouteOptions(allowed_tiers=("gpt-9",)))]
    with pytest.raises(FieldError) as error:
        Decider().decide_batch(router, unknown)
    assert error.value.field == "requests[1].allowed_tiers"
