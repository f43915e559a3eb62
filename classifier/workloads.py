"""A policy per workload: the TOML file `tierwise serve --workloads`, `tierwise proxy --workloads` and `tierwise audit
--workloads` read, and `tierwise audit` writes (`recommended.workloads.toml`).

    [default]                      # requests without a workload, or with one the file does not name
    band = "interactive"           # "interactive" | "tolerant" | "async"
    quality_target = 0.9

    [workload.nightly-summaries]
    band = "async"
    quality_target = 0.85
    allowed_tiers = ["haiku", "sonnet"]
    # also: max_latency_ms, value_of_time_usd_per_s, mode ("threshold" | "cost"), explore_rate

A `[workload.NAME]` entry states what differs from `[default]`: a key it leaves out is the default entry's. Every
key is checked on load; a bad file is refused with a `WorkloadError` naming the entry and the field.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import InputError
from .limits import ALLOWED_TIERS, IDENTIFIER, TIER_NAME, FieldError
from .request import BANDS, MODES, RouteOptions

DEFAULT = "default"
WORKLOAD = "workload"
# The metrics label of every workload a file does not name (and of requests without one).
OTHER = "other"


class WorkloadError(InputError):
    """A workloads file that cannot be used; the message names the file, the entry and the field."""


@dataclass(frozen=True)
class WorkloadPolicy:
    """What requests of one workload are routed with; None: not set here (the default entry's, else the server's)."""

    band: str | None = None
    quality_target: float | None = None
    allowed_tiers: tuple[str, ...] | None = None
    max_latency_ms: float | None = None
    value_of_time_usd_per_s: float | None = None
    mode: str | None = None
    explore_rate: float | None = None

    def over(self, base: WorkloadPolicy) -> WorkloadPolicy:
        """This entry's keys over `base`'s: what a workload entry means on top of the default entry."""
        given = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return replace(base, **given)

    def route_options(self, timed: bool = True) -> RouteOptions:
        """The entry as the routing options a request's own go over; its latency budget and value of time only for a
        model with a time model (`timed`), as the server's own defaults (`serve --max-latency-ms`)."""
        return self._options[timed]

    @cached_property
    def _options(self) -> dict[bool, RouteOptions]:
        untimed = RouteOptions(
            quality_target=self.quality_target,
            allowed_tiers=self.allowed_tiers or (),
            latency_band=self.band,
            mode=self.mode,
        )
        timed = untimed.updated(
            max_latency_ms=self.max_latency_ms, value_of_time_usd_per_s=self.value_of_time_usd_per_s
        )
        return {False: untimed, True: timed}

    def to_toml(self) -> list[str]:
        """The entry's set keys as TOML lines."""
        set_keys = [f.name for f in fields(self) if getattr(self, f.name) is not None]
        return [f"{key} = {_toml_value(getattr(self, key))}" for key in set_keys]


@dataclass(frozen=True)
class Workloads:
    """The default entry and one entry per named workload (each already merged over the default)."""

    default: WorkloadPolicy = field(default_factory=WorkloadPolicy)
    named: Mapping[str, WorkloadPolicy] = field(default_factory=dict)
    source: str = field(default="<workloads>", compare=False)

    def policy_for(self, workload: str | None) -> WorkloadPolicy:
        """The policy of a request's workload: its entry, or the default entry for none or an unknown one."""
        return self.named.get(workload or "", self.default)

    @property
    def names(self) -> list[str]:
        return list(self.named)

    def resolve(
        self, request: RouteOptions, server: RouteOptions, timed: bool = True
    ) -> tuple[RouteOptions, WorkloadPolicy]:
        """The options a request is routed with, and its workload's policy: the one precedence rule.

        Field by field, the first that sets it: the request; its workload's entry (its own keys, then the file's
        [default]; a workload the file does not name, or none, gets [default]); the server's defaults (`server`:
        `serve --max-latency-ms`, the proxy's routing flags); then the policy's own (the bundle's quality target,
        interactive, threshold, every tier). The workload is the request's, else the server's. A latency budget
        and value of time from the entry apply only where the model has a time model (`timed`).
        """
        policy = self.policy_for(request.workload or server.workload)
        return request.over(policy.route_options(timed)).over(server), policy

    def label(self, workload: str | None) -> str:
        """A request's workload as a metrics label: a name the file gives, else `other` (bounded by the file)."""
        return workload if workload in self.named else OTHER

    @classmethod
    def load(cls, path: str | Path) -> Workloads:
        """Read and check a workloads TOML file."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise WorkloadError(f"cannot read workloads file {path}: {exc.strerror or exc}") from exc
        return cls.from_toml(text, source=str(path))

    @classmethod
    def from_toml(cls, text: str, source: str = "<workloads>") -> Workloads:
        if not text.strip():  # emptied by mistake, or caught half-written by an editor: never "no policy"
            raise WorkloadError(f"{source}: empty; a workloads file has a [default] or a [workload.NAME] entry")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise WorkloadError(f"{source}: not valid TOML: {exc}") from exc
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<workloads>") -> Workloads:
        """Check the file's shape `{"default": {...}, "workload": {NAME: {...}}}` (both optional)."""
        unknown = sorted(set(data) - {DEFAULT, WORKLOAD})
        if unknown:
            raise WorkloadError(f"{source}: unknown table(s) {unknown}; expected [default] and [workload.NAME]")
        default = _entry(data.get(DEFAULT, {}), f"{source}: [default]")
        entries = data.get(WORKLOAD, {})
        if not isinstance(entries, Mapping):
            raise WorkloadError(f"{source}: 'workload' must hold tables [workload.NAME]")
        named = {}
        for name, entry in entries.items():
            where = f"{source}: [workload.{name}]"
            try:
                IDENTIFIER.check(name, "workload name")
            except FieldError as exc:
                raise WorkloadError(f"{where}: {exc}") from exc
            named[name] = _entry(entry, where).over(default)
        return cls(default, named, source)

    def check_tiers(self, tiers: Sequence[str]) -> None:
        """Refuse an entry whose allowed_tiers names a tier outside `tiers` (the ladder routed on)."""
        entries = [("[default]", self.default), *((f"[workload.{n}]", p) for n, p in self.named.items())]
        for where, policy in entries:
            unknown = [t for t in policy.allowed_tiers or () if t not in tiers]
            if unknown:
                raise WorkloadError(
                    f"{self.source}: {where} allowed_tiers: unknown tier(s) {unknown}; the tiers are {list(tiers)}"
                )

    def to_toml(self, notes: Mapping[str, Sequence[str]] | None = None) -> str:
        """The file's text; `notes` are comment lines above an entry (keyed by workload name, or "default")."""
        notes = notes or {}
        lines: list[str] = []
        for name, policy, header in (
            (DEFAULT, self.default, "[default]"),
            *((name, policy, f"[workload.{_toml_value(name)}]") for name, policy in self.named.items()),
        ):
            lines += [*(f"# {note}" for note in notes.get(name, ())), header, *policy.to_toml(), ""]
        return "\n".join(lines)


def _toml_value(value: Any) -> str:
    """A TOML literal for a string, number or list of strings (TOML basic strings read JSON's escapes)."""
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(float(value)) if isinstance(value, float) else str(value)


def _number(low: float, high: float = math.inf, low_open: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        number_ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        inside = number_ok and (value > low if low_open else value >= low) and value <= high
        if not inside:
            bounds = f"{'>' if low_open else '>='} {low:g}" + ("" if high == math.inf else f" and <= {high:g}")
            raise ValueError(f"must be a number {bounds}, got {value!r}")
        return float(value)

    return check


def _one_of(choices: Sequence[str]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in choices:
            raise ValueError(f"must be one of {list(choices)}, got {value!r}")
        return value

    return check


def _tiers(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(t, str) and t for t in value):
        raise ValueError(f"must be a non-empty list of tier names, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"names a tier twice: {value!r}")
    ALLOWED_TIERS.check(value)
    for name in value:
        TIER_NAME.check(name)
    return tuple(value)


KEYS: dict[str, Callable[[Any], Any]] = {
    "band": _one_of(BANDS),
    "quality_target": _number(0.0, 1.0),
    "allowed_tiers": _tiers,
    "max_latency_ms": _number(0.0, low_open=True),
    "value_of_time_usd_per_s": _number(0.0),
    "mode": _one_of(MODES),
    "explore_rate": _number(0.0, 1.0),
}


def _entry(entry: Any, where: str) -> WorkloadPolicy:
    """One entry's keys, each checked; the error names the entry and the field."""
    if not isinstance(entry, Mapping):
        raise WorkloadError(f"{where}: must be a table of keys, got {entry!r}")
    values = {}
    for key, value in entry.items():
        if key not in KEYS:
            raise WorkloadError(f"{where} {key}: unknown key; known keys are {sorted(KEYS)}")
        try:
            values[key] = KEYS[key](value)
        except (ValueError, FieldError) as exc:
            problem = exc.problem if isinstance(exc, FieldError) else str(exc)
            raise WorkloadError(f"{where} {key}: {problem}") from exc
    return WorkloadPolicy(**values)
