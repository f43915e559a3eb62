"""The tier ladder: named tiers, cheapest first, with the models that belong to each and their prices."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import InputError


class TierError(InputError):
    """A tier ladder file that cannot be used."""


# Anthropic's published multipliers of the input price (docs.anthropic.com/en/docs/about-claude/pricing):
# prompt-cache reads ("cache hits & refreshes") 0.1x, 5-minute cache writes 1.25x; Message Batches 50% of list.
CACHE_READ_MULTIPLIER = 0.1
CACHE_WRITE_MULTIPLIER = 1.25
BATCH_MULTIPLIER = 0.5
# Anthropic's prompt cache (docs.anthropic.com/en/docs/build-with-claude/prompt-caching): an entry lives 5 minutes
# from its last use (each read refreshes it), and a prompt prefix shorter than the model's minimum cacheable
# length is not cached. The smallest published minimum, 1024 tokens (Claude Sonnet 4.x, Opus 4.1), is the
# default; the shipped ladder gives each tier its model's own.
CACHE_LIFETIME_S = 300.0
MIN_CACHEABLE_TOKENS = 1024
# Who serves a tier: Anthropic's Messages API, or any server speaking OpenAI's Chat Completions (vLLM, Ollama, ...).
ANTHROPIC = "anthropic"
OPENAI = "openai"
PROVIDERS = (ANTHROPIC, OPENAI)


@dataclass(frozen=True)
class Tier:
    """One rung of the ladder: a name, the models that count as it, list prices per million tokens, the price
    multipliers for cached prompt tokens and the Batch API, and published speed figures when the ladder gives
    them (`first_token_ms`, `output_tokens_per_s`, and `time_source` saying where they come from), and the shortest
    prompt prefix its provider caches (`min_cacheable_tokens`); who serves it (`provider`), at which `base_url`
    (None: the proxy's `--upstream`) and with the key in environment variable `api_key_env` (None: the caller's)."""

    name: str
    models: tuple[str, ...]
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    cache_read_multiplier: float = CACHE_READ_MULTIPLIER
    cache_write_multiplier: float = CACHE_WRITE_MULTIPLIER
    batch_multiplier: float = BATCH_MULTIPLIER
    min_cacheable_tokens: int = MIN_CACHEABLE_TOKENS
    first_token_ms: float | None = None
    output_tokens_per_s: float | None = None
    time_source: str = ""
    provider: str = ANTHROPIC
    base_url: str | None = None
    api_key_env: str | None = None

    @property
    def model(self) -> str:
        """The model a router answer recommends for this tier (the first one listed)."""
        return self.models[0]

    def token_cost(
        self, input_tokens: float, output_tokens: float, cache_read_tokens: float = 0.0, cache_write_tokens: float = 0.0
    ) -> float:
        """Price of an attempt in USD from its token counts, so costs can be estimated where none is logged.

        Input tokens that were read from or written to the prompt cache (the API's `cache_read_input_tokens`,
        `cache_creation_input_tokens`; not part of its `input_tokens`) cost the input price times the
        tier's cache multipliers.
        """
        prompt = (
            input_tokens
            + cache_read_tokens * self.cache_read_multiplier
            + cache_write_tokens * self.cache_write_multiplier
        )
        return (prompt * self.input_usd_per_mtok + output_tokens * self.output_usd_per_mtok) / 1e6

    def cached_prefix_cost(self, tokens: int, warm: bool, batch: bool = False) -> float:
        """USD for a conversation's cached prefix of `tokens` on this tier: read from the cache where the tier is
        warm (it served the last turn), written to it again where it is cold; at the Batch rate for a batch."""
        return self.paid(self.token_cost(0, 0, tokens, 0) if warm else self.token_cost(0, 0, 0, tokens), batch)

    def paid(self, cost: float, batch: bool) -> float:
        """A list-price cost as it is paid: at the Batch API's rate for a batch."""
        return cost * self.batch_multiplier if batch else cost

    @property
    def has_speed(self) -> bool:
        """Whether the ladder gives this tier's published speed (first-token time and output rate)."""
        return self.first_token_ms is not None and self.output_tokens_per_s is not None


@dataclass(frozen=True)
class TierLadder:
    """Tiers ordered cheapest first; the last one is the top tier every router can fall back to."""

    tiers: tuple[Tier, ...]
    source: str = field(default="<default>", compare=False)

    def __post_init__(self) -> None:
        if not self.tiers:
            raise TierError(f"{self.source}: a tier ladder needs at least one [[tier]]")
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise TierError(f"{self.source}: tier names must be unique, got {names}")
        owners: dict[str, str] = {}
        for tier in self.tiers:
            for model in tier.models:
                if model in owners:
                    raise TierError(
                        f"{self.source}: model {model!r} is listed in tiers {owners[model]!r} and {tier.name!r}"
                    )
                owners[model] = tier.name

    @classmethod
    def load(cls, path: str | Path | None = None) -> TierLadder:
        """Read a ladder TOML file, or the shipped Claude ladder when no path is given."""
        if path is None:
            text = resources.files(__package__).joinpath("default_tiers.toml").read_text()
            source = "<default Claude ladder>"
        else:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise TierError(f"cannot read tier ladder {path}: {exc.strerror}") from exc
            source = str(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise TierError(f"{source}: not valid TOML: {exc}") from exc
        ladder = cls.from_dict(data, source=source)
        ladder.check_price_order()
        return ladder

    def check_price_order(self) -> None:
        """Refuse a ladder whose tiers are not in increasing price order: each tier must cost at least as much as
        the one below it on input and on output, and more on one of them (cheapest first is what `top` means)."""
        for lower, upper in zip(self.tiers, self.tiers[1:], strict=False):
            lower_prices = (lower.input_usd_per_mtok, lower.output_usd_per_mtok)
            upper_prices = (upper.input_usd_per_mtok, upper.output_usd_per_mtok)
            dearer = all(u >= lo for u, lo in zip(upper_prices, lower_prices, strict=True))
            if not dearer or upper_prices == lower_prices:
                raise TierError(
                    f"{self.source}: tiers must be in increasing price order, cheapest first, but {upper.name!r} "
                    f"(input {upper_prices[0]:g}, output {upper_prices[1]:g} USD per Mtok) does not cost more than "
                    f"{lower.name!r} below it (input {lower_prices[0]:g}, output {lower_prices[1]:g})"
                )

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> TierLadder:
        """Build a ladder from the TOML/manifest shape `{"tier": [{name, models, prices}, ...]}`."""
        entries = data.get("tier")
        if not isinstance(entries, list) or not entries:
            raise TierError(f"{source}: expected one or more [[tier]] tables")
        tiers = []
        for i, entry in enumerate(entries):
            where = f"{source}: tier #{i + 1}"
            try:
                name = entry["name"]
                models = entry["models"]
                prices = (float(entry["input_usd_per_mtok"]), float(entry["output_usd_per_mtok"]))
            except KeyError as exc:
                raise TierError(f"{where}: missing key {exc.args[0]!r}") from exc
            except (TypeError, ValueError) as exc:
                raise TierError(f"{where}: prices must be numbers") from exc
            if not isinstance(name, str) or not name:
                raise TierError(f"{where}: 'name' must be a non-empty string")
            if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
                raise TierError(f"{where} ({name}): 'models' must be a non-empty list of strings")
            if not all(math.isfinite(price) and price >= 0 for price in prices):
                raise TierError(f"{where} ({name}): prices must be finite and cannot be negative, got {prices}")
            tiers.append(Tier(name, tuple(models), *prices, **_optional_figures(entry, f"{where} ({name})")))
        return cls(tuple(tiers), source=source)

    def to_dict(self) -> dict[str, Any]:
        """The TOML/manifest shape, so a ladder can travel inside a model bundle."""
        return {"tier": [{**asdict(t), "models": list(t.models)} for t in self.tiers]}

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tiers]

    @property
    def top(self) -> Tier:
        return self.tiers[-1]

    def __len__(self) -> int:
        return len(self.tiers)

    def index(self, name: str) -> int:
        """Position of a tier by name; raises KeyError naming the known tiers when it is not one."""
        for i, tier in enumerate(self.tiers):
            if tier.name == name:
                return i
        raise KeyError(f"unknown tier {name!r}; tiers are {self.names}")

    def model_to_tier(self) -> dict[str, int]:
        """Map of every model name in the ladder to its tier index."""
        return {m: i for i, t in enumerate(self.tiers) for m in t.models}


# Optional per-tier figures: multipliers of the list price (> 0 when given), and published speed (> 0).
_MULTIPLIERS = ("cache_read_multiplier", "cache_write_multiplier", "batch_multiplier")
_SPEEDS = ("first_token_ms", "output_tokens_per_s")


def _optional_figures(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """The optional keys of a [[tier]] table, checked: positive finite numbers, a whole minimum cacheable length, and
    speed given whole or not at all."""
    figures: dict[str, Any] = {}
    for key in (*_MULTIPLIERS, *_SPEEDS):
        value = entry.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise TierError(f"{where}: {key!r} must be a number > 0, got {value!r}")
        figures[key] = float(value)
    tokens = entry.get("min_cacheable_tokens")
    if tokens is not None:
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise TierError(f"{where}: 'min_cacheable_tokens' must be a whole number >= 1, got {tokens!r}")
        figures["min_cacheable_tokens"] = tokens
    if sum(key in figures for key in _SPEEDS) == 1:
        raise TierError(f"{where}: give both 'first_token_ms' and 'output_tokens_per_s', or neither")
    source = entry.get("time_source", "")
    if not isinstance(source, str):
        raise TierError(f"{where}: 'time_source' must be a string")
    if source:
        figures["time_source"] = source
    return figures | _provider(entry, where)


def _provider(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """Who serves a [[tier]], checked: a known provider, an http(s) base URL (required for an OpenAI-compatible
    one), the name of an environment variable for its key."""
    found: dict[str, Any] = {}
    provider = entry.get("provider", ANTHROPIC)
    if provider not in PROVIDERS:
        raise TierError(f"{where}: 'provider' must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    if provider != ANTHROPIC:
        found["provider"] = provider
    base_url = entry.get("base_url")
    if base_url is not None:
        if not isinstance(base_url, str) or not re.fullmatch(r"https?://[^\s/]+(/\S*)?", base_url):
            raise TierError(f"{where}: 'base_url' must be an http(s) URL, got {base_url!r}")
        found["base_url"] = base_url.rstrip("/")
    elif provider == OPENAI:
        raise TierError(f"{where}: a tier with provider 'openai' needs its 'base_url'")
    key_env = entry.get("api_key_env")
    if key_env is not None:
        if not isinstance(key_env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env):
            raise TierError(f"{where}: 'api_key_env' must name an environment variable, got {key_env!r}")
        found["api_key_env"] = key_env
    return found
