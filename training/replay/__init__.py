"""Replay labelling: send censored requests to the tiers they never tried, through the Message Batches API.

- `censored`: which (request, tier) pairs to replay and what to send.
- `state`: the resumable state file (what was submitted, to which batch, and what came back).
- `batches`: submit, reconcile, poll and collect with the official `anthropic` SDK.
- `graders`: exact match, an LLM judge (tool output, cached rubric), or a user's Python callable.
- `budget`: token and cost estimates, the dry-run table, the budget stop.
- `run`: the orchestration behind `tierwise replay`, writing new attempt rows.
"""
