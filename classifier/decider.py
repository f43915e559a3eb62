"""One decision path, free of any transport: what `tierwise serve` (every Predict RPC) and `tierwise predict` run.

`Decider.decide(router, request)` fills in what the request leaves unset (`Decider.options_for`: its workload's
entry in the workloads file, then the band defaults), asks the router's policy, draws exploration (a cheaper
allowed tier at the workload's `explore_rate`, else the server's, with its propensity), and hands the resulting
`Decision` to its hooks (the server's metrics, its memory of recent decisions, its decision log) before returning
it. The gRPC servicer only turns protobuf into a
`RouteRequest` and a `Decision` into protobuf, so the client and the proxy, which call the servicer, get the
same answer as `tierwise predict` for the same request.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .exploration import Explorer
from .limits import FieldError
from .request import DEFAULT_OPTIONS, RouteOptions, RouteRequest
from .router import Prediction, Router
from .workloads import WorkloadPolicy, Workloads

# A batch is routed in chunks of this many requests; the caller's check runs between them (a deadline, a shutdown).
BATCH_CHUNK = 64
# Resolved options remembered (most traffic repeats a few sets of options); forgotten all at once past this.
RESOLVED_MAX = 4096

_ID_PREFIX = os.urandom(6).hex()
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """A unique id for a request that came without one: a per-process random prefix and a counter.

    Cheaper than uuid4 on the hot path, and as unique in practice (48 random bits per process).
    """
    return f"{_ID_PREFIX}-{next(_id_counter):x}"


@dataclass(frozen=True)
class BandDefaults:
    """The latency budget and value of time a request gets when neither it nor its workload sets one (`tierwise
    serve --max-latency-ms`, `--value-of-time-usd-per-s`).

    Applied only when the model has a time model; a request that sets one itself on a model without one is
    refused by the policy, naming the field.
    """

    max_latency_ms: float | None = None
    value_of_time_usd_per_s: float | None = None
    options: RouteOptions = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        given = RouteOptions(max_latency_ms=self.max_latency_ms, value_of_time_usd_per_s=self.value_of_time_usd_per_s)
        object.__setattr__(self, "options", given)  # checked by the same rules as a request's own

    def route_options(self, timed: bool) -> RouteOptions:
        """These defaults as server options under a request's: none for a model without a time model."""
        return self.options if timed else DEFAULT_OPTIONS


@dataclass(slots=True)
class Decision:
    """One routing decision as served: the request, the options it was decided with (the request's over its
    workload's and the server's), the prediction served (an exploration draw's when `explored`), the model version,
    when, and how long inference took.

    `propensity` is the probability the served tier had of being served first; `propensities` every possible
    first tier's (None when the policy's choice was the only one possible). A record the hooks read and never
    change (not frozen only because it is built on every request: a frozen one costs 0.7 us more).
    """

    request_id: str
    request: RouteRequest
    options: RouteOptions
    prediction: Prediction
    model_version: str
    unix_time: float
    inference_us: int
    explored: bool = False
    propensity: float = 1.0
    propensities: Mapping[str, float] | None = None

    @property
    def use_batch_api(self) -> bool:
        """Async requests go through the provider's Batch API."""
        return self.options.band == "async"


Hook = Callable[[Decision], None]


class Decider:
    """Decisions for requests, by whichever router the caller serves at the moment (it may change between calls).

    `workloads` is the policy per workload; a server replaces it whole when its file changes (one assignment).
    """

    def __init__(
        self,
        band_defaults: BandDefaults | None = None,
        explore_rate: float = 0.0,
        explore_seed: int | None = None,
        hooks: Sequence[Hook] = (),
        workloads: Workloads | None = None,
    ):
        self.band_defaults = band_defaults or BandDefaults()
        self.explore_rate = explore_rate
        self.workloads = workloads or Workloads()
        self._explore_seed = explore_seed
        self._explorers: tuple[Router | None, random.Random, dict[float, Explorer]] = (None, random.Random(), {})
        self._resolved: tuple[Workloads, dict[tuple[RouteOptions, bool], tuple[RouteOptions, WorkloadPolicy]]] = (
            self.workloads,
            {},
        )
        self._hooks = tuple(hooks)

    def options_for(self, options: RouteOptions, router: Router) -> tuple[RouteOptions, WorkloadPolicy]:
        """The options a request is decided with and its workload's policy (`Workloads.resolve`: the request's
        fields, its workload's, the band defaults, in that order), worked out once per distinct set of options."""
        timed = router.policy.times is not None
        workloads, resolved = self._resolved
        if workloads is not self.workloads or len(resolved) >= RESOLVED_MAX:
            workloads, resolved = self.workloads, {}
            self._resolved = (workloads, resolved)
        key = (options, timed)
        found = resolved.get(key)
        if found is None:
            found = resolved[key] = workloads.resolve(options, self.band_defaults.route_options(timed), timed)
        return found

    def decide(self, router: Router, request: RouteRequest) -> Decision:
        """Route one request (FieldError, naming the field, for an option this model cannot honour)."""
        options, policy = self.options_for(request.options, router)
        start = time.perf_counter_ns()
        prediction = router.predict(request.text, options, request.conversation)
        return self._served(router, request, options, policy, prediction, (time.perf_counter_ns() - start) // 1000)

    def decide_batch(
        self, router: Router, requests: Sequence[RouteRequest], between_chunks: Callable[[], None] = lambda: None
    ) -> list[Decision]:
        """Route many requests, one graph run per chunk of requests sharing their options, in request order.

        `between_chunks` runs before each chunk and may raise to stop the batch. A FieldError names the first
        request of the chunk it arose in (`requests[i].field`).
        """
        groups: dict[RouteOptions, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.options, []).append(index)
        decisions: list[Decision | None] = [None] * len(requests)
        for given, indices in groups.items():
            options, policy = self.options_for(given, router)
            for first in range(0, len(indices), BATCH_CHUNK):
                chunk = indices[first : first + BATCH_CHUNK]
                between_chunks()
                start = time.perf_counter_ns()
                try:
                    predictions = router.predict_batch(
                        [requests[i].text for i in chunk], options, [requests[i].conversation for i in chunk]
                    )
                except FieldError as exc:
                    raise exc.within(f"requests[{chunk[0]}].") from None
                each_us = (time.perf_counter_ns() - start) // 1000 // len(chunk)
                for i, prediction in zip(chunk, predictions, strict=True):
                    decisions[i] = self._served(router, requests[i], options, policy, prediction, each_us)
        return decisions  # type: ignore[return-value]  # every index belongs to one group

    def _served(
        self,
        router: Router,
        request: RouteRequest,
        options: RouteOptions,
        policy: WorkloadPolicy,
        prediction: Prediction,
        inference_us: int,
    ) -> Decision:
        rate = self.explore_rate if policy.explore_rate is None else policy.explore_rate
        explored, propensity, propensities = False, 1.0, None
        if rate and options.allow_explore:
            served = self._explorer_for(router, rate).serve(prediction, options.allowed_tiers, band=options.band)
            prediction, explored, propensity, propensities = (
                served.prediction,
                served.explored,
                served.propensity,
                served.propensities,
            )
        decision = Decision(
            request.request_id or new_request_id(),
            request,
            options,
            prediction,
            router.version,
            time.time(),
            inference_us,
            explored,
            propensity,
            propensities,
        )
        for hook in self._hooks:
            hook(decision)
        return decision

    def _explorer_for(self, router: Router, rate: float) -> Explorer:
        """The router's explorer at this rate; every rate draws from one seeded stream per router."""
        cached_for, rng, explorers = self._explorers
        if cached_for is not router:
            rng, explorers = random.Random(self._explore_seed), {}
            self._explorers = (router, rng, explorers)
        explorer = explorers.get(rate)
        if explorer is None:
            explorer = explorers[rate] = Explorer(router, rate, rng)
        return explorer
