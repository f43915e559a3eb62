"""One decision path, free of any transport: what `tierwise serve` (every Predict RPC) and `tierwise predict` run.

`Decider.decide(router, request)` fills in the band defaults (for a request that sets no latency budget or value of
time, on a model with a time model), asks the router's policy, draws exploration (a cheaper allowed tier at
`explore_rate`, with its propensity), and hands the resulting `Decision` to its hooks (the server's metrics, its
memory of recent decisions, its decision log) before returning it. The gRPC servicer only turns protobuf into a
`RouteRequest` and a `Decision` into protobuf, so the client and the proxy, which call the servicer, get the
same answer as `tierwise predict` for the same request.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cached_property

from .exploration import Explorer
from .limits import FieldError
from .request import RouteOptions, RouteRequest
from .router import Prediction, Router

# A batch is routed in chunks of this many requests; the caller's check runs between them (a deadline, a shutdown).
BATCH_CHUNK = 64

_ID_PREFIX = os.urandom(6).hex()
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """A unique id for a request that came without one: a per-process random prefix and a counter.

    Cheaper than uuid4 on the hot path, and as unique in practice (48 random bits per process).
    """
    return f"{_ID_PREFIX}-{next(_id_counter):x}"


@dataclass(frozen=True)
class BandDefaults:
    """The latency budget and value of time a request gets when it sets none (`tierwise serve` options).

    Applied only when the model has a time model; a request that sets one itself on a model without one is
    refused by the policy, naming the field.
    """

    max_latency_ms: float | None = None
    value_of_time_usd_per_s: float | None = None

    def __post_init__(self) -> None:
        RouteOptions(**self._given)  # the same rules as a request's own

    @cached_property
    def _given(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def applied(self, options: RouteOptions, router: Router) -> RouteOptions:
        """The request's options with these defaults where it set none (unchanged for a model without time)."""
        given = self._given
        if not given or router.policy.times is None:
            return options
        return options.updated(**{name: value for name, value in given.items() if getattr(options, name) is None})


@dataclass(slots=True)
class Decision:
    """One routing decision as served: the request, the prediction served (an exploration draw's when
    `explored`), the model version, when, and how long inference took.

    `propensity` is the probability the served tier had of being served first; `propensities` every possible
    first tier's (None when the policy's choice was the only one possible). A record the hooks read and never
    change (not frozen only because it is built on every request: a frozen one costs 0.7 us more).
    """

    request_id: str
    request: RouteRequest
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
        return self.request.options.latency_band == "async"


Hook = Callable[[Decision], None]


class Decider:
    """Decisions for requests, by whichever router the caller serves at the moment (it may change between calls)."""

    def __init__(
        self,
        band_defaults: BandDefaults | None = None,
        explore_rate: float = 0.0,
        explore_seed: int | None = None,
        hooks: Sequence[Hook] = (),
    ):
        self.band_defaults = band_defaults or BandDefaults()
        self.explore_rate = explore_rate
        self._explore_seed = explore_seed
        self._explorer: tuple[Router | None, Explorer | None] = (None, None)
        self._hooks = tuple(hooks)

    def decide(self, router: Router, request: RouteRequest) -> Decision:
        """Route one request (FieldError, naming the field, for an option this model cannot honour)."""
        options = self.band_defaults.applied(request.options, router)
        start = time.perf_counter_ns()
        prediction = router.predict(request.text, options)
        return self._served(router, request, prediction, (time.perf_counter_ns() - start) // 1000)

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
        for options, indices in groups.items():
            applied = self.band_defaults.applied(options, router)
            for first in range(0, len(indices), BATCH_CHUNK):
                chunk = indices[first : first + BATCH_CHUNK]
                between_chunks()
                start = time.perf_counter_ns()
                try:
                    predictions = router.predict_batch([requests[i].text for i in chunk], applied)
                except FieldError as exc:
                    raise exc.within(f"requests[{chunk[0]}].") from None
                each_us = (time.perf_counter_ns() - start) // 1000 // len(chunk)
                for i, prediction in zip(chunk, predictions, strict=True):
                    decisions[i] = self._served(router, requests[i], prediction, each_us)
        return decisions  # type: ignore[return-value]  # every index belongs to one group

    def _served(self, router: Router, request: RouteRequest, prediction: Prediction, inference_us: int) -> Decision:
        options = request.options
        explored, propensity, propensities = False, 1.0, None
        if self.explore_rate and options.allow_explore:
            served = self._explorer_for(router).serve(prediction, options.allowed_tiers, band=options.latency_band)
            prediction, explored, propensity, propensities = (
                served.prediction,
                served.explored,
                served.propensity,
                served.propensities,
            )
        decision = Decision(
            request.request_id or new_request_id(),
            request,
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

    def _explorer_for(self, router: Router) -> Explorer:
        cached_for, explorer = self._explorer
        if cached_for is not router or explorer is None:
            explorer = Explorer(router, self.explore_rate, random.Random(self._explore_seed))
            self._explorer = (router, explorer)
        return explorer
