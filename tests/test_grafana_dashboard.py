"""deploy/grafana/tierwise.json asks only for metrics and labels a real `tierwise serve` exports, and compose
provisions it next to Prometheus.

A server is started and called once in every way (each Router method, a refused call, a health check, an
outcome), its /metrics read, and every metric name in the dashboard's PromQL (panels and variables) must be
among the exported samples (histograms as their `_bucket`, `_sum` and `_count` samples). The labels a query
matches on or groups by must be labels of the metrics it reads, or ones Prometheus or the worker pool adds.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "tierwise.json"
# Labels that are not the server's: Prometheus adds job and instance, the worker pool's supervisor `worker`.
ADDED_LABELS = {"job", "instance", "worker", "le"}
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_NAME = re.compile(r"(?<![\w$.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions, keywords, labels or label values)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = _GROUPING.sub("", expr)
    return {name for name in _NAME.findall(expr) if name not in _KEYWORDS}


def label_uses(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """The labels each metric is matched on, and every label the expression groups by."""
    matched: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)):
        matched.setdefault(name, set()).update(_MATCHER.findall(matchers))
    grouped = {label.strip() for labels in _GROUPING.findall(expr) for label in labels.split(",") if label.strip()}
    return matched, grouped


def dashboard_queries() -> list[str]:
    """Every PromQL expression in the dashboard: panel targets and query variables."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"] + [p for row in dashboard["panels"] for p in row.get("panels", [])]
    queries = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            found = re.fullmatch(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)", query)
            assert found, f"variable {variable['name']}: only label_values(metric, label) is checked, got {query}"
            queries.append(f'{found.group(1)}{{{found.group(2)}=~".*"}}')
    return queries


def test_metric_names_are_read_from_promql_without_functions_labels_or_values():
    expr = (
        'histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket{job=~"$job",'
        'grpc_type="unary"}[$__rate_interval]))) / scalar(sum(rate(tierwise_explored_total[5m]))) - time() * 1e-3'
    )
    assert metric_names(expr) == {"grpc_server_handling_seconds_bucket", "tierwise_explored_total"}
    matched, grouped = label_uses(expr)
    assert matched == {"grpc_server_handling_seconds_bucket": {"job", "grpc_type"}}
    assert grouped == {"le", "grpc_method"}


def exported(text: str) -> dict[str, set[str]]:
    """Every sample name of a /metrics page, with the labels it carries."""
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def call_every_way(target: str) -> None:
    """One of each call a dashboard panel counts: every Router method, a refused call, a health check."""
    with grpc.insecure_channel(target) as channel:
        router = pb_grpc.RouterStub(channel)
        answer = router.Predict(pb.PredictRequest(prompt="Say hello.", request_id="dash-1"), timeout=10)
        with pytest.raises(grpc.RpcError):
            router.Predict(pb.PredictRequest(), timeout=10)
        router.PredictBatch(pb.PredictBatchRequest(requests=[pb.PredictRequest(prompt="Add 2 and 2.")]), timeout=10)
        list(router.PredictStream(iter([pb.PredictRequest(prompt="Name a colour.")]), timeout=10))
        router.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        outcome = pb.Outcome(request_id="dash-1", model=answer.model, success=True)
        router.ReportOutcome(outcome, timeout=10)
        router.ReportOutcomes(iter([outcome]), timeout=10)
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)


@pytest.fixture(scope="module")
def scraped(trained_bundle, tmp_path_factory) -> dict[str, set[str]]:
    logs = tmp_path_factory.mktemp("dashboard")
    args = ["--model", str(trained_bundle), "--port", "0", "--metrics-port", "0"]
    args += ["--decision-log", str(logs / "decisions.jsonl"), "--outcome-log", str(logs / "outcomes.jsonl")]
    with ServerProcess(args) as server:
        call_every_way(server.target)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as response:
            return exported(response.read().decode())


def test_every_metric_the_dashboard_reads_is_exported(scraped):
    used = set().union(*map(metric_names, dashboard_queries()))
    assert used - scraped.keys() == set()
    # the panels a stock gRPC dashboard has, the decisions by model version, and each process's figures
    assert {
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "tierwise_predicted_tier_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    } <= used


def test_every_label_the_dashboard_matches_or_groups_by_is_exported(scraped):
    for expr in dashboard_queries():
        matched, grouped = label_uses(expr)
        for name, labels in matched.items():
            assert labels - ADDED_LABELS <= scraped[name], (expr, name)
        read = set().union(*(scraped[name] for name in metric_names(expr)))
        assert grouped - ADDED_LABELS <= read, expr
    assert {"model_version", "tier"} <= scraped["tierwise_predicted_tier_total"]


def test_compose_provisions_the_dashboard_on_the_prometheus_it_runs():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    grafana = services["grafana"]
    mounts = dict(volume.removesuffix(":ro").split(":", 1) for volume in grafana["volumes"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "tierwise.yml").read_text())["providers"]
    assert mounts[f"./grafana/{DASHBOARD.name}"] == f"{provider['options']['path']}/{DASHBOARD.name}"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    prometheus_port = services["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert source["type"] == "prometheus" and source["url"] == f"http://prometheus:{prometheus_port}"
    assert "prometheus" in grafana["depends_on"]
