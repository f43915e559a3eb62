"""The hot-path metrics: counts, cumulative latency buckets (upper bounds inclusive) and tiers, as scraped;
gRPC's standard server metrics next to tierwise's own; the process's own figures."""

from __future__ import annotations

import prometheus_client as prom
from prometheus_client.registry import CollectorRegistry
from tierwise.serving.metrics import UNKNOWN_RPC, HotPathStats, Rpc, ServiceMetrics
from tierwise.serving.service import ROUTER_RPCS, rpc_for

PREDICT = ROUTER_RPCS["Predict"]
STREAM = ROUTER_RPCS["PredictStream"]
RPC_LABELS = 'grpc_method="{0.method}",grpc_service="{0.service}",grpc_type="{0.type}"'


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    lines = prom.generate_latest(registry).decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


def test_calls_latency_buckets_and_tiers_read_as_prometheus_would():
    metrics = ServiceMetrics()
    for seconds in (0.0001, 0.0001, 0.0002, 3.0, 20.0):
        metrics.record_call(PREDICT, "OK", seconds)
    metrics.record_call(PREDICT, "INVALID_ARGUMENT", 0.00001)
    metrics.record_tier("haiku", "v1")
    metrics.record_tier("haiku", "v1", workload="triage")
    metrics.record_tier("opus", "v1", explored=True)
    metrics.record_tier("haiku", "v2")
    values = scrape(metrics.registry)
    assert values['tierwise_requests_total{code="OK",method="Predict"}'] == 5
    assert values['tierwise_requests_total{code="INVALID_ARGUMENT",method="Predict"}'] == 1
    bucket = 'tierwise_request_latency_seconds_bucket{le="%s",method="Predict"}'
    assert values[bucket % "5e-05"] == 1
    assert values[bucket % "0.0001"] == 3  # a bound counts the values equal to it
    assert values[bucket % "0.00025"] == 4
    assert values[bucket % "2.5"] == 4
    assert values[bucket % "10.0"] == 5
    assert values[bucket % "+Inf"] == 6
    assert values['tierwise_request_latency_seconds_count{method="Predict"}'] == 6
    assert abs(values['tierwise_request_latency_seconds_sum{method="Predict"}'] - 23.00041) < 1e-9
    tier = 'tierwise_predicted_tier_total{model_version="%s",tier="%s",workload="%s"}'
    assert values[tier % ("v1", "haiku", "other")] == 1
    assert values[tier % ("v1", "haiku", "triage")] == 1
    assert values[tier % ("v1", "opus", "other")] == 1
    assert values[tier % ("v2", "haiku", "other")] == 1
    assert not any(key.startswith('tierwise_predicted_tier_total{model_version="v2",tier="opus"') for key in values)
    assert values['tierwise_explored_total{workload="other"}'] == 1
    assert values['tierwise_explored_total{workload="triage"}'] == 0  # every workload seen has its series


def test_without_decisions_exploration_is_exported_at_zero_and_reloads_of_the_workloads_file_are_counted():
    metrics = ServiceMetrics()
    metrics.record_workloads_reload("loaded")
    metrics.record_workloads_reload("refused")
    values = scrape(metrics.registry)
    assert values['tierwise_explored_total{workload="other"}'] == 0
    assert values['tierwise_workloads_reloads_total{result="loaded"}'] == 1
    assert values['tierwise_workloads_reloads_total{result="refused"}'] == 1


def test_a_unary_call_is_one_started_and_one_handled_rpc_with_its_code_and_time():
    metrics = ServiceMetrics()
    metrics.start_rpc(PREDICT)
    metrics.start_rpc(PREDICT)
    values = scrape(metrics.registry)
    labels = RPC_LABELS.format(PREDICT)
    assert values[f"grpc_server_started_total{{{labels}}}"] == 2  # counted as they start: in flight
    assert not any(key.startswith("grpc_server_handled_total") for key in values)
    metrics.record_call(PREDICT, "OK", 0.0002)
    metrics.record_call(PREDICT, "INVALID_ARGUMENT", 0.00002)
    values = scrape(metrics.registry)
    assert values[f'grpc_server_handled_total{{grpc_code="OK",{labels}}}'] == 1
    assert values[f'grpc_server_handled_total{{grpc_code="INVALID_ARGUMENT",{labels}}}'] == 1
    assert values[f'grpc_server_handling_seconds_bucket{{{labels},le="5e-05"}}'] == 1
    assert values[f'grpc_server_handling_seconds_bucket{{{labels},le="0.00025"}}'] == 2
    assert values[f"grpc_server_handling_seconds_count{{{labels}}}"] == 2
    assert Rpc("tierwise.v1.Router", "Predict", "unary") == PREDICT


def test_a_stream_is_one_rpc_in_grpc_metrics_and_one_call_per_message_in_tierwise_metrics():
    stats = HotPathStats()
    registry = CollectorRegistry()
    registry.register(stats)
    for code in ("OK", "CANCELLED"):
        stats.start_rpc(STREAM)
        for _ in range(3):
            stats.record_message(STREAM, "OK", 0.0001)
        stats.end_rpc(STREAM, code, 2.0)
    values = scrape(registry)
    labels = RPC_LABELS.format(STREAM)
    assert STREAM.type == "bidi_stream" and ROUTER_RPCS["ReportOutcomes"].type == "client_stream"
    assert values['tierwise_requests_total{code="OK",method="PredictStream"}'] == 6
    assert values['tierwise_request_latency_seconds_count{method="PredictStream"}'] == 6
    assert values[f"grpc_server_started_total{{{labels}}}"] == 2
    assert values[f'grpc_server_handled_total{{grpc_code="OK",{labels}}}'] == 1
    assert values[f'grpc_server_handled_total{{grpc_code="CANCELLED",{labels}}}'] == 1
    assert values[f'grpc_server_handling_seconds_bucket{{{labels},le="0.5"}}'] == 0
    assert values[f"grpc_server_handling_seconds_count{{{labels}}}"] == 2


def test_a_refused_stream_is_a_handled_rpc_and_a_call_its_messages_are_calls_only():
    metrics = ServiceMetrics()
    metrics.record_refused(STREAM, "RESOURCE_EXHAUSTED")
    metrics.record_message(STREAM, "RESOURCE_EXHAUSTED", 0.001)  # the same code from a message of an open stream
    values = scrape(metrics.registry)
    labels = RPC_LABELS.format(STREAM)
    assert values['tierwise_requests_total{code="RESOURCE_EXHAUSTED",method="PredictStream"}'] == 2
    assert values['tierwise_request_latency_seconds_count{method="PredictStream"}'] == 2
    assert values[f'grpc_server_handled_total{{grpc_code="RESOURCE_EXHAUSTED",{labels}}}'] == 1
    assert values[f"grpc_server_handling_seconds_count{{{labels}}}"] == 1


def test_paths_outside_the_router_share_one_unknown_label():
    assert rpc_for("/tierwise.v1.Router/Predict") == PREDICT
    assert rpc_for("/tierwise.v1.Router/Nope") == rpc_for("/x/123") == UNKNOWN_RPC
    metrics = ServiceMetrics()
    metrics.record_refused(rpc_for("/x/1"), "UNAUTHENTICATED")
    metrics.record_refused(rpc_for("/x/2"), "UNAUTHENTICATED")
    values = scrape(metrics.registry)
    assert values['tierwise_requests_total{code="UNAUTHENTICATED",method="unknown"}'] == 2
    unknown = 'grpc_code="UNAUTHENTICATED",grpc_method="unknown",grpc_service="unknown",grpc_type="unknown"'
    assert values[f"grpc_server_handled_total{{{unknown}}}"] == 2


def test_the_registry_carries_the_process_figures():
    values = scrape(ServiceMetrics().registry)
    assert values["process_resident_memory_bytes"] > 0
    assert values["process_cpu_seconds_total"] > 0
    assert values["process_open_fds"] > 0
