"""`tierwise eval --by COLUMN`: the evaluations of each group of requests (a workload, a category), as the
terminal and the JSON show them (`tierwise.training.evaluation.evaluate.evaluate_by` makes them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tierwise.training.evaluation.report import EvalReport
from tierwise.training.evaluation.table import headline_lines


@dataclass(frozen=True)
class GroupReports:
    """One evaluation per group (largest first), and the groups that could not be evaluated, with why."""

    column: str
    reports: dict[str, EvalReport]
    skipped: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """`by` in eval's JSON: each group's headline (as the top-level `router`) and its request counts."""
        groups = {
            name: {"requests": r.requests, "evaluated": r.evaluated, "router": r.headline()}
            for name, r in self.reports.items()
        }
        return {"column": self.column, "groups": groups, "skipped": self.skipped}

    def lines(self) -> list[str]:
        """The headline of every group, for the terminal."""
        lines = []
        for name, report in self.reports.items():
            lines += ["", f"== {self.column} {name}: {report.evaluated} of {report.requests} requests scored"]
            lines += headline_lines(report)
        lines += [f"\n== {self.column} {name}: not evaluated ({why})" for name, why in self.skipped.items()]
        return lines
