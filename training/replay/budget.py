"""What replays cost: Batch API prices (50% of list), estimates before sending, and the budget stop.

Estimates use the request's logged token counts where there are any (see `censored._token_estimates`) and
are replaced by the actual usage the API reports as results arrive. The budget is checked before every
submission against everything committed so far: actual costs of results, estimates of what is in flight,
and grading costs. An item that would cross the budget is not sent, and neither is anything after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tierwise.classifier.tiers import Tier, TierLadder
from tierwise.training.replay.censored import ReplayItem


def batch_cost(tier: Tier, input_tokens: float, output_tokens: float) -> float:
    """USD for tokens at the tier's list prices with the Message Batches discount."""
    return tier.paid(tier.token_cost(input_tokens, output_tokens), batch=True)


def estimate_usd(item: ReplayItem, ladder: TierLadder) -> float:
    """Expected batch cost of one replay."""
    return batch_cost(ladder.tiers[item.tier_index], item.est_input_tokens, item.est_output_tokens)


@dataclass(frozen=True)
class Budget:
    """A spending limit in USD (None: unlimited)."""

    limit_usd: float | None

    def allows(self, committed_usd: float, next_usd: float) -> bool:
        return self.limit_usd is None or committed_usd + next_usd <= self.limit_usd + 1e-12


@dataclass(frozen=True)
class TierPlan:
    """One row of the dry-run table."""

    tier: str
    model: str
    requests: int
    input_tokens: float
    output_tokens: float
    cost_usd: float
    worst_case_usd: float


def plan_by_tier(items: Sequence[ReplayItem], ladder: TierLadder, max_tokens: int) -> list[TierPlan]:
    """Requests, estimated tokens and cost per tier; worst case assumes every answer runs to max_tokens."""
    rows = []
    for index, tier in enumerate(ladder.tiers):
        mine = [item for item in items if item.tier_index == index]
        if not mine:
            continue
        input_tokens = sum(item.est_input_tokens for item in mine)
        output_tokens = sum(item.est_output_tokens for item in mine)
        rows.append(
            TierPlan(
                tier=tier.name,
                model=tier.model,
                requests=len(mine),
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_usd=batch_cost(tier, input_tokens, output_tokens),
                worst_case_usd=batch_cost(tier, input_tokens, max_tokens * len(mine)),
            )
        )
    return rows


def render_plan(rows: Sequence[TierPlan], grading_usd: float, grader: str) -> str:
    """The dry-run table: what would be sent per tier and what it is expected to cost."""
    header = f"{'tier':<10} {'model':<28} {'requests':>8} {'est. in tok':>12} {'est. out tok':>12} {'est. cost':>11}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.tier:<10} {row.model:<28} {row.requests:>8} {row.input_tokens:>12,.0f} "
            f"{row.output_tokens:>12,.0f} {_usd(row.cost_usd):>11}"
        )
    total = sum(r.cost_usd for r in rows)
    worst = sum(r.worst_case_usd for r in rows)
    requests = sum(r.requests for r in rows)
    lines += [
        "-" * len(header),
        f"{'replays (Batch API, 50% off list)':<39} {requests:>8} {'':>25} {_usd(total):>11}",
        f"{'grading (' + grader + ')':<74} {_usd(grading_usd):>11}",
        f"{'estimated total':<74} {_usd(total + grading_usd):>11}",
        f"worst case if every answer runs to --max-tokens: {_usd(worst + grading_usd)}",
    ]
    return "\n".join(lines)


def _usd(amount: float) -> str:
    return f"${amount:,.4f}"
