"""Trivial routers every learned router must beat, scored on the same rows with the same metrics."""

from __future__ import annotations

import numpy as np
from tierwise.training.evaluation.curves import Curve
from tierwise.training.evaluation.metrics import Anchors

RANDOM_MIX_RATIOS = 10_001
KNN_NEIGHBOURS = 20
_KNN_SIMILARITIES = 16_000_000  # query-to-training similarities held at once (64 MB in float32)
# Training requests the k-NN baseline searches at most: its cost is held-out x searched requests, so on logs of
# millions of requests it searches a sample (the shared datasets' few thousand are searched whole).
KNN_BANK = 100_000


def random_mix_curve(anchors: Anchors, n_ratios: int = RANDOM_MIX_RATIOS) -> Curve:
    """Expected cost and quality of sending a random share r of requests to the top tier, the rest to the cheapest.

    Both are linear in r; the curve samples r on a fine even grid, so its APGR is 0.5 up to that grid.
    """
    ratios = np.linspace(0.0, 1.0, n_ratios)
    return Curve(
        settings=ratios,
        cost=anchors.cheapest_cost + ratios * (anchors.top_cost - anchors.cheapest_cost),
        quality=anchors.cheapest_quality + ratios * anchors.gap,
    )


def length_heuristic_probs(prompt_chars: np.ndarray, n_tiers: int) -> np.ndarray:
    """Pseudo-probabilities of a router that sends longer prompts to higher tiers, swept like the real one.

    Difficulty d is the prompt's length percentile among the evaluated prompts (ties share their mean
    rank); tier k passes the threshold while 1 - d (T-1-k)/(T-1) >= threshold, so raising the threshold
    escalates the longest prompts first, through every tier, and the top tier always passes.
    """
    chars = np.asarray(prompt_chars, dtype=np.float64)
    _, inverse, counts = np.unique(chars, return_inverse=True, return_counts=True)
    mean_rank = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    difficulty = mean_rank / len(chars)
    if n_tiers == 1:
        return np.ones((len(chars), 1))
    steps_below_top = np.arange(n_tiers - 1, -1, -1) / (n_tiers - 1)
    return 1.0 - difficulty[:, None] * steps_below_top[None, :]


def knn_bank(n_train: int, bank: int = KNN_BANK) -> np.ndarray:
    """The training rows the k-NN baseline searches: all of them up to `bank`, else `bank` rows spread evenly over
    the logs (a systematic sample, the same on every run), so evaluating a large log stays minutes, not hours."""
    if n_train <= bank:
        return np.arange(n_train)
    return np.linspace(0, n_train - 1, bank).round().astype(np.int64)


def knn_probs(
    train_embeddings: np.ndarray,
    train_success: np.ndarray,
    eval_embeddings: np.ndarray,
    k: int = KNN_NEIGHBOURS,
) -> np.ndarray:
    """P(success) per tier as the success rate of the k most cosine-similar training requests.

    Uses only neighbours where that tier was tried (NaN outcomes skipped); a tier no neighbour tried gets
    its success rate over all training requests. Embeddings come from the router's own encoder.
    """
    train = _unit_rows(train_embeddings)
    queries = _unit_rows(eval_embeddings)
    outcomes = np.asarray(train_success, dtype=np.float64)
    if train.shape[0] == 0:
        raise ValueError("the k-NN baseline needs at least one training request")
    k = min(k, train.shape[0])
    known = np.isfinite(outcomes)
    succeeded = np.where(known, outcomes, 0.0)
    prior = succeeded.sum(axis=0) / np.maximum(known.sum(axis=0), 1)
    probs = np.empty((queries.shape[0], outcomes.shape[1]))
    block = max(1, _KNN_SIMILARITIES // train.shape[0])  # queries per block, so memory stays flat as logs grow
    for start in range(0, queries.shape[0], block):
        distance = queries[start : start + block] @ train.T
        np.negative(distance, out=distance)
        nearest = np.argpartition(distance, k - 1, axis=1)[:, :k]
        tried = known[nearest].sum(axis=1)
        wins = succeeded[nearest].sum(axis=1)
        probs[start : start + block] = np.where(tried > 0, wins / np.maximum(tried, 1), prior)
    return probs


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, so a dot product is the cosine similarity (float32, as embeddings are: half
    the memory and time of float64 on large logs)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)
