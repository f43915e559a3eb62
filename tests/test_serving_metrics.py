"""The hot-path metrics: counts, cumulative latency buckets (upper bounds inclusive) and tiers, as scraped."""

from __future__ import annotations

import prometheus_client as prom

from serving.metrics import ServiceMetrics


def scrape(metrics: ServiceMetrics) -> dict[str, float]:
    lines = prom.generate_latest(metrics.registry).decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


def test_calls_latency_buckets_and_tiers_read_as_prometheus_would():
    metrics = ServiceMetrics()
    for seconds in (0.0001, 0.0001, 0.0002, 3.0, 20.0):
        metrics.record_call("Predict", "OK", seconds)
    metrics.record_call("Predict", "INVALID_ARGUMENT", 0.00001)
    metrics.record_tier("haiku")
    metrics.record_tier("haiku")
    metrics.record_tier("opus")
    values = scrape(metrics)
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
    assert values['tierwise_predicted_tier_total{tier="haiku"}'] == 2
    assert values['tierwise_predicted_tier_total{tier="opus"}'] == 1
