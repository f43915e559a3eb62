"""RouteLLM's own metrics for two-tier routers, so results compare with its paper (arXiv 2406.18665).

As `routellm/evals/evaluate.py` and `benchmarks.py` compute them: the router gives each request a score for
needing the strong (dearer) tier; the thresholds are the 11 bin edges of `pd.qcut(scores, 10)` (quantiles with
linear interpolation, duplicates kept); at every edge but the last a request goes strong when its score >=
the edge, at the last when it is > the edge. x is the share of calls to the strong tier, y the success rate.
Points are sorted by x;
- APGR = (AUC - weak AUC) / (strong AUC - weak AUC), each AUC by the trapezoid rule over x (the weak and
  strong AUCs are their accuracy times the span of x);
- CPT(p) = `np.interp(weak + p (strong - weak), y, x)`: the strong share at which y reaches that quality.
RouteLLM prints CPT as a percentage of calls; here it is the share (0.354 is its 35.4%).
"""

from __future__ import annotations

import numpy as np

DECILES = 10
CPT_SHARES = (0.5, 0.8)


def routellm_metrics(weak: np.ndarray, strong: np.ndarray, strong_score: np.ndarray) -> dict[str, float | None]:
    """`routellm_apgr`, `routellm_cpt50`, `routellm_cpt80` from per-request weak and strong outcomes (0/1).

    Computed exactly as RouteLLM does, also where the dearer tier is the worse one (the metric then inverts:
    a perfect router scores below 0); None only where RouteLLM would divide by zero (equal tier accuracies, or
    every threshold giving the same share of strong calls).
    """
    weak, strong = np.asarray(weak, dtype=np.float64), np.asarray(strong, dtype=np.float64)
    score = np.asarray(strong_score, dtype=np.float64)
    edges = np.quantile(score, np.linspace(0.0, 1.0, DECILES + 1))
    shares, qualities = [], []
    for i, edge in enumerate(edges):
        strong_calls = score >= edge if i < len(edges) - 1 else score > edge
        shares.append(strong_calls.mean())
        qualities.append(np.where(strong_calls, strong, weak).mean())
    order = np.argsort(shares, kind="stable")
    x, y = np.asarray(shares)[order], np.asarray(qualities)[order]
    weak_quality, strong_quality = float(weak.mean()), float(strong.mean())
    span = float(x[-1] - x[0])
    gap = strong_quality - weak_quality
    metrics: dict[str, float | None] = {
        "routellm_apgr": (
            float((np.trapezoid(y, x) - weak_quality * span) / (gap * span)) if gap != 0 and span > 0 else None
        )
    }
    for share in CPT_SHARES:
        metrics[f"routellm_cpt{round(share * 100)}"] = (
            float(np.interp(share * gap + weak_quality, y, x)) if gap != 0 else None
        )
    return metrics
