"""One routing request, checked once where it is built: by gRPC, the command line, the client and the proxy alike.

`RouteOptions` says how to route (quality target, allowed tiers, latency band, mode, latency budget, value of
time, exploration consent, workload); `RouteRequest` is the text to route (a prompt or chat messages), its
request_id and its options. Both are frozen and refuse a bad value when built, with a `FieldError` naming the
field as the wire spells it and, for sizes, the limit from `limits.py`. Nothing downstream checks them again;
what depends on the served model (tier names it knows, a time model for a budget) is the policy's to refuse.

A field left unset (None, or no tiers) is filled in by what stands behind the request (`RouteOptions.over`): the
entry of its workload in `tierwise serve --workloads`, then the server's own defaults (`classifier/decider.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .limits import (
    ALLOWED_TIERS,
    CACHED_TOKENS,
    IDENTIFIER,
    MESSAGES,
    PROMPT,
    REQUEST_ID,
    TIER_NAME,
    FieldError,
    Limit,
)
from .text import render_messages

MODES = ("threshold", "cost")
BANDS = ("interactive", "tolerant", "async")
# What a request that sets no band or mode gets when nothing behind it (a workload entry) sets one either.
DEFAULT_BAND, DEFAULT_MODE = BANDS[0], MODES[0]
# The optional numbers of RouteOptions (None: unset) and what each must be.
NUMBERS: dict[str, tuple[Callable[[float], bool], str]] = {
    "quality_target": (lambda value: 0.0 <= value <= 1.0, "within [0, 1]"),
    "max_latency_ms": (lambda value: value > 0, "a finite number > 0"),
    "value_of_time_usd_per_s": (lambda value: value >= 0, "a finite number >= 0"),
}


@dataclass(frozen=True, slots=True)
class RouteOptions:
    """How one request is to be routed; every field is optional and the defaults route as the bundle says.

    - `quality_target`: the quality threshold in [0, 1] (None: the bundle's default);
    - `allowed_tiers`: tier names the answer may use (empty: all);
    - `latency_band`: interactive (a person waits), tolerant (waiting has a price) or async (Batch API); any case
      (None: interactive; `band` is the one that applies);
    - `mode`: threshold or cost (None: threshold; `routing_mode` is the one that applies);
    - `max_latency_ms`: interactive: the time an acceptable answer must come within (> 0);
    - `value_of_time_usd_per_s`: tolerant: what a second of waiting is worth (>= 0);
    - `allow_explore`: false opts out of exploration;
    - `workload`: the caller's name for the kind of traffic (an identifier): which entry of a workloads file
      fills in what the request leaves unset.
    """

    quality_target: float | None = None
    allowed_tiers: tuple[str, ...] = ()
    latency_band: str | None = None
    mode: str | None = None
    max_latency_ms: float | None = None
    value_of_time_usd_per_s: float | None = None
    allow_explore: bool = True
    workload: str | None = None

    def __post_init__(self) -> None:
        if self.latency_band is not None and self.latency_band not in BANDS:
            object.__setattr__(self, "latency_band", _one_of("latency_band", self.latency_band, BANDS))
        if self.mode is not None and self.mode not in MODES:
            object.__setattr__(self, "mode", _one_of("mode", self.mode, MODES))
        for name, (valid, rule) in NUMBERS.items():
            value = getattr(self, name)
            if value is not None and not valid(_number(name, value)):
                raise FieldError(name, f"must be {rule}, got {value}")
        if self.allowed_tiers:
            self._check_tiers()
        if not isinstance(self.allow_explore, bool):
            raise FieldError("allow_explore", f"must be true or false, got {_shown(self.allow_explore)}")
        if self.workload is not None:
            _identifier("workload", self.workload)

    def _check_tiers(self) -> None:
        tiers = self.allowed_tiers
        if isinstance(tiers, str) or not isinstance(tiers, tuple | list):
            raise FieldError("allowed_tiers", f"must be a list of tier names, got {_shown(tiers)}")
        ALLOWED_TIERS.check(tiers, "allowed_tiers")
        for index, name in enumerate(tiers):
            if not isinstance(name, str) or not name:
                raise FieldError(f"allowed_tiers[{index}]", f"must be a tier name, got {_shown(name)}")
            TIER_NAME.check(name, f"allowed_tiers[{index}]")
        if not isinstance(tiers, tuple):
            object.__setattr__(self, "allowed_tiers", tuple(tiers))

    @property
    def band(self) -> str:
        """The latency band that applies: `latency_band`, else interactive."""
        return self.latency_band or DEFAULT_BAND

    @property
    def routing_mode(self) -> str:
        """The routing mode that applies: `mode`, else threshold."""
        return self.mode or DEFAULT_MODE

    @property
    def budget_ms(self) -> float | None:
        """The latency budget that applies: `max_latency_ms` in the interactive band, none in the others."""
        return self.max_latency_ms if self.band == "interactive" else None

    @property
    def time_price(self) -> float | None:
        """The value of time that applies, in USD per second: the tolerant band's, none in the others."""
        return self.value_of_time_usd_per_s if self.band == "tolerant" else None

    def updated(self, **changes: Any) -> RouteOptions:
        """These options with the given fields replaced (None leaves a field as it is); checked again."""
        given = {name: value for name, value in changes.items() if value is not None}
        return replace(self, **given) if given else self

    def over(self, base: RouteOptions) -> RouteOptions:
        """These options over `base`: each field left unset here (None, no tiers) is base's; exploration is allowed
        only where both allow it. How a request's fields win over its workload's, and those over a server's."""
        unset = {
            name: getattr(base, name)
            for name in _OVERRIDABLE
            if getattr(self, name) in (None, ()) and getattr(base, name) not in (None, ())
        }
        if not base.allow_explore:
            unset["allow_explore"] = False
        return replace(self, **unset) if unset else self


_OVERRIDABLE = tuple(f.name for f in fields(RouteOptions) if f.name != "allow_explore")


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message as the router reads it: its role and its text."""

    role: str
    content: str


DEFAULT_OPTIONS = RouteOptions()


@dataclass(frozen=True, slots=True)
class Conversation:
    """What a conversation's earlier turns left in the provider's prompt cache: the tier that served its last turn
    (`warm_tier`), how many tokens of its prefix are cached there (`cached_tokens`, as that turn's usage reported
    them: read plus written), and how long that turn's answer was (`output_tokens`; 0: unknown).

    A request that carries one is decided with that prefix priced at the cache-read rate on the warm tier and the
    cache-write rate on every other, and its answer priced at the last answer's length (`Policy.keep_warm`).
    """

    warm_tier: str
    cached_tokens: int = 0
    output_tokens: int = 0

    def __post_init__(self) -> None:
        _identifier("warm_tier", self.warm_tier, TIER_NAME)
        for name in ("cached_tokens", "output_tokens"):
            tokens = getattr(self, name)
            if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
                raise FieldError(name, f"must be a whole number >= 0, got {_shown(tokens)}")
            CACHED_TOKENS.check(tokens, name)


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """The text to route (a prompt, or chat messages: exactly one), its request_id, its routing options and, for a
    turn of a conversation whose earlier turns left a prompt cache, that `conversation`.

    `text` is what the classifier reads: the prompt, or the messages rendered as training renders them. An
    empty `request_id` lets the decider make one up.
    """

    prompt: str = ""
    messages: tuple[Message, ...] = ()
    options: RouteOptions = DEFAULT_OPTIONS
    request_id: str = ""
    conversation: Conversation | None = None
    text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.request_id:
            _identifier("request_id", self.request_id, REQUEST_ID)
        if not isinstance(self.options, RouteOptions):
            raise FieldError("options", f"must be RouteOptions, got {type(self.options).__name__}")
        if self.conversation is not None and not isinstance(self.conversation, Conversation):
            raise FieldError("conversation", f"must be a Conversation, got {type(self.conversation).__name__}")
        if self.messages:
            if self.prompt:
                raise FieldError("prompt", "set either prompt or messages, not both")
            text = self._rendered()
        else:
            text = self.prompt
            if not isinstance(text, str) or not text or text.isspace():
                raise FieldError("prompt", "must not be empty (set prompt or messages)")
            PROMPT.check(text, "prompt")
        object.__setattr__(self, "text", text)

    def _rendered(self) -> str:
        messages = self.messages
        if not isinstance(messages, tuple):
            messages = tuple(messages)
            object.__setattr__(self, "messages", messages)
        MESSAGES.check(messages, "messages")
        if all(not m.content or m.content.isspace() for m in messages):
            raise FieldError("messages", "no message has any content")
        text = render_messages({"role": m.role or "user", "content": m.content} for m in messages)
        PROMPT.check(text, "messages")
        return text

    @property
    def text_field(self) -> str:
        """The field the text came from: `prompt` or `messages`."""
        return "messages" if self.messages else "prompt"

    def check_bytes(self, max_bytes: int) -> None:
        """Refuse a text over `max_bytes` of UTF-8: a server's own limit (`tierwise serve --max-prompt-bytes`)."""
        text = self.text
        if len(text) * 4 <= max_bytes:  # a character is 1 to 4 bytes: most texts pass without encoding them
            return
        size = len(text) if len(text) > max_bytes else len(text.encode("utf-8"))
        if size > max_bytes:
            raise FieldError(self.text_field, f"is over the size limit ({size:,} > {max_bytes:,} bytes)")


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """`value` as one of `allowed`, in any case."""
    spelled = value.lower() if isinstance(value, str) else None
    if spelled not in allowed:
        raise FieldError(name, f"{_shown(value)} is not one of {', '.join(allowed)}")
    return spelled


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FieldError(name, f"must be a finite number, got {_shown(value)}")
    return value


def _identifier(name: str, value: object, limit: Limit = IDENTIFIER) -> None:
    if not isinstance(value, str):
        raise FieldError(name, f"must be a string, got {type(value).__name__}")
    if not value:
        raise FieldError(name, "must not be empty")
    limit.check(value, name)


def _shown(value: object) -> str:
    """A value for an error message, cut short: a caller's value may be megabytes."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
