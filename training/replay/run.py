"""`tierwise replay`: settle censored requests by replaying them on the tiers they never tried.

One run: read and label the logs, pick the (request, tier) replays, reconcile and collect whatever a previous
run left in flight, submit what is still missing (within the budget), wait for the batches, grade the
answers, and write one attempt row per graded answer to --out. Everything the API returns is kept in the
state file first, so rerunning the same command continues where the last one stopped.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from tierwise.classifier.errors import InputError
from tierwise.classifier.tiers import TierLadder
from tierwise.classifier.usage import Usage, attempt_cost
from tierwise.training.data.attempts import SCHEMA, empty_frame
from tierwise.training.data.costs import CHARS_PER_TOKEN
from tierwise.training.data.labels import label_requests, write_table
from tierwise.training.data.logs import AttemptLog, LogError
from tierwise.training.progress import progress
from tierwise.training.replay.batches import BatchRunner, make_client, retryable
from tierwise.training.replay.budget import Budget, estimate_usd, plan_by_tier, render_plan
from tierwise.training.replay.censored import ReplayItem, custom_id, find_censored, message_params
from tierwise.training.replay.graders import ExactGrader, GradeInput, Grader, GradingError, JudgeGrader, load_grader
from tierwise.training.replay.state import FAILED_OUTCOMES, GradeRecord, ReplayState, RequestInfo, Submission

GRADE_CHUNK = 100
GRADE_SAVE_SECONDS = 20.0


@dataclass
class ReplayConfig:
    """Everything `tierwise replay` takes besides the logs and the ladder; see the command's --help."""

    out: Path
    grader: str = "exact"
    budget_usd: float | None = None
    max_requests: int | None = None
    dry_run: bool = False
    state: Path | None = None
    judge_model: str | None = None
    reference_column: str | None = None
    response_column: str | None = None
    max_tokens: int = 1024
    temperature: float | None = None
    poll_interval: float = 60.0
    max_retries: int = 8
    item_retries: int = 2
    batch_size: int = 10_000
    judge_concurrency: int = 4
    wait: bool = True
    timeout: float = 600.0
    base_url: str | None = None

    @property
    def state_path(self) -> Path:
        """--state, or `<out stem>.replay-state.json` next to --out."""
        return self.state or self.out.with_name(f"{self.out.stem}.replay-state.json")

    def settings(self, ladder: TierLadder) -> dict[str, Any]:
        """What the requests' content depends on; a state file is only resumed with the same settings."""
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "models": {t.name: t.model for t in ladder.tiers},
        }


@dataclass
class ReplayReport:
    """What a run did, for the terminal and for tests."""

    censored_requests: int
    planned: dict[str, int]
    ungradable_requests: int
    submitted: int = 0
    budget_skipped: int = 0
    budget_skipped_usd: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    in_flight: int = 0
    graded: Counter[bool] = field(default_factory=Counter)
    ungraded: list[str] = field(default_factory=list)
    grading_budget_stop: int = 0
    replay_usd: float = 0.0
    grading_usd: float = 0.0
    rows_written: int = 0
    out: Path | None = None
    state: Path | None = None

    def render(self) -> str:
        """A plain-text summary: counts, money, and every item that needs the user's attention."""
        per_tier = ", ".join(f"{tier} {n}" for tier, n in self.planned.items()) or "none"
        lines = [
            f"censored requests: {self.censored_requests}; replays needed: {sum(self.planned.values())} ({per_tier})",
        ]
        if self.ungradable_requests:
            lines.append(f"  skipped {self.ungradable_requests} censored requests with nothing to grade against")
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())) or "none yet"
        lines += [
            f"submitted this run: {self.submitted}; outcomes so far: {outcomes}; in flight: {self.in_flight}",
            f"graded: {self.graded[True]} passed, {self.graded[False]} failed; ungraded: {len(self.ungraded)}",
            f"cost: replays ${self.replay_usd:,.4f} (actual, batch price) + grading ${self.grading_usd:,.4f}"
            f" = ${self.replay_usd + self.grading_usd:,.4f}",
        ]
        if self.budget_skipped:
            lines.append(
                f"budget: {self.budget_skipped} replays not sent (${self.budget_skipped_usd:,.4f} estimated); "
                "raise --budget-usd and rerun to continue"
            )
        if self.grading_budget_stop:
            lines.append(f"budget: {self.grading_budget_stop} answers left ungraded; raise --budget-usd and rerun")
        if self.in_flight:
            lines.append("batches are still in flight: rerun the same command to collect them")
        if self.failed:
            lines.append(f"failed replays (retries exhausted or not retryable): {len(self.failed)}")
            lines += [f"  {request_id} on {tier}: {reason}" for request_id, tier, reason in self.failed[:20]]
        lines += [f"  ungraded: {reason}" for reason in self.ungraded[:20]]
        if self.out is not None:
            lines.append(f"wrote {self.rows_written} attempt rows to {self.out} (state: {self.state})")
        return "\n".join(lines)


def _gradable(info: RequestInfo, grader: Grader) -> bool:
    """Whether the grader will have what it needs for this request's answers (exact needs a reference)."""
    return info.reference is not None or not isinstance(grader, ExactGrader)


def _item_status(item: ReplayItem, state: ReplayState, item_retries: int) -> str:
    """done, in_flight, failed (retries used up, or not retryable) or pending."""
    attempts = state.attempts(item.key)
    if any(s.outcome == "succeeded" for s in attempts):
        return "done"
    if any(s.in_flight for s in attempts):
        return "in_flight"
    failures = [s for s in attempts if s.outcome in FAILED_OUTCOMES]
    if failures and (not retryable(failures[-1]) or len(failures) > item_retries):
        return "failed"
    return "pending"


class Replay:
    """One `tierwise replay` run over a configuration."""

    def __init__(
        self, config: ReplayConfig, log: AttemptLog, ladder: TierLadder, echo: Callable[[str], None] = print
    ) -> None:
        self.config = config
        self.echo = echo
        self.log, self.labels = log, label_requests(log, ladder)
        if config.out.resolve() in {path.resolve() for path in self.log.files}:
            raise LogError(f"--out {config.out} is one of the input logs; replay never overwrites its sources")
        self.ladder = self.labels.ladder
        self.grader = load_grader(config.grader, self.ladder, config.judge_model, log.success_threshold)
        items, self.infos = find_censored(
            self.log,
            self.labels,
            config.max_requests,
            config.max_tokens,
            config.reference_column,
            config.response_column,
        )
        gradable = {r for r, info in self.infos.items() if _gradable(info, self.grader)}
        if self.infos and not gradable:
            raise InputError(
                "--grader exact: no censored request has a reference answer; name the column with "
                "--reference-column, or use --grader judge"
            )
        self.items = [item for item in items if item.request_id in gradable]
        self.budget = Budget(config.budget_usd)
        self.report = ReplayReport(
            censored_requests=len(self.infos),
            planned=dict(Counter(item.tier for item in self.items)),
            ungradable_requests=len(self.infos) - len(gradable),
        )

    # --- money ------------------------------------------------------------------------------------------

    def _grading_estimate(self, request_id: str, answer_chars: float) -> float:
        info = self.infos.get(request_id)
        reference = (info.successful_answer or info.reference or "") if info else ""
        prompt = info.prompt if info else ""
        return self.grader.estimate_usd(len(prompt), int(answer_chars), len(reference))

    def _item_estimate(self, item: ReplayItem) -> float:
        """Replay plus its grading, so the budget reserves both before anything is sent."""
        grading = self._grading_estimate(item.request_id, item.est_output_tokens * CHARS_PER_TOKEN)
        return estimate_usd(item, self.ladder) + grading

    def _committed(self, state: ReplayState) -> float:
        """Spent or reserved: the state's own account plus grading still owed for in-flight or ungraded answers."""
        reserved = 0.0
        for submission in state.submissions.values():
            if submission.outcome not in (None, "succeeded") or self.grader.key in state.grades.get(
                submission.custom_id, {}
            ):
                continue
            answer_chars = len(submission.answer) if submission.answer is not None else 0
            reserved += self._grading_estimate(submission.request_id, answer_chars)
        return state.committed_usd() + reserved

    def _price(self, submission: Submission, usage: dict[str, int]) -> float:
        tier = self.ladder.tiers[self.ladder.index(submission.tier)]
        return attempt_cost(tier, Usage.from_mapping(usage), batch=True)

    # --- the run ----------------------------------------------------------------------------------------

    def dry_run(self) -> ReplayReport:
        """Print what a run would send per tier and its estimated cost; sends nothing, writes nothing."""
        config = self.config
        state = ReplayState.peek(config.state_path, config.settings(self.ladder))
        pending = [item for item in self.items if _item_status(item, state, config.item_retries) == "pending"]
        done = len(self.items) - len(pending)
        grading = sum(self._grading_estimate(i.request_id, i.est_output_tokens * CHARS_PER_TOKEN) for i in pending)
        self.echo(
            f"{len(self.infos)} censored requests; {len(pending)} replays to send"
            + (f" ({done} already done or in flight in {config.state_path})" if done else "")
        )
        self.echo(render_plan(plan_by_tier(pending, self.ladder, config.max_tokens), grading, self.grader.key))
        if self.budget.limit_usd is not None:
            fits = self._admit(pending, self._committed(state))
            self.echo(f"--budget-usd {self.budget.limit_usd:g}: {len(fits)} of {len(pending)} replays fit")
        return self.report

    def run(self) -> ReplayReport:
        """Submit, wait, grade and write; resumable at every step."""
        config = self.config
        state = ReplayState.open(config.state_path, config.settings(self.ladder))
        try:
            client = make_client(config.max_retries, config.timeout, config.base_url)
            if isinstance(self.grader, JudgeGrader):
                self.grader.client = client
            for request_id in {item.request_id for item in self.items}:
                state.requests[request_id] = self.infos[request_id]
            state.save()
            runner = BatchRunner(client, state, self._price)
            self._settle(runner, state)
            self._grade(state)
            self._write(state)
        finally:
            state.close()
        return self.report

    def _admit(self, pending: list[ReplayItem], committed: float) -> list[ReplayItem]:
        """The prefix of pending items (cheapest tier first) that fits the budget; records what does not."""
        admitted = []
        for index, item in enumerate(pending):
            cost = self._item_estimate(item)
            if not self.budget.allows(committed, cost):
                rest = pending[index:]
                self.report.budget_skipped = len(rest)
                self.report.budget_skipped_usd = sum(self._item_estimate(i) for i in rest)
                break
            committed += cost
            admitted.append(item)
        return admitted

    def _submit_pending(self, runner: BatchRunner, state: ReplayState) -> int:
        """Send every pending item that fits the budget, in batches of --batch-size; returns how many were sent."""
        pending = [i for i in self.items if _item_status(i, state, self.config.item_retries) == "pending"]
        self.report.budget_skipped = 0
        admitted = self._admit(pending, self._committed(state))
        for start in range(0, len(admitted), self.config.batch_size):
            chunk = [
                Submission(
                    custom_id=custom_id(item.key, len(state.attempts(item.key))),
                    key=item.key,
                    request_id=item.request_id,
                    tier=item.tier,
                    model=item.model,
                    attempt=len(state.attempts(item.key)),
                    est_cost_usd=estimate_usd(item, self.ladder),
                    intent="",
                )
                for item in admitted[start : start + self.config.batch_size]
            ]
            batch_id = runner.submit(chunk, self._params)
            self.report.submitted += len(chunk)
            self.echo(f"submitted batch {batch_id} ({len(chunk)} requests)")
        return len(admitted)

    def _params(self, submission: Submission) -> dict[str, Any]:
        info = self.infos[submission.request_id]
        return message_params(info, submission.model, self.config.max_tokens, self.config.temperature)

    def _settle(self, runner: BatchRunner, state: ReplayState) -> None:
        """Reconcile, collect and submit until nothing is in flight (or once, with --no-wait)."""
        keys = {item.key for item in self.items}
        settled = sum(1 for item in self.items if _item_status(item, state, self.config.item_retries) != "pending")
        with progress(len(self.items), "replays", "req", initial=settled) as update:
            runner.reconcile()
            while True:
                runner.poll(update)
                if self._submit_pending(runner, state):
                    continue  # look at the new batches at once: one may end quickly (small ones, the stand-in API)
                if not state.open_batches() or not self.config.wait:
                    break
                time.sleep(self.config.poll_interval)
        report = self.report
        mine = [s for s in state.submissions.values() if s.key in keys]
        report.outcomes = Counter(s.outcome or "in flight" for s in mine)
        report.in_flight = sum(1 for s in mine if s.in_flight)
        for item in self.items:
            if _item_status(item, state, self.config.item_retries) == "failed":
                last = state.attempts(item.key)[-1]
                report.failed.append((item.request_id, item.tier, f"{last.outcome}: {last.error}"))

    def _grade(self, state: ReplayState) -> None:
        """Grade every answer that has no grade from this grader yet, saving grades as they come.

        Grading is reserved in the budget when a replay is sent; if real grading costs outrun that
        reservation, grading stops at the budget and the rest stays ungraded until a rerun.
        """
        todo = [
            s
            for s in state.submissions.values()
            if s.outcome == "succeeded"
            and s.request_id in state.requests
            and self.grader.key not in state.grades.get(s.custom_id, {})
        ]
        workers = self.config.judge_concurrency if isinstance(self.grader, JudgeGrader) else 1
        saved = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for start in range(0, len(todo), GRADE_CHUNK):
                if not self.budget.allows(self._committed(state), 0.0):
                    self.report.grading_budget_stop = len(todo) - start
                    break
                chunk = todo[start : start + GRADE_CHUNK]
                graded = pool.map(lambda s: self._grade_one(s, state.requests[s.request_id]), chunk)
                for submission, outcome in zip(chunk, graded, strict=True):
                    if isinstance(outcome, str):
                        self.report.ungraded.append(outcome)
                    else:
                        state.grades.setdefault(submission.custom_id, {})[self.grader.key] = outcome
                if time.monotonic() - saved > GRADE_SAVE_SECONDS:
                    state.save()
                    saved = time.monotonic()
        state.save()

    def _grade_one(self, submission: Submission, info: RequestInfo) -> GradeRecord | str:
        item = GradeInput(
            request_id=submission.request_id,
            prompt=info.prompt,
            answer=submission.answer or "",
            model=submission.model,
            tier=submission.tier,
            reference=info.reference,
            successful_answer=info.successful_answer,
            extras=info.extras,
        )
        try:
            grade = self.grader.grade(item)
        except GradingError as exc:
            return str(exc)
        except Exception as exc:
            return f"request {submission.request_id}: {self.grader.name} failed ({type(exc).__name__}: {exc})"
        return GradeRecord(
            grade.success, grade.score, grade.reason, self.grader.name, self.grader.version, grade.cost_usd
        )

    def _write(self, state: ReplayState) -> None:
        """Write one attempt row per graded answer (all of the state's, not only this run's) to --out."""
        rows = []
        for submission in state.submissions.values():
            grade = state.grades.get(submission.custom_id, {}).get(self.grader.key)
            if submission.outcome != "succeeded" or grade is None:
                continue
            info = state.requests[submission.request_id]
            usage = submission.usage or {}
            row = {
                "request_id": submission.request_id,
                "prompt": info.prompt,
                "messages": info.messages,
                "model": submission.model,
                "success": grade.success,
                "score": grade.score,
                "cost_usd": submission.cost_usd,
                "input_tokens": usage.get("input_tokens"),
                "output_tokens": usage.get("output_tokens"),
                "timestamp": submission.finished_at,
                "grader": grade.grader,
                "grader_version": grade.grader_version,
                "grade_reason": grade.reason,
                "grader_cost_usd": grade.cost_usd,
                "response": submission.answer,
                "stop_reason": submission.stop_reason,
                "custom_id": submission.custom_id,
                "batch_id": submission.batch_id,
                "source": "tierwise-replay",
            }
            rows.append({**row, **{k: v for k, v in info.extras.items() if k not in row}})
        frame = pl.DataFrame(rows, infer_schema_length=None) if rows else empty_frame()
        frame = frame.with_columns(pl.col(c).cast(SCHEMA[c]) for c in frame.columns if c in SCHEMA)
        if frame["messages"].null_count() == frame.height:
            frame = frame.drop("messages")
        out = write_table(frame, self.config.out)
        report = self.report
        graded = [g[self.grader.key] for g in state.grades.values() if self.grader.key in g]
        report.graded = Counter(g.success for g in graded)
        report.replay_usd = sum(s.cost_usd or 0.0 for s in state.submissions.values()) + state.duplicate_cost_usd
        report.grading_usd = sum(g.cost_usd or 0.0 for grades in state.grades.values() for g in grades.values())
        report.rows_written, report.out, report.state = frame.height, out, state.path


def run_replay(
    config: ReplayConfig, log: AttemptLog, ladder: TierLadder, echo: Callable[[str], None] = print
) -> ReplayReport:
    """Run (or with config.dry_run, only plan) a replay of a log's censored requests and print its report."""
    replay = Replay(config, log, ladder, echo)
    report = replay.dry_run() if config.dry_run else replay.run()
    if not config.dry_run:
        echo(report.render())
    return report
