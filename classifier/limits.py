"""How big anything a caller sends may be: one table, enforced by the gRPC service, the proxy and the feedback
endpoint alike, so no caller can grow a server's memory or logs without bound.

A value over its limit is refused with a `FieldError` naming the field and the limit (`INVALID_ARGUMENT` over
gRPC, 400 over HTTP). The README's "Input limits" table lists these numbers.
"""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass

from .errors import InputError


class FieldError(InputError):
    """A request field the caller got wrong; `field` is its path, e.g. `requests[2].prompt`."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def within(self, prefix: str) -> FieldError:
        """The same error for a field inside a list or stream item, e.g. prefix `requests[2].`."""
        return FieldError(prefix + self.field, self.problem)


@dataclass(frozen=True)
class Limit:
    """The most a field may hold, in `unit`s (characters of a string, items of a list)."""

    name: str
    maximum: int
    unit: str

    def check(self, value: Sized, field: str | None = None) -> None:
        """Refuse `value` if it holds more than the limit; `field` names it in the error (default: the limit's)."""
        if len(value) > self.maximum:
            raise FieldError(
                field or self.name, f"{len(value):,} {self.unit} is over the limit of {self.maximum:,} {self.unit}"
            )


REQUEST_ID = Limit("request_id", 128, "characters")
MODEL = Limit("model", 256, "characters")
ERROR = Limit("error", 4_096, "characters")
TIER_NAME = Limit("tier name", 64, "characters")
IDENTIFIER = Limit("identifier", 128, "characters")  # workload, session and other names a caller picks
MESSAGES = Limit("messages", 10_000, "items")
PROMPT = Limit("prompt", 4_000_000, "characters")  # the whole request text: about 1M tokens
ALLOWED_TIERS = Limit("allowed_tiers", 64, "items")

LIMITS = (REQUEST_ID, MODEL, ERROR, TIER_NAME, IDENTIFIER, MESSAGES, PROMPT, ALLOWED_TIERS)

# The memory of recent decisions (outcomes are matched to them) is bounded in bytes as well as in entries.
RECENT_DECISIONS_BYTES = 64 * 1024 * 1024
