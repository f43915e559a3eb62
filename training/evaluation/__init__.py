"""Evaluation of a router on logged outcomes: cost-quality curves, APGR and honest baselines (issue 7).

Every number is computed from three arrays over n requests and T tiers (cheapest first): `success` (0/1,
NaN where a tier was never tried), `cost` (USD per request and tier) and `probs` (the router's
P(success) per tier). See docs/evaluation.md for the definitions and the JSON keys.
"""
