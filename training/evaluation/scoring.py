"""Batch scoring: one routing decision per request of a log, in this process or by the pyfunc model on Spark.

Both engines write the same table: `request_id`, then the decision columns of `tierwise.classifier.decisions`
(tier, model, fallback chain, P(success) per tier), one row per request in the order requests first appear
in the logs. `local` runs the router here in chunks; `spark` runs the registered MLflow pyfunc as a
`spark_udf` on a Spark session (a local one, or a cluster's), so what a cluster scores is exactly the
registered model.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from tierwise.classifier.decisions import decision_columns, decision_schema
from tierwise.classifier.errors import InputError
from tierwise.classifier.router import Router
from tierwise.registry.sources import ModelSource, RegistrySource
from tierwise.registry.store import quiet_mlflow
from tierwise.training.data.logs import AttemptLog

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOCAL_MASTER = "local[*]"
LOOPBACK = "127.0.0.1"
# Prompts routed per graph run by the local engine: large enough to amortise the call, small enough that a
# padded token batch stays a few megabytes.
LOCAL_CHUNK = 2048
ROW = "_row"  # carries each request's position through Spark, which need not keep row order
STANDALONE = "spark://"
MASTER_CONNECT_TIMEOUT_S = 5.0


class SparkUnavailable(InputError):
    """Spark cannot start here (no Java)."""


@dataclass(frozen=True)
class RegisteredVersion:
    """One registered model version: its URI (`models:/NAME/VERSION`) and the store that holds it."""

    uri: str
    store: str


@dataclass(frozen=True)
class ScoredModel:
    """The model a batch is scored with: a bundle here, and the registered version it is when it is one."""

    bundle: Path
    origin: str
    registered: RegisteredVersion | None = None

    def describe(self) -> str:
        return self.registered.uri if self.registered else self.origin


def pin(source: ModelSource) -> ScoredModel:
    """The model a source names now. An alias is resolved once, so a whole batch is scored by one version even
    if the alias moves meanwhile (the Spark engine loads the version, not the alias)."""
    if not isinstance(source, RegistrySource):
        return ScoredModel(source.resolve().path, source.describe())
    found = source.registry.version(source.ref)
    registered = RegisteredVersion(f"models:/{found.name}/{found.version}", source.registry.uri)
    return ScoredModel(source.registry.bundle_dir(found), source.describe(), registered)


def requests_of(log: AttemptLog) -> pl.DataFrame:
    """One row per request (`request_id`, `prompt`), in the order requests first appear: what gets scored."""
    return log.frame.select("request_id", "prompt").unique(subset="request_id", keep="first", maintain_order=True)


def score_local(router: Router, requests: pl.DataFrame, chunk: int = LOCAL_CHUNK) -> pl.DataFrame:
    """Route every request with the router in this process; the decision table."""
    tiers = router.ladder.names
    columns: dict[str, list[Any]] = {name: [] for name, _ in decision_schema(tiers)}
    prompts = requests["prompt"]
    for start in range(0, requests.height, chunk):
        predicted = router.predict_batch(prompts.slice(start, chunk).to_list())
        for name, values in decision_columns(predicted, tiers).items():
            columns[name].extend(values)
    return pl.DataFrame({"request_id": requests["request_id"], **columns}, schema=_table_schema(tiers))


def check_master(master: str) -> None:
    """Refuse a standalone master (`spark://host:port`, or several joined by commas) on which no address takes a
    connection, in one line and within seconds: Spark itself retries for over a minute, then prints Java's
    traceback. Other masters (local, yarn, k8s) are left to Spark."""
    if not master.startswith(STANDALONE):
        return
    problems = []
    for address in master.removeprefix(STANDALONE).split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            problems.append(f"{address}: not host:port")
            continue
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=MASTER_CONNECT_TIMEOUT_S):
                return
        except OSError as exc:
            problems.append(f"{address}: {exc.strerror or exc}")
    raise SparkUnavailable(f"--spark-master {master}: cannot connect to {'; '.join(problems)}")


@contextmanager
def spark_session(master: str = LOCAL_MASTER) -> Iterator[SparkSession]:
    """A Spark session for scoring, stopped afterwards.

    A local master listens on loopback only and runs its Python workers on this interpreter, so they import
    what this process imports; a cluster's workers use the cluster's Python. Spark's own console output (JVM
    warnings, log4j lines, its workers' stderr) goes to a log file, kept and named on stderr only if the
    session fails, so a run prints tierwise's lines alone.
    """
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName("tierwise score")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if master.startswith("local"):
        builder = (
            builder.config("spark.pyspark.python", sys.executable)
            .config("spark.driver.host", LOOPBACK)
            .config("spark.driver.bindAddress", LOOPBACK)
        )
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise SparkUnavailable("--engine spark needs Java 17 or newer: no `java` on PATH and JAVA_HOME is not set")
    session = None
    succeeded = False
    log_fd, log = tempfile.mkstemp(prefix="tierwise-spark-", suffix=".log")
    os.close(log_fd)
    try:
        with open(log, "wb") as sink, _stderr_into(sink.fileno()):
            session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        yield session
        succeeded = True
    finally:
        if session is not None:
            session.stop()
        if succeeded:
            os.unlink(log)
        else:
            print(f"Spark's own log: {log}", file=sys.stderr)


@contextmanager
def _stderr_into(fd: int) -> Iterator[None]:
    """Point this process's stderr (file descriptor 2) at `fd` for a while: a JVM started meanwhile keeps it."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def score_spark(spark: SparkSession, model_uri: str, tiers: Sequence[str], requests: pl.DataFrame) -> pl.DataFrame:
    """Route every request with the registered pyfunc model as a Spark UDF; the decision table.

    MLflow's tracking and registry URIs must already point at the model's store (`tierwise.registry.store.activate`).
    The UDF runs in the workers' own Python environment (`env_manager="local"`).
    """
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    quiet_mlflow()  # importing mlflow resets its loggers; spark_udf warns that env_manager="local" is local
    result_type = ", ".join(f"{name} {kind}" for name, kind in decision_schema(tiers))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        route = mlflow.pyfunc.spark_udf(spark, model_uri, result_type=result_type, env_manager="local")
        frame = spark.createDataFrame(requests.with_row_index(ROW).cast({ROW: pl.Int64}).to_pandas())
        decided = frame.select(ROW, "request_id", route(F.struct("prompt")).alias("decision")).select(
            ROW, "request_id", "decision.*"
        )
        table = decided.toPandas()
    return pl.from_pandas(table).sort(ROW).drop(ROW).cast(_table_schema(tiers))


def _table_schema(tiers: Sequence[str]) -> dict[str, pl.DataType]:
    kinds = {"string": pl.String(), "double": pl.Float64()}
    return {"request_id": pl.String(), **{name: kinds[kind] for name, kind in decision_schema(tiers)}}
