"""The router inside the proxy (`tierwise proxy --model`): the `Link` the proxy asks when no `tierwise serve` stands
between them.

Decisions come from the process's `RouterCore`: the `Decider` `tierwise serve` runs, with the same hooks (metrics,
recent decisions, the decision log) and the same verify-then-swap reload; outcomes go to its `OutcomeDesk`; prices
are the serving bundle's ladder. A Messages request becomes the `RouteRequest` the gRPC link would send
(`router_link.route_request_for`), held to `--max-prompt-bytes` as a server holds a Predict, so a request gets the
same decision through `--model` as through `--router`. Deciding (tens of microseconds) and taking outcomes happen
on the event loop, cheaper than waking a thread for them; outcomes are taken once the step that reported them is
done, so they add nothing before an answer, and a grade is taken after them. Nothing here can be down: the router
answers while the process runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from tierwise.classifier.limits import FieldError
from tierwise.classifier.request import Conversation, RouteOptions
from tierwise.serving.escalation import RouteDecision
from tierwise.serving.price_book import PriceBook
from tierwise.serving.reload import LoadedModel
from tierwise.serving.router_core import RouterCore
from tierwise.serving.router_link import RouterDown, route_decision, route_request_for, textless
from tierwise.serving.tierwise.v1 import router_pb2 as pb

log = logging.getLogger("tierwise.proxy")


class LocalLink:
    """A `Link` to a started `RouterCore` in this process; closing the link closes the core."""

    outage: str | None = None

    def __init__(self, core: RouterCore, down: RouterDown):
        self.core = core
        self.refused = 0
        self._down = down
        self._queued: list[pb.Outcome] = []
        self._prices: tuple[LoadedModel | None, PriceBook | None] = (None, None)

    async def decide(
        self, params: Mapping[str, Any], options: RouteOptions, conversation: Conversation | None = None
    ) -> RouteDecision:
        request = route_request_for(params, options, conversation)
        loaded = self._serving()
        prices = self._prices_of(loaded)
        if request is None:
            return textless(self._down, prices)
        request.check_bytes(self.core.config.max_prompt_bytes)
        decision = self.core.decider.decide(loaded.router, request)
        prediction = decision.prediction
        return route_decision(
            decision.request_id,
            prediction.tier,
            prediction.model,
            prediction.fallback_chain,
            prices,
            decision.use_batch_api,
            decision.explored,
            prediction.kept_warm,
        )

    async def prices(self) -> PriceBook:
        return self._prices_of(self._serving())

    def report(self, outcome: pb.Outcome) -> None:
        """Taken on the event loop once the request's current step is done (its answer sent, most often): no thread
        to wake, nothing added before the answer."""
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._take_queued)
        self._queued.append(outcome)

    async def grade(self, outcome: pb.Outcome) -> bool:
        self._take_queued()
        return self.core.outcomes.receive(outcome)

    async def close(self) -> None:
        """Take what is queued and close the core: its reloader and metrics stop, its logs are written out."""
        self._take_queued()
        await asyncio.to_thread(self.core.close)

    def _take_queued(self) -> None:
        """The outcomes reported so far, in order. One the desk refuses (an upstream error type over its limit, say)
        is counted in `refused`, with one warning."""
        queued, self._queued = self._queued, []
        for outcome in queued:
            try:
                self.core.outcomes.receive(outcome)
            except FieldError as exc:
                self.refused += 1
                if self.refused == 1:
                    log.warning("the router refused an attempt's outcome (%s); refusals are counted, not raised", exc)

    def _serving(self) -> LoadedModel:
        loaded = self.core.holder.current
        assert loaded is not None, "the core is started before the link is asked"
        return loaded

    def _prices_of(self, loaded: LoadedModel) -> PriceBook:
        """The serving bundle's ladder, built once per model the holder swaps in."""
        cached_for, prices = self._prices
        if cached_for is not loaded or prices is None:
            prices = PriceBook(loaded.router.ladder, loaded.router.version)
            self._prices = (loaded, prices)
        return prices
