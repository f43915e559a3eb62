"""The learning loop on real data: does a router retrained on its own served traffic catch up with one trained
on everything?

For each dataset in the shared data directory:
1. a champion is trained on 5% of the train split (every tier's outcome known) and registered;
2. the rest of the train split goes through a real `tierwise serve --model models:/NAME@champion` as traffic:
   Predict, then the known outcome of each attempt reported, escalating along the chain on failure
   (`tierwise.serving.simulate`), with exploration at each --explore-rates value (0 = none);
3. every --every requests the decision and outcome logs are collected (`tierwise collect`'s library), a
   challenger is trained on seed + collected rows and put through the retrain gate (IPS on the held-out
   traffic); it becomes champion whatever the gate says unless --gate (the gate's verdict is reported
   either way), and the server follows the alias;
4. after each round the challenger and the serving champion are scored on the fixed test split (every tier
   known), next to a router trained on the whole train split.

    python benchmarks/feedback_loop.py [--data DIR] [--datasets mmlu_pro routerbench] [--every 2000]
        [--explore-rates 0.2 0] [--explore-seed 0] [--threshold-rule auto] [--gate] [--json OUT.json]

--data defaults to $TIERWISE_DATA, else ../shared/data next to the repository root.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import numpy as np
import polars as pl
from tierwise.classifier.policy import RULES
from tierwise.classifier.router import Router
from tierwise.classifier.tiers import TierLadder
from tierwise.registry.models import CHAMPION, ModelRef, Registry
from tierwise.serving.process import ServerProcess
from tierwise.serving.simulate import send_traffic
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc
from tierwise.training.data.collect import collect
from tierwise.training.data.labels import Labels, label_requests
from tierwise.training.data.logs import read_attempts
from tierwise.training.data.splits import hashed_share
from tierwise.training.evaluation.evaluate import evaluate_router
from tierwise.training.fit.train import TrainOptions, train_bundle
from tierwise.training.tracking.promotion import promote, register_trained
from tierwise.training.tracking.retrain import retrain

from tierwise.labelled_traffic import known_requests

DATASETS = {"mmlu_pro": "tiers.toml", "routerbench": "tiers.toml"}
NAME = "feedback-loop"
SEED_SHARE = 0.05
METRICS = ("gain_over_static", "apgr")


def data_dir(flag: str | None) -> Path:
    """The shared data directory: --data, else $TIERWISE_DATA, else ../shared/data beside the repository."""
    if flag:
        return Path(flag)
    if os.environ.get("TIERWISE_DATA"):
        return Path(os.environ["TIERWISE_DATA"])
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass
class Round:
    """One retrain: how much traffic had passed, and how the routers score on the fixed test split."""

    requests: int
    explored: float
    promoted: bool
    reason: str
    challenger_rule: str
    challenger: dict[str, float | None]
    champion: dict[str, float | None]


def headline(router: Router, test: pl.DataFrame) -> dict[str, float | None]:
    """The router's metrics on the fully known test rows (gain_over_static where the build has it)."""
    metrics = evaluate_router(router, test, split=None).router.metrics
    return {name: metrics.get(name) for name in METRICS if name in metrics}


class Dataset:
    """One dataset's labelled requests, split into the champion's seed, the traffic, and the fixed test rows."""

    def __init__(self, root: Path, name: str):
        self.name = name
        self.ladder = TierLadder.load(root / name / DATASETS[name])
        logs = root / name / "attempts.parquet"
        models = [m for tier in self.ladder.tiers for m in tier.models]
        self.attempts = pl.read_parquet(logs).filter(pl.col("model").is_in(models))
        self.labels: Labels = label_requests(read_attempts([logs]), self.ladder)
        frame = self.labels.frame
        self.test = frame.filter(pl.col("split") == "test")
        train = frame.filter(pl.col("split") != "test")
        seed = hashed_share(train["request_id"], SEED_SHARE, "feedback-seed")
        self.seed_ids = set(train.filter(pl.Series(seed))["request_id"].to_list())
        rest = train.filter(~pl.Series(seed))
        self.traffic = known_requests(self.labels, rest.sample(fraction=1.0, shuffle=True, seed=0))

    def write_seed(self, path: Path) -> Path:
        """The seed requests' attempts, without the split column (so retrain holds out a hashed share)."""
        seed = self.attempts.filter(pl.col("request_id").is_in(list(self.seed_ids))).drop("split")
        seed.write_parquet(path)
        return path

    def write_train(self, path: Path) -> Path:
        """The whole train split's attempts (the reference router's data)."""
        self.attempts.filter(pl.col("split") != "test").write_parquet(path)
        return path


def rounds_of(requests: int, every: int) -> list[tuple[int, int]]:
    """[start, stop) of each round of about `every` requests; a last round under half of it joins the one before."""
    bounds = [*range(0, requests, every), requests]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < every / 2:
        del bounds[-2]
    return list(itertools.pairwise(bounds))


def wait_for_lines(path: Path, lines: int, timeout_s: float = 60.0) -> None:
    """Block until a log written off the request path holds `lines` rows."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= lines:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{path} never reached {lines} rows")


def wait_for_version(stub: pb_grpc.RouterStub, version: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).version != version:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server never served {version}")
        time.sleep(0.2)


def run_loop(dataset: Dataset, explore_rate: float, loop: argparse.Namespace, work: Path) -> list[Round]:
    """Seed a champion, then serve the traffic in rounds of `loop.every` requests, retraining after each."""
    every = loop.every
    work.mkdir(parents=True)
    store = f"sqlite:///{work / 'mlflow.db'}"
    registry = Registry(store, create=True)
    # No `holdout` column in the logs: a hashed 20% is held out.
    options = TrainOptions(encoder="static", split_column="holdout", threshold_rule=loop.threshold_rule)
    seed = dataset.write_seed(work / "seed.parquet")
    seeded = train_bundle(read_attempts([seed]), work / "seed-bundle", dataset.ladder, options)
    registered = register_trained(seeded, registry, NAME, experiment="feedback")
    promote(registry, NAME, registered.version, "the seed router, in service whatever its fitness says.")
    decisions, outcomes = work / "decisions.jsonl", work / "outcomes.jsonl"
    args = ["--model", f"models:/{NAME}@champion", "--tracking-uri", store, "--port", "0", "--no-metrics"]
    args += ["--reload-interval", "0.5", "--decision-log", str(decisions), "--outcome-log", str(outcomes)]
    args += ["--explore-rate", str(explore_rate), "--explore-seed", str(loop.explore_seed)]
    rounds = []
    sent = explored = reported = 0
    with ServerProcess(args) as server, grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RouterStub(channel)
        for start, stop in rounds_of(len(dataset.traffic), every):
            report = send_traffic(stub, dataset.traffic[start:stop])
            sent, explored = sent + report.routed, explored + report.explored
            reported += len(report.acknowledged)
            wait_for_lines(decisions, sent)
            wait_for_lines(outcomes, reported)
            collected = collect([decisions, outcomes], work / "collected.parquet", dataset.ladder)
            decision = retrain(
                NAME, read_attempts([seed, work / "collected.parquet"]), registry, dataset.ladder, options,
                experiment="feedback",
            )  # fmt: skip
            if not decision.promoted and not loop.gate:
                promote(registry, NAME, decision.challenger.version, "ungated loop: every retrain serves.")
            champion = Router.load(registry.bundle_dir(registry.version(ModelRef(NAME, alias=CHAMPION))))
            wait_for_version(stub, champion.version)
            challenger = Router.load(
                registry.bundle_dir(registry.version(ModelRef(NAME, version=decision.challenger.version)))
            )
            policy = challenger.manifest.policy
            rounds.append(
                Round(
                    sent,
                    explored / sent,
                    decision.promoted,
                    decision.reason,
                    f"{policy.rule} {policy.threshold:.3f}",
                    headline(challenger, dataset.test),
                    headline(champion, dataset.test),
                )
            )
            print(decision.render(), f"challenger policy: {policy.chosen_by}", sep="\n", flush=True)
            print(
                f"[{dataset.name} explore {explore_rate:g}] {sent} requests ({collected.matched} attempts collected, "
                f"{collected.censored / max(collected.requests, 1):.0%} censored): challenger {rounds[-1].challenger} "
                f"({rounds[-1].challenger_rule}), "
                f"{'promoted' if decision.promoted else 'kept'}; champion {rounds[-1].champion}",
                flush=True,
            )
    return rounds


def reference(dataset: Dataset, threshold_rule: str, work: Path) -> dict[str, float | None]:
    """A router trained on the whole train split, scored on the test split."""
    work.mkdir(parents=True, exist_ok=True)
    logs = dataset.write_train(work / "train.parquet")
    options = TrainOptions(encoder="static", threshold_rule=threshold_rule)
    result = train_bundle(read_attempts([logs]), work / "full-bundle", dataset.ladder, options)
    return headline(result.router, dataset.test)


def render(name: str, full: dict[str, float | None], runs: dict[float, list[Round]]) -> str:
    """A markdown table per dataset: one row per round and exploration rate, both headline metrics."""
    gain, apgr = METRICS
    lines = [
        f"### {name}: on the fixed test split; the full-data router scores gain {full[gain]:+.3f}, "
        f"APGR {full[apgr]:.3f}",
        "",
        "| explore rate | requests served | explored | challenger gain / APGR (rule, threshold) | retrain gate "
        "| champion gain / APGR | champion - full data: gain / APGR |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rate, rounds in runs.items():
        for r in rounds:
            lines.append(
                f"| {rate:g} | {r.requests} | {r.explored:.1%} | {_pair(r.challenger)} ({r.challenger_rule}) | "
                f"{'promoted' if r.promoted else 'kept: ' + r.reason} | {_pair(r.champion)} | "
                f"{_pair(r.champion, full)} |"
            )
    return "\n".join(lines)


def _pair(metrics: dict[str, float | None], minus: dict[str, float | None] | None = None) -> str:
    gain, apgr = (
        (metrics[m] or np.nan) - ((minus or {}).get(m) or 0.0) for m in METRICS
    )  # fmt: skip
    return f"{gain:+.3f} / {apgr:+.3f}" if minus else f"{gain:+.3f} / {apgr:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="the shared data directory (default: $TIERWISE_DATA, else ../shared/data)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--every", type=int, default=2000, help="retrain after this many requests")
    parser.add_argument("--explore-rates", nargs="+", type=float, default=[0.2, 0.0])
    parser.add_argument("--explore-seed", type=int, default=0, help="the servers' --explore-seed")
    parser.add_argument("--gate", action="store_true", help="promote only what the retrain gate promotes")
    parser.add_argument(
        "--threshold-rule", default="auto", choices=["auto", *RULES], help="every router's rule (train's option)"
    )
    parser.add_argument("--json", type=Path, help="also write every round's numbers here")
    parser.add_argument("--workdir", type=Path, help="keep logs, stores and bundles here (default: a temporary one)")
    args = parser.parse_args(argv)
    root = data_dir(args.data)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.workdir or scratch
        for name in args.datasets:
            dataset = Dataset(root, name)
            print(f"[{name}] {len(dataset.seed_ids)} seed requests, {len(dataset.traffic)} traffic, "
                  f"{dataset.test.height} test", flush=True)  # fmt: skip
            full = reference(dataset, args.threshold_rule, Path(tmp) / name)
            runs = {
                rate: run_loop(dataset, rate, args, Path(tmp) / name / f"explore-{rate:g}")
                for rate in args.explore_rates
            }
            results[name] = {"full": full, "runs": {str(k): [asdict(r) for r in v] for k, v in runs.items()}}
            print(render(name, full, runs), "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
