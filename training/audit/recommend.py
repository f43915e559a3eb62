"""recommended.workloads.toml: a policy per workload drawn from the audit, in the file shape `tierwise serve
--workloads` reads (`tierwise.classifier.workloads`).

Each audited workload gets its band (the workloads file's, else the logged one, else interactive), the quality
target audited against, and the tiers it may use: every tier where its cross-fitted router met the target and
saved more than right-sizing with the whole interval above zero, else its right-size tier and those above it (the
fallback chain can still escalate). Other keys of the workloads file's entries are kept. Requests without a
workload are recommended for in `[default]`. Each entry is preceded by comments saying what the audit found.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tierwise.classifier.workloads import DEFAULT, WorkloadPolicy, Workloads
from tierwise.training.audit.table import LEVER_TITLES, share, usd
from tierwise.training.data.groups import NONE

DEFAULT_BAND = "interactive"
CACHE_HINT = " (mark the repeated prompt prefix with cache_control)"


def _routes(levers: dict[str, Any]) -> bool:
    routed = levers["route"]
    low = routed.get("vs_right_size_ci", [None, None])[0]
    return bool(routed.get("meets_target")) and low is not None and low > 0


def _notes(name: str, entry: dict[str, Any]) -> list[str]:
    lines = [f"{name}: {entry['requests']:,} requests, {usd(entry['spend_usd'])} USD as logged"]
    for lever, found in entry["levers"].items():
        if not found["saving_usd"] or found.get("applies") == "no":
            continue
        low, high = found["saving_ci"]
        what = f" ({found['tier']})" if found.get("tier") else f" ({found['applies']})" if "applies" in found else ""
        quality = found["quality_change"]
        title = LEVER_TITLES[lever] + what + (CACHE_HINT if lever == "cache" else "")
        lines.append(
            f"  {title}: saves {usd(found['saving_usd'])} USD ({share(found['saving_share'])}), "
            f"95% [{usd(low)}, {usd(high)}], quality {'-' if quality is None else f'{quality:+.3f}'}"
        )
    return lines


def recommend(report: dict[str, Any], given: Workloads | None) -> tuple[Workloads, dict[str, list[str]]]:
    """The recommended policies and the comments to write above them."""
    tiers: list[str] = report["tiers"]
    target = report["quality_target"]
    default = given.default if given is not None else WorkloadPolicy()
    default = replace(default, band=default.band or DEFAULT_BAND, quality_target=target)
    named: dict[str, WorkloadPolicy] = {}
    notes = {DEFAULT: ["requests without a workload, or with one not named below"]}
    for name, entry in report["workloads"].items():
        levers = entry["levers"]
        tier = levers["right_size"]["tier"]
        if tier is None:
            continue
        allowed = tiers if _routes(levers) else tiers[tiers.index(tier) :]
        base = given.named.get(name, default) if given is not None else default
        policy = replace(base, band=entry["band"] or DEFAULT_BAND, quality_target=target, allowed_tiers=tuple(allowed))
        if name == NONE:
            default = policy
            notes[DEFAULT] += _notes("requests without a workload", entry)
        else:
            named[name] = policy
            notes[name] = _notes(name, entry)
    return Workloads(default, named), notes
