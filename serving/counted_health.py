"""grpc.health.v1 servicers whose Check calls count in gRPC's standard server metrics.

Load balancers and orchestrators probe health every few seconds; counting the probes shows on a stock gRPC
dashboard whether they reach the server, what it answers and how fast. Watch streams last as long as
their watcher and are not counted.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2
from tierwise.serving.metrics import Rpc, ServiceMetrics

HEALTH_CHECK = Rpc.of(health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name["Check"])


class CountedHealthServicer(health.HealthServicer):
    """grpc_health's servicer for grpc.server, counting each Check."""

    def __init__(self, metrics: ServiceMetrics, **options: Any):
        super().__init__(**options)
        self._metrics = metrics

    def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext) -> Any:
        with self._metrics.timed(HEALTH_CHECK, context):
            return super().Check(request, context)


class AsyncCountedHealthServicer(health.aio.HealthServicer):
    """grpc_health's servicer for grpc.aio.server, counting each Check."""

    def __init__(self, metrics: ServiceMetrics):
        super().__init__()
        self._metrics = metrics

    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> Any:
        with self._metrics.timed(HEALTH_CHECK, context):
            return await super().Check(request, context)
