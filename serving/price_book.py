"""What an attempt costs: the served bundle's tier ladder, model by model, with cache and batch pricing.

The ladder comes from the router (`GetModelInfo`), so the client and the proxy price an attempt exactly as the
served model was trained to (the ladder's prices, its cache and Batch multipliers, `Tier.token_cost`), and a new
bundle with new prices is picked up with it. When the router cannot be
reached the shipped Claude ladder prices the fallback's answer instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tierwise.classifier.tiers import Tier, TierLadder
from tierwise.classifier.usage import Usage, attempt_cost


@dataclass(frozen=True)
class PriceBook:
    """The served ladder by model and by tier name, and the bundle version it came with."""

    ladder: TierLadder
    version: str = ""

    @classmethod
    def from_manifest_json(cls, manifest_json: str, version: str) -> PriceBook:
        """The ladder inside a bundle manifest, as `GetModelInfo.manifest_json` carries it."""
        ladder = json.loads(manifest_json)["ladder"]
        return cls(TierLadder.from_dict(ladder, source=f"model {version}"), version)

    @classmethod
    def shipped(cls) -> PriceBook:
        """The shipped Claude ladder: what prices an answer while the router is out of reach."""
        return cls(TierLadder.load())

    def tier_named(self, name: str) -> Tier | None:
        return next((tier for tier in self.ladder.tiers if tier.name == name), None)

    def tier_of_model(self, model: str) -> Tier | None:
        return next((tier for tier in self.ladder.tiers if model in tier.models), None)

    def cost(self, model: str, usage: Usage, batch: bool = False) -> float | None:
        """The attempt's cost, or None for a model no tier lists (nothing to price it with)."""
        tier = self.tier_of_model(model)
        return None if tier is None else attempt_cost(tier, usage, batch)
