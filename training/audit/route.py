"""Route within the workload: a router trained and scored on the workload's own requests, cross-fitted so that no
request is scored by a router that trained on it.

The requests are split into ROUTE_FOLDS folds by a hash of their id. For each fold, a head and its policy are
fitted on the other folds exactly as `tierwise train` fits them (`fit_head_and_policy`: the head on a fit part,
the rule and threshold chosen on a hashed validation part to keep the quality target of always-top quality), then
route the fold's requests, each to one tier. What the workload would cost and achieve is those routed tiers'
cost and outcome on each request (unknown where the tier was never tried). `vs_right_size` is the router's saving
over sending every request to the right-size tier.
"""

from __future__ import annotations

import numpy as np
from tierwise.classifier.policy import rule_scores
from tierwise.training.audit.data import Workload
from tierwise.training.audit.saving import LeverOutcome
from tierwise.training.data.splits import VALIDATION_SHARE, hashed_folds, hashed_share
from tierwise.training.evaluation.curves import choose_tiers
from tierwise.training.evaluation.off_policy import TrafficLog
from tierwise.training.fit.train import Masks, TrainOptions, fit_head_and_policy

ROUTE_FOLDS = 3
MIN_ROUTE_REQUESTS = 100


def route(workload: Workload, vectors: np.ndarray, target: float, right_size_cost: np.ndarray | None) -> LeverOutcome:
    """Each request on the tier its out-of-fold router picks; `vectors` are the workload's prompt embeddings."""
    success, cost, ladder = workload.success, workload.cost, workload.ladder
    taught = int(np.isfinite(success).any(axis=1).sum())
    if taught < MIN_ROUTE_REQUESTS:
        reason = f"{taught} requests with an outcome; a cross-fitted router needs at least {MIN_ROUTE_REQUESTS}"
        return LeverOutcome.unmeasured(reason=reason)
    ids = workload.frame["request_id"]
    folds = hashed_folds(ids, ROUTE_FOLDS, "audit-route")
    validation = hashed_share(ids, VALIDATION_SHARE, "audit-validation")
    options = TrainOptions(quality_floor=target)
    traffic = TrafficLog.from_labels(workload.frame, ladder.names)
    chosen = np.full(workload.requests, len(ladder) - 1)
    rules = []
    for fold in range(ROUTE_FOLDS):
        test = folds == fold
        train = ~test
        masks = Masks(train=train, fit=train & ~validation, validation=train & validation, test=test)
        tier_costs = [float(np.nanmean(cost[train, k])) for k in range(len(ladder))]
        head, choice = fit_head_and_policy(vectors, success, cost, tier_costs, masks, options, traffic, refit=False)
        scores = rule_scores(head.predict_proba(vectors[test]), choice.spec.rule, tier_costs)
        chosen[test] = choose_tiers(scores, choice.spec.threshold)
        rules.append({"rule": choice.spec.rule, "threshold": choice.spec.threshold, "requests": int(test.sum())})
    rows = np.arange(workload.requests)
    routed_cost, routed_success = cost[rows, chosen], success[rows, chosen]
    shares = {name: float(np.mean(chosen == k)) for k, name in enumerate(ladder.names)}
    sums = {} if right_size_cost is None else {"vs_right_size": right_size_cost - routed_cost}
    details = {"folds": rules, "tier_shares": shares, "meets_target": _meets(success, routed_success, target)}
    return LeverOutcome(routed_cost, routed_success, details, sums)


def _meets(success: np.ndarray, routed: np.ndarray, target: float) -> bool | None:
    """Whether the routed success rate is at least `target` x the top tier's, on requests where both are known."""
    both = np.isfinite(routed) & np.isfinite(success[:, -1])
    return bool(routed[both].mean() >= target * success[both, -1].mean()) if both.any() else None
