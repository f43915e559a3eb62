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
    """The most a field may hold, in `unit`s (characters of a string, items of a list); a limit with no unit is the
    largest number a field may be."""

    name: str
    maximum: int
    unit: str

    def check(self, value: Sized | int, field: str | None = None) -> None:
        """Refuse `value` if it holds more than the limit (an int: if it is more, e.g. a size already measured);
        `field` names it in the error (default: the limit's)."""
        size = value if isinstance(value, int) else len(value)
        if size > self.maximum:
            unit = f" {self.unit}" if self.unit else ""
            raise FieldError(field or self.name, f"{size:,}{unit} is over the limit of {self.maximum:,}{unit}")


REQUEST_ID = Limit("request_id", 128, "characters")
MODEL = Limit("model", 256, "characters")
ERROR = Limit("error", 4_096, "characters")
TIER_NAME = Limit("tier name", 64, "characters")
IDENTIFIER = Limit("identifier", 128, "characters")  # workload, session and other names a caller picks
MESSAGES = Limit("messages", 10_000, "items")
PROMPT = Limit("prompt", 4_000_000, "characters")  # the whole request text: about 1M tokens
ALLOWED_TIERS = Limit("allowed_tiers", 64, "items")
ATTEMPT = Limit("attempt", 1_000, "")  # an attempt's place in its chain (0-based); chains are far shorter
CACHED_TOKENS = Limit("cached_tokens", 10_000_000, "tokens")  # a conversation's cached prefix: far above any context

LIMITS = (REQUEST_ID, MODEL, ERROR, TIER_NAME, IDENTIFIER, MESSAGES, PROMPT, ALLOWED_TIERS, ATTEMPT, CACHED_TOKENS)

# The memory of recent decisions (outcomes are matched to them) is bounded in bytes as well as in entries.
RECENT_DECISIONS_BYTES = 64 * 1024 * 1024
# The router's memory of reported attempts (each counted once, later reports merged into it), and the proxy's of
# the requests it routed (whose caller may grade them): bounded in entries and in bytes.
REPORTED_ATTEMPTS = 100_000
REPORTED_ATTEMPTS_BYTES = 64 * 1024 * 1024
REMEMBERED_REQUESTS = 100_000
REMEMBERED_REQUESTS_BYTES = 32 * 1024 * 1024
# The proxy's memory of conversations (which tier served each one's last turn, what it left cached).
CONVERSATIONS = 100_000
CONVERSATIONS_BYTES = 16 * 1024 * 1024
