"""What one answer used and what it cost: the API's token counts priced by a tier's rule.

The proxy, the client and `replay` all price an answer here, so an attempt costs the same wherever it is counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tiers import Tier


@dataclass(frozen=True)
class Usage:
    """Token counts of one answer, as the Messages API's `usage` reports them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    @classmethod
    def from_mapping(cls, usage: object, base: Usage | None = None) -> Usage:
        """Read a `usage` object or dict; counts it leaves out (or null) keep `base`'s values.

        Streams report usage in pieces (`message_start`, then `message_delta`), so later pieces update earlier ones.
        """
        base = base or cls()
        if usage is None:
            return base
        get = usage.get if isinstance(usage, dict) else lambda name: getattr(usage, name, None)

        def count(name: str) -> int:
            value = get(name)
            return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else getattr(base, name)

        return cls(
            count("input_tokens"),
            count("output_tokens"),
            count("cache_read_input_tokens"),
            count("cache_creation_input_tokens"),
        )


def attempt_cost(tier: Tier, usage: Usage, batch: bool = False) -> float:
    """USD for one answer on a tier: the ladder's cost rule, cache reads and writes included, Batch rate if so."""
    cost = tier.token_cost(
        usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens
    )
    return tier.paid(cost, batch)
