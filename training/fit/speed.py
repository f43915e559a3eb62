"""How fast an exported router answers, measured once at training time and recorded in its manifest."""

from __future__ import annotations

import time

import numpy as np
from tierwise.classifier.router import Router

LATENCY_CALLS = 300


def measure_latency(router: Router, prompts: list[str], calls: int = LATENCY_CALLS) -> dict[str, float]:
    """p50 and p99 of single `router.predict` calls in microseconds, so a slow bundle shows before it serves."""
    if not prompts:
        return {}
    times = []
    for i in range(calls):
        start = time.perf_counter_ns()
        router.predict(prompts[i % len(prompts)])
        times.append((time.perf_counter_ns() - start) / 1000)
    return {"latency_p50_us": float(np.percentile(times, 50)), "latency_p99_us": float(np.percentile(times, 99))}
