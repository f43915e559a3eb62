"""The README's main job: the whole tierwise loop on generated logs, one step after another.

sample logs -> labels -> train + register (MLflow) -> serve the champion -> Predict over gRPC -> retrain on
more logs (gated promotion; the server follows the alias) -> compare the versions -> audit the workloads.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from tierwise.classifier.outputs import OutputDir
from tierwise.registry.locks import LOCK_SUFFIX
from tierwise.registry.store import ARTIFACTS_DIR
from tierwise.training.extras import TRAIN
from tierwise.training.options import needs

MODEL_NAME = "tierwise-demo"
STORE = "mlflow.db"
# Everything the demo writes in its work directory (the store's lock, journal and artifacts included), so a
# previous run's directory is recognised and replaced, and any other directory refused.
DEMO_DIR = OutputDir(
    "demo work directory",
    frozenset(
        {"logs", "logs-more", "labels.parquet", "bundle", STORE, STORE + LOCK_SUFFIX, f"{STORE}-journal", ARTIFACTS_DIR}
    ),
)
DEMO_PROMPTS = (
    "Say hello to the team in a friendly way.",
    "Summarize this paragraph about solar panels in two sentences.",
    "Write a Python function that merges overlapping intervals, with tests.",
    "Prove that there are infinitely many primes, and explain why each step holds.",
)


def _step(title: str) -> None:
    click.secho(f"\n== {title}", bold=True)


def _ask(target: str, prompts: tuple[str, ...]) -> str:
    """Predict each prompt over gRPC, print the answers, and return the model version that answered."""
    from tierwise.classifier.request import RouteRequest
    from tierwise.serving.client import predict_once

    version = ""
    for prompt in prompts:
        answer = predict_once(target, RouteRequest(prompt))
        version = str(answer["model_version"])
        click.echo(f"{answer['tier']:>7} ({answer['model']}, {answer['inference_us']} us, v {version})  {prompt}")
    return version


def _wait_for_version(target: str, version: str, timeout_s: float = 30.0) -> None:
    """Wait until the server answers with `version` (it polls the champion alias)."""
    from tierwise.classifier.request import RouteRequest
    from tierwise.serving.client import predict_once

    deadline = time.monotonic() + timeout_s
    while predict_once(target, RouteRequest("hello"))["model_version"] != version:
        if time.monotonic() > deadline:
            raise click.ClickException(f"the server did not reload model {version} within {timeout_s:.0f}s")
        time.sleep(0.2)


def run_demo(workdir: Path, requests: int) -> None:
    """Run every stage on generated logs, with an MLflow store of its own in the work directory.

    The work directory may be missing, empty or a previous demo's (replaced whole); anything else is refused
    before anything is written."""
    from tierwise.classifier.router import Router
    from tierwise.classifier.tiers import TierLadder
    from tierwise.registry.models import CHAMPION, ModelRef, Registry
    from tierwise.serving.process import ServerProcess
    from tierwise.training.audit.run import run_audit
    from tierwise.training.audit.table import render_text
    from tierwise.training.data.labels import label_requests, summarize, write_table
    from tierwise.training.data.logs import read_attempts
    from tierwise.training.data.sample_logs import write_sample_logs
    from tierwise.training.fit.train import TrainOptions, train_bundle
    from tierwise.training.fit.train_report import render_report
    from tierwise.training.tracking.compare import compare_versions, render_comparison
    from tierwise.training.tracking.promotion import place
    from tierwise.training.tracking.retrain import retrain
    from tierwise.training.tracking.run_logging import training_run

    work = workdir.resolve()
    DEMO_DIR.start(work)
    tracking = f"sqlite:///{work / STORE}"
    registry = Registry(tracking, create=True)
    ladder = TierLadder.load()
    _step(f"sample logs: {requests} requests")
    logs = write_sample_logs(work / "logs", requests, seed=1)
    click.echo(f"wrote {logs}")

    _step("labels: cheapest successful tier per request")
    log = read_attempts([logs])
    labels = label_requests(log, ladder)
    labels_path = write_table(labels.frame, work / "labels.parquet")
    click.echo(summarize(log, labels).render())
    click.echo(f"wrote {labels_path}")

    _step(f"train + register: a router bundle, tracked in MLflow as a version of {MODEL_NAME}")
    options = TrainOptions()
    with training_run(registry, log, options.encoder) as run:
        result = train_bundle(log, work / "bundle", ladder, options)
        click.echo(render_report(result))
        tracked = run.record(result, register=MODEL_NAME)
    placed = place(registry, MODEL_NAME, str(tracked.version), result)
    click.echo(f"mlflow run {tracked.run_id}; registered {MODEL_NAME} version {placed.version} as {placed.alias}")

    _step(f"serve models:/{MODEL_NAME}@champion over gRPC, and ask it")
    args = ["--model", f"models:/{MODEL_NAME}@champion", "--tracking-uri", tracking, "--host", "127.0.0.1"]
    with ServerProcess([*args, "--port", "0", "--no-metrics", "--reload-interval", "0.5"]) as server:
        click.echo(f"server on {server.target}")
        _ask(server.target, DEMO_PROMPTS)

        _step("retrain on more logs: a challenger, promoted only if it beats the champion")
        more = write_sample_logs(work / "logs-more", 2 * requests, seed=2)
        decision = retrain(MODEL_NAME, read_attempts([logs, more]), registry, ladder, options)
        click.echo(decision.render())
        champion = Router.load(registry.bundle(ModelRef(MODEL_NAME, alias=CHAMPION))).version
        if decision.promoted:
            _wait_for_version(server.target, champion)
            click.echo(f"the server followed the alias and now answers with the new champion, model {champion}:")
        else:
            click.echo(
                f"the champion is unchanged, so the server keeps model {champion} "
                f"(to serve the challenger anyway: tierwise promote {MODEL_NAME} {decision.challenger.version})"
            )
        _ask(server.target, DEMO_PROMPTS[-1:])

    _step("compare the versions on one evaluation set (the test rows of the new logs)")
    rows, _ = compare_versions(registry, MODEL_NAME, log=read_attempts([more]))
    click.echo(render_comparison(rows, f"re-evaluated on the test rows of {more}"))

    _step("audit: where each workload's spend goes, and what each lever would save")
    audited = run_audit(read_attempts([logs, more]), ladder, work / "audit")
    click.echo(render_text(audited.report))
    click.echo(f"wrote {', '.join(str(path) for path in audited.files)}")
    click.echo(f"\nopen the runs and versions: mlflow ui --backend-store-uri {tracking}")


@click.command("demo")
@needs(TRAIN)
@click.option(
    "--workdir",
    default="tierwise-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the demo writes its logs, labels and models.",
)
@click.option("--requests", default=1500, show_default=True, type=click.IntRange(min=50))
def demo(workdir: str, requests: int) -> None:
    """Run the main job end to end on generated logs: the whole loop, in WORKDIR.

    Sample logs -> labels -> train and register a version (MLflow store WORKDIR/mlflow.db) -> serve the
    champion over gRPC and ask it -> retrain on more logs (promoted only if better; the server follows the
    alias) -> compare the versions on one evaluation set -> audit the workloads (WORKDIR/audit/report.html).
    """
    run_demo(Path(workdir), requests)
