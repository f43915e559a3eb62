"""`tierwise audit`: read the logs once, measure every lever on every workload, write the report directory.

The directory follows `check_output_dir` (missing, empty, or a previous audit, whose files are replaced); each file
is written whole or not at all (`atomic_file`). On a terminal each workload's levers show as a progress bar; piped,
one summary line says how long they took.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierwise.classifier.outputs import atomic_file, check_output_dir
from tierwise.classifier.tiers import TierLadder
from tierwise.classifier.workloads import Workloads
from tierwise.training.audit.data import ROW, audit_data
from tierwise.training.audit.page import render_page
from tierwise.training.audit.recommend import recommend
from tierwise.training.audit.report import FORMAT, Band, build_report, workload_levers
from tierwise.training.data.attempts import WORKLOAD
from tierwise.training.data.logs import AttemptLog
from tierwise.training.fit.policy_choice import DEFAULT_QUALITY_FLOOR
from tierwise.training.progress import progress

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
RECOMMENDED = "recommended.workloads.toml"
OUTPUTS = (REPORT_JSON, REPORT_HTML, RECOMMENDED)
WHAT = "tierwise audit report"
ENCODER = "static"  # the served default: what a router of the workload would read


@dataclass(frozen=True)
class AuditResult:
    """report.json's contents and the files written."""

    report: dict[str, Any]
    files: list[Path]


def is_audit_output(path: Path) -> bool:
    """Whether a directory holds a previous audit (its report.json says so) and nothing else but its files."""
    try:
        found = json.loads((path / REPORT_JSON).read_text())
    except (OSError, ValueError):
        return False
    extra = {p.name for p in path.iterdir()} - set(OUTPUTS)
    return isinstance(found, dict) and found.get("format") == FORMAT and not extra


def run_audit(
    log: AttemptLog,
    ladder: TierLadder,
    out: Path,
    workloads: Workloads | None = None,
    quality_target: float = DEFAULT_QUALITY_FLOOR,
    cache: bool = True,
    workload_column: str = WORKLOAD,
) -> AuditResult:
    """Audit the logs' workloads (the requests' `workload_column`) on this ladder and write report.json, report.html
    and the recommended policies."""
    from tierwise.training.embedding.embed import embed
    from tierwise.training.embedding.encoders import load_encoder

    check_output_dir(out, is_audit_output, WHAT)
    if workloads is not None:
        workloads.check_tiers(ladder.names)
    data = audit_data(log, ladder, workload_column)
    vectors = embed(data.labels.frame["prompt"], load_encoder(ENCODER), cache=cache)
    measured, bands = {}, {}
    with progress(len(data.workloads), "auditing workloads", "workload", report_after_s=0) as update:
        for workload in data.workloads:
            bands[workload.name] = Band.of(workload, workloads)
            own = vectors[workload.frame[ROW].to_numpy()]
            measured[workload.name] = workload_levers(workload, own, quality_target, bands[workload.name])
            update(1)
    report = build_report(data, measured, quality_target, workloads, bands)
    recommended, notes = recommend(report, workloads)
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        REPORT_JSON: json.dumps(report, indent=1, allow_nan=False) + "\n",
        REPORT_HTML: render_page(report),
        RECOMMENDED: recommended.to_toml(notes),
    }
    for name, text in texts.items():
        with atomic_file(out / name) as tmp:
            tmp.write_text(text)
    return AuditResult(report, [out / name for name in texts])
