"""Workloads on a real `tierwise serve` (and the proxy, the client and the command line in front of it): a request
names its workload; with `--workloads FILE` the workload's entry (else the file's [default]) fills in what the
request leaves unset, so two workloads route the same prompt differently; the request's own fields win; a bad
file is refused at start naming its entry and field, and on reload (server or proxy) the old policy keeps
serving; the workload reaches the decision log, the metrics (bounded to the file's names and `other`) and
`tierwise collect`'s rows."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from pathlib import Path

import anthropic
import grpc
import httpx
import polars as pl
import pytest
from click.testing import CliRunner
from tierwise.classifier.limits import IDENTIFIER
from tierwise.classifier.request import RouteOptions
from tierwise.classifier.router import Router
from tierwise.serving.process import ServerProcess
from tierwise.serving.routed_anthropic import AsyncRoutedAnthropic, RoutedAnthropic
from tierwise.serving.standin import StandIn
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

from tests.helpers import PROXY, logged_rows, run_serve
from tierwise.cli import main as cli

HARD = "Analyze the trade-offs of a merger under antitrust review, step by step, and justify each move."
API_KEY = "sk-ant-workloads-test"
POLICY = """
[default]
quality_target = 0.5

[workload.code-review]     # a person waits for the best answer
band = "interactive"
quality_target = 1.0

[workload.nightly]         # nobody waits: Batch API prices, any tier that clears nothing at all
band = "async"
quality_target = 0.0

[workload.explore]         # exploration on for this workload only (the server's --explore-rate is 0)
quality_target = 1.0
explore_rate = 1.0
"""
NAMES = {"code-review", "nightly", "explore"}


def scrape(server: ServerProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def router(trained_bundle) -> Router:
    return Router.load(trained_bundle)


@pytest.fixture(scope="module")
def served(trained_bundle, tmp_path_factory):
    work = tmp_path_factory.mktemp("workloads")
    logs = {"decisions": work / "decisions.jsonl", "outcomes": work / "outcomes.jsonl"}
    args = ["--model", str(trained_bundle), "--port", "0", "--metrics-port", "0", "--reload-interval", "0"]
    args += ["--workloads", str(write(work / "workloads.toml", POLICY)), "--explore-rate", "0", "--explore-seed", "1"]
    args += ["--decision-log", str(logs["decisions"]), "--outcome-log", str(logs["outcomes"])]
    with ServerProcess(args) as server, grpc.insecure_channel(server.target) as channel:
        yield server, pb_grpc.RouterStub(channel), logs


def predict(stub, request_id: str, **fields) -> pb.PredictResponse:
    return stub.Predict(pb.PredictRequest(prompt=HARD, request_id=request_id, **fields), timeout=10)


def local(router: Router, **options):
    return router.predict(HARD, RouteOptions(**options))


def test_two_workloads_route_the_same_prompt_by_their_own_target_and_band(served, router):
    _, stub, logs = served
    review = predict(stub, "review-1", workload="code-review")
    nightly = predict(stub, "nightly-1", workload="nightly")
    for response, options in ((review, {"quality_target": 1.0}), (nightly, {"quality_target": 0.0})):
        band = "async" if response is nightly else "interactive"
        expected = local(router, latency_band=band, **options)
        assert (response.tier, list(response.fallback_chain)) == (expected.tier, expected.fallback_chain)
        assert response.quality_target == options["quality_target"]
    assert review.tier != nightly.tier == router.ladder.names[0]
    assert (review.use_batch_api, nightly.use_batch_api) == (False, True)
    rows = {row["request_id"]: row for row in logged_rows(logs["decisions"], ["review-1", "nightly-1"])}
    assert (rows["review-1"]["workload"], rows["review-1"]["latency_band"]) == ("code-review", "interactive")
    assert (rows["nightly-1"]["workload"], rows["nightly-1"]["latency_band"]) == ("nightly", "async")


def test_an_unknown_workload_and_a_request_without_one_get_the_default_entry(served, router):
    _, stub, logs = served
    expected = local(router, quality_target=0.5)
    for response in (predict(stub, "stranger-1", workload="no-such-team"), predict(stub, "none-1")):
        assert (response.tier, response.quality_target, response.use_batch_api) == (expected.tier, 0.5, False)
    rows = {row["request_id"]: row for row in logged_rows(logs["decisions"], ["stranger-1", "none-1"])}
    assert (rows["stranger-1"]["workload"], rows["none-1"]["workload"]) == ("no-such-team", None)


def test_the_requests_own_fields_win_over_its_workloads(served, router):
    _, stub, _ = served
    cheap_review = predict(stub, "own-1", workload="code-review", quality_target=0.0)
    assert (cheap_review.tier, cheap_review.quality_target) == (router.ladder.names[0], 0.0)
    waiting = predict(stub, "own-2", workload="nightly", latency_band=pb.INTERACTIVE)  # set, though the default
    assert not waiting.use_batch_api and waiting.quality_target == 0.0  # the rest is still the workload's
    batch = stub.PredictBatch(
        pb.PredictBatchRequest(
            requests=[
                pb.PredictRequest(prompt=HARD, workload="nightly"),
                pb.PredictRequest(prompt=HARD, workload="nightly", mode=pb.COST),
            ]
        ),
        timeout=10,
    )
    assert [r.use_batch_api for r in batch.responses] == [True, True]
    assert [r.mode for r in batch.responses] == [pb.THRESHOLD, pb.COST]


def test_a_workloads_explore_rate_replaces_the_servers(served, router):
    _, stub, _ = served
    explored = [predict(stub, f"explore-{i}", workload="explore") for i in range(5)]
    assert all(r.explored and r.tier != local(router, quality_target=1.0).tier for r in explored)
    assert not any(predict(stub, f"review-x{i}", workload="code-review").explored for i in range(5))


def test_metrics_label_decisions_by_the_files_workloads_and_other(served):
    server, stub, _ = served
    predict(stub, "label-1", workload="nightly")
    predict(stub, "label-2", workload="made-up-" + "x" * 100)
    values = scrape(server)
    labels = {
        key.split('workload="')[1].split('"')[0]
        for key in values
        if key.startswith(("tierwise_predicted_tier_total{", "tierwise_explored_total{"))
    }
    assert "nightly" in labels and "other" in labels and labels <= NAMES | {"other"}
    assert values['tierwise_workloads_reloads_total{result="loaded"}'] == 1


def test_a_bad_workload_name_is_invalid_argument_naming_the_field(served):
    _, stub, _ = served
    with pytest.raises(grpc.RpcError) as caught:
        predict(stub, "bad-1", workload="w" * (IDENTIFIER.maximum + 1))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("workload: ")


def test_collect_keeps_the_workload_from_the_decision_log_to_the_attempt_rows(served, tmp_path):
    _, stub, logs = served
    routed = {name: predict(stub, f"collected-{name}", workload=name) for name in ("nightly", "explore")}
    for response in routed.values():
        stub.ReportOutcome(pb.Outcome(request_id=response.request_id, model=response.model, success=True), timeout=10)
    stub.ReportOutcome(pb.Outcome(request_id="collected-none", model="m", success=True), timeout=10)
    ids = [r.request_id for r in routed.values()]
    logged_rows(logs["decisions"], ids)
    logged_rows(logs["outcomes"], [*ids, "collected-none"])
    out = tmp_path / "attempts.jsonl"
    result = CliRunner().invoke(cli, ["collect", str(logs["decisions"]), str(logs["outcomes"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = pl.read_ndjson(out).filter(pl.col("request_id").str.starts_with("collected-"))
    assert dict(zip(rows["request_id"], rows["workload"], strict=True)) == {
        "collected-nightly": "nightly",
        "collected-explore": "explore",
    }


def test_a_bad_file_on_reload_is_refused_and_counted_while_the_old_policy_keeps_serving(trained_bundle, tmp_path):
    policy = write(tmp_path / "workloads.toml", POLICY)
    args = ["--model", str(trained_bundle), "--port", "0", "--metrics-port", "0", "--reload-interval", "0.05"]
    with ServerProcess([*args, "--workloads", str(policy)]) as server, grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RouterStub(channel)
        assert predict(stub, "before", workload="nightly").use_batch_api
        write(policy, POLICY.replace('band = "async"', 'band = "someday"'))
        server.wait_for_log(r"refused workloads file: .*\[workload\.nightly\] band: must be one of")
        assert "still routing by the previous workloads policy" in server.log
        assert predict(stub, "during", workload="nightly").use_batch_api  # the old policy keeps serving
        assert scrape(server)['tierwise_workloads_reloads_total{result="refused"}'] == 1
        write(policy, "")  # an editor's half-written file is refused too, never read as "no policy"
        server.wait_for_log(r"workloads\.toml: empty")
        write(policy, POLICY.replace('band = "async"', 'band = "tolerant"'))
        server.wait_for_log(r"(?s)(routing by workloads file .*?: \[default\] and 3 workloads.*){2}")  # a 2nd load
        assert not predict(stub, "after", workload="nightly").use_batch_api
        values = scrape(server)
        assert (values['tierwise_workloads_reloads_total{result="loaded"}'], server.proc.poll()) == (2, None)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_bad_file_at_start_stops_the_server_naming_the_entry_and_the_field(trained_bundle, tmp_path, workers):
    bad = write(tmp_path / "bad.toml", POLICY.replace("quality_target = 0.0", "quality_target = 1.5"))
    result = run_serve(["--model", str(trained_bundle), "--port", "0", "--no-metrics", "--workers", workers,
                        "--workloads", str(bad)])  # fmt: skip
    assert result.returncode == 2
    assert "[workload.nightly] quality_target: must be a number >= 0 and <= 1, got 1.5" in result.stderr
    unknown = write(tmp_path / "tiers.toml", '[workload.w]\nallowed_tiers = ["haiku", "gpt-5"]\n')
    result = run_serve(["--model", str(trained_bundle), "--port", "0", "--no-metrics", "--workloads", str(unknown)])
    assert result.returncode == 2 and "[workload.w] allowed_tiers: unknown tier(s) ['gpt-5']" in result.stderr


def test_the_proxy_sends_the_workload_header_and_fills_in_from_its_own_file(served, tmp_path):
    server, _, logs = served
    own = write(tmp_path / "proxy.toml", '[workload.cheap-team]\nallowed_tiers = ["haiku"]\n')
    args = ["--router", server.target, "--listen", "127.0.0.1:0", "--workloads", str(own)]
    args += ["--workload", "proxy-default"]  # requests without the header: a workload neither file names
    with StandIn(api_key=API_KEY) as upstream, ServerProcess([*args, "--upstream", upstream.url], program=PROXY) as px:
        client = anthropic.Anthropic(api_key=API_KEY, base_url=f"http://127.0.0.1:{px.port}", max_retries=0)

        def routed(**headers: str) -> httpx.Headers:
            reply = client.messages.with_raw_response.create(
                model="tierwise", max_tokens=50, messages=[{"role": "user", "content": HARD}], extra_headers=headers
            )
            return reply.headers

        cheap = routed(**{"x-tierwise-workload": "cheap-team"})
        assert cheap["x-tierwise-tier"] == "haiku"  # the proxy's file: its entry's allowed tiers
        mine = routed(**{"x-tierwise-workload": "cheap-team", "x-tierwise-allowed-tiers": "sonnet"})
        assert mine["x-tierwise-tier"] == "sonnet"  # the header wins
        review = routed(**{"x-tierwise-workload": "code-review"})  # not in the proxy's file: the router's entry
        plain = routed()
        refused = client.messages.with_raw_response.create  # a bad header is the caller's 400, naming it
        with pytest.raises(anthropic.BadRequestError, match="x-tierwise-workload"):
            refused(model="tierwise", max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                    extra_headers={"x-tierwise-workload": "w" * (IDENTIFIER.maximum + 1)})  # fmt: skip
        write(own, '[workload.cheap-team]\nallowed_tiers = ["sonnet"]\nmode = "fastest"\n')  # a bad reload
        px.wait_for_log(r"refused workloads file: .*\[workload\.cheap-team\] mode: must be one of")
        health = httpx.get(f"http://127.0.0.1:{px.port}/health", timeout=10).json()
        assert health["workloads"].startswith("refused, the previous policy in use")
        assert routed(**{"x-tierwise-workload": "cheap-team"})["x-tierwise-tier"] == "haiku"  # the old file's
    ids = [h["x-tierwise-request-id"] for h in (cheap, mine, review, plain)]
    rows = {row["request_id"]: row for row in logged_rows(logs["decisions"], ids)}
    assert [rows[i]["workload"] for i in ids] == ["cheap-team", "cheap-team", "code-review", "proxy-default"]
    assert rows[ids[2]]["quality_target"] == 1.0  # the router's code-review entry
    assert rows[ids[3]]["quality_target"] == 0.5  # a workload neither file names: the router's [default]


def test_the_proxy_with_the_router_inside_follows_its_file_once_and_applies_its_explore_rate(
    trained_bundle, router, tmp_path
):
    policy = write(tmp_path / "workloads.toml", POLICY)
    log = tmp_path / "decisions.jsonl"
    args = ["--model", str(trained_bundle), "--no-metrics", "--workloads", str(policy), "--explore-seed", "1"]
    args += ["--decision-log", str(log), "--listen", "127.0.0.1:0"]
    with StandIn(api_key=API_KEY) as upstream, ServerProcess([*args, "--upstream", upstream.url], program=PROXY) as px:
        client = anthropic.Anthropic(api_key=API_KEY, base_url=f"http://127.0.0.1:{px.port}", max_retries=0)
        ids = [
            client.messages.with_raw_response.create(
                model="tierwise",
                max_tokens=50,
                messages=[{"role": "user", "content": f"{HARD} ({workload} {n})"}],
                extra_headers={"x-tierwise-workload": workload},
            ).headers["x-tierwise-request-id"]
            for workload in ("explore", "code-review")
            for n in range(3)
        ]
        assert px.log.count("routing by workloads file") == 1  # one file followed: the router's, SIGHUP and all
    by_id = {row["request_id"]: row for row in logged_rows(log, ids)}
    rows = [by_id[request_id] for request_id in ids]
    assert [row["explored"] for row in rows] == [True] * 3 + [False] * 3
    assert all(row["tier"] != local(router, quality_target=1.0).tier for row in rows[:3])


def test_the_python_client_sends_its_workload(served):
    server, _, logs = served
    with StandIn(api_key=API_KEY) as upstream:
        sdk = anthropic.Anthropic(api_key=API_KEY, base_url=upstream.url, max_retries=0)
        with RoutedAnthropic(router=server.target, client=sdk, workload="code-review") as routed:
            review = routed.messages.create(max_tokens=50, messages=[{"role": "user", "content": HARD}])

        async def nightly() -> anthropic.types.Message:
            sdk = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=upstream.url, max_retries=0)
            async with AsyncRoutedAnthropic(router=server.target, client=sdk, workload="nightly") as routed:
                return await routed.messages.create(max_tokens=50, messages=[{"role": "user", "content": "Hi."}])

        summary = asyncio.run(nightly())
    ids = [review.tierwise.request_id, summary.tierwise.request_id]
    rows = {row["request_id"]: row for row in logged_rows(logs["decisions"], ids)}
    assert (rows[ids[0]]["workload"], rows[ids[0]]["quality_target"]) == ("code-review", 1.0)
    assert (rows[ids[1]]["workload"], rows[ids[1]]["latency_band"]) == ("nightly", "async")


def test_the_command_line_names_a_workload(served, trained_bundle, tmp_path):
    server, _, logs = served
    runner = CliRunner()
    asked = runner.invoke(cli, ["client", "predict", HARD, "--target", server.target, "--workload", "nightly",
                                "--request-id", "cli-1"])  # fmt: skip
    assert asked.exit_code == 0, asked.output
    assert json.loads(asked.output)["use_batch_api"] is True
    assert logged_rows(logs["decisions"], ["cli-1"])[0]["workload"] == "nightly"
    policy = write(tmp_path / "workloads.toml", POLICY)
    here = ["predict", HARD, "--model", str(trained_bundle), "--workloads", str(policy), "--workload", "nightly"]
    decided = json.loads(runner.invoke(cli, here).output)
    assert (decided["workload"], decided["latency_band"], decided["quality_target"]) == ("nightly", "async", 0.0)
    waiting = json.loads(runner.invoke(cli, [*here, "--latency-band", "interactive"]).output)
    assert (waiting["latency_band"], waiting["quality_target"]) == ("interactive", 0.0)
    refused = runner.invoke(cli, ["predict", HARD, "--model", str(trained_bundle), "--workload", ""])
    assert refused.exit_code == 2 and "'--workload'" in refused.output


def test_the_proxy_refuses_a_bad_file_at_start(tmp_path):
    bad = write(tmp_path / "bad.toml", "[workload.x]\nmode = 'fastest'\n")
    result = subprocess.run(
        [*PROXY, "--router", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--workloads", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "[workload.x] mode: must be one of" in result.stderr
