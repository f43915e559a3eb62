"""Realistic synthetic attempt logs, so the demo and the tests never need real traffic.

Difficulty comes from the text: the domain, the length, and reasoning words. Each tier's chance of success
falls with difficulty, more slowly for stronger tiers. Not every request tries every tier (censored
requests), and some fail on every tier (unsolved).

Each domain is one workload (`workload` column), and four of them have a character `tierwise audit` must find:
`greetings`, which the cheapest tier answers almost always; `support-triage`, every request of which starts with
the same long system prompt (`SYSTEM_PROMPT_TOKENS`), sent every `SUPPORT_GAP_S` seconds, never cached;
`nightly-summaries`, logged in the `async` latency band (`latency_band` column); and `strategy-analysis`, which
needs the top tier.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from tierwise.classifier.outputs import OutputDir
from tierwise.classifier.tiers import Tier, TierLadder
from tierwise.training.data.labels import write_table

FORMATS = ("jsonl", "csv", "parquet")
SAMPLE_LOGS = OutputDir("sample-logs directory", frozenset(f"attempts.{fmt}" for fmt in FORMATS))


@dataclass(frozen=True)
class Domain:
    """A family of requests: its templates, fillers, base difficulty, typical answer length in tokens, the
    workload it is, that workload's latency band, and the system prompt its requests start with (if any)."""

    name: str
    templates: tuple[str, ...]
    fillers: tuple[str, ...]
    difficulty: float
    output_tokens: int
    workload: str
    band: str = "interactive"
    system_prompt: str = ""


SYSTEM_PROMPT_TOKENS = 4_300  # above every Claude model's minimum cacheable prompt length
SUPPORT_RULES = (
    "Classify the customer's message as billing, delivery, account, product defect or other.",
    "Quote the order number exactly as the customer wrote it, and never invent one.",
    "Escalate to a human agent when the customer mentions a lawyer, a chargeback or a safety risk.",
    "Refunds above 200 euros need a supervisor's approval; say so instead of promising one.",
    "Answer in the customer's language and keep a calm, friendly tone.",
    "Never ask for a full card number, a password or a one-time code.",
    "Deliveries late by more than ten working days qualify for free shipping on the next order.",
    "Name the next step and who takes it, in one sentence, at the end of every answer.",
)


def _system_prompt(tokens: int) -> str:
    """A support team's long instructions, its rules over and over: exactly `tokens` x 4 characters."""
    rules = "\n".join(f"- {rule}" for rule in SUPPORT_RULES)
    return "\n".join([rules] * (tokens * 4 // len(rules) + 1))[: tokens * 4]


SUPPORT_GAP_S = 20.0  # one support-triage request every 20 seconds: well inside the 5-minute cache lifetime


DOMAINS = (
    Domain(
        "chitchat",
        (
            "Say hello to {x} in a friendly way.",
            "Give me a one-line greeting for {x}.",
            "Thank {x} for the gift.",
        ),
        ("my neighbour", "the team", "a new colleague", "grandma", "the new intern", "our customers"),
        -2.0,
        40,
        "greetings",
    ),
    Domain(
        "extraction",
        (
            "Extract the date from this sentence: 'The meeting with {x} is on March 3rd.'",
            "List the names mentioned in: '{x} met Alice and Bob at the station.'",
            "Translate to French: 'I will call {x} tomorrow.'",
        ),
        ("the supplier", "Dr. Smith", "the landlord", "our lawyer", "the bank", "Maria"),
        -1.0,
        60,
        "support-triage",
        system_prompt=_system_prompt(SYSTEM_PROMPT_TOKENS),
    ),
    Domain(
        "summary",
        (
            "Summarize this paragraph about {x} in two sentences: {x} has grown quickly over the last decade, "
            "with new regulations, new competitors and changing customer habits shaping the market.",
            "Write a short product description for {x}.",
            "Rewrite this email about {x} to sound more polite.",
        ),
        (
            "electric bikes",
            "cloud storage",
            "organic coffee",
            "home insurance",
            "online tutoring",
            "solar panels",
        ),
        0.0,
        180,
        "nightly-summaries",
        band="async",
    ),
    Domain(
        "code",
        (
            "Write a Python function that {x}.",
            "Fix the bug in this JavaScript code that {x}: `for (i = 0; i <= arr.length; i++) sum += arr[i]`",
            "Implement a thread-safe class in Java that {x}, with unit tests.",
        ),
        (
            "reverses a linked list",
            "parses ISO dates",
            "merges overlapping intervals",
            "computes an LRU cache",
            "validates a sudoku board",
            "serializes a binary tree",
        ),
        1.0,
        400,
        "code-assist",
    ),
    Domain(
        "math",
        (
            "Prove that {x}.",
            "Solve step by step: {x}.",
            "Derive a closed form and prove by induction that {x}.",
        ),
        (
            "the sum of the first n odd numbers is n squared",
            "there are infinitely many primes",
            "x^2 - 5x + 6 = 0 has two integer roots",
            "every bounded monotone sequence converges",
            "sqrt(2) is irrational",
            "the integral of x e^x dx equals (x - 1) e^x + C",
        ),
        1.6,
        500,
        "math-tutor",
    ),
    Domain(
        "analysis",
        (
            "Analyze the trade-offs of {x}, considering cost, risk and long-term consequences, and recommend "
            "a strategy with justification.",
            "Compare {x} and explain why one is better for a mid-size company, step by step.",
        ),
        (
            "microservices versus a monolith",
            "leasing versus buying a fleet",
            "two competing tax regimes",
            "a merger under antitrust review",
            "moving the data centre to the cloud",
            "hedging currency risk with options",
        ),
        2.2,
        700,
        "strategy-analysis",
    ),
)
REASONING_WORDS = ("step by step", "prove", "derive", "justify", "explain why", "trade-offs", "analyze")
TIER_SKILL_STEP = 1.6
SKILL_OFFSET = 0.4
SUCCESS_SLOPE = 4.0
# Speed of a tier whose ladder gives none: first token and output rate of the cheapest tier, each step up
# slower by these factors (roughly the Claude ladder's published figures).
FALLBACK_FIRST_TOKEN_MS = 700.0
FALLBACK_TOKENS_PER_S = 97.0
FIRST_TOKEN_STEP = 1.9
RATE_STEP = 0.68
# Spread of one attempt's first-token time and output rate around the tier's typical figures (log-normal).
FIRST_TOKEN_JITTER = 0.3
RATE_JITTER = 0.15


@dataclass(frozen=True)
class _Speed:
    """A tier's typical first-token time (ms) and output rate (tokens/s) in generated logs."""

    first_token_ms: float
    tokens_per_s: float

    @classmethod
    def of(cls, tier: Tier, index: int) -> _Speed:
        if tier.first_token_ms is not None and tier.output_tokens_per_s is not None:
            return cls(tier.first_token_ms, tier.output_tokens_per_s)
        return cls(FALLBACK_FIRST_TOKEN_MS * FIRST_TOKEN_STEP**index, FALLBACK_TOKENS_PER_S * RATE_STEP**index)

    def attempt(self, rng: np.random.Generator, output_tokens: int, overhead_ms: float) -> tuple[float, float]:
        """(ttft_ms, latency_ms) of one attempt: a jittered first token, then the tokens at a jittered rate."""
        ttft = self.first_token_ms * float(rng.lognormal(0.0, FIRST_TOKEN_JITTER)) + overhead_ms
        rate = self.tokens_per_s * float(rng.lognormal(0.0, RATE_JITTER))
        return round(ttft, 1), round(ttft + 1000.0 * output_tokens / rate, 1)


def _difficulty(domain: Domain, text: str, noise: float) -> float:
    reasoning = sum(word in text.lower() for word in REASONING_WORDS)
    return domain.difficulty + 0.4 * reasoning + 0.6 * math.log1p(len(text) / 200) + noise


def _tiers_tried(rng: np.random.Generator, n_tiers: int) -> list[int]:
    """Which tiers a request was sent to: usually all, sometimes only the top or a subset (censoring)."""
    draw = rng.random()
    if draw < 0.7 or n_tiers == 1:
        return list(range(n_tiers))
    if draw < 0.85:
        return [n_tiers - 1]
    return sorted({int(rng.integers(0, n_tiers - 1)), n_tiers - 1})


def generate_attempts(requests: int, seed: int = 0, ladder: TierLadder | None = None) -> pl.DataFrame:
    """Generate attempt rows (request_id, prompt, model, success, tokens, cost, latency, timestamp, category,
    workload, latency_band, split).

    Latency: the tier's first-token time (the ladder's figure, else a fallback), then the output tokens at the
    tier's rate, both jittered per attempt; harder domains have longer answers (a greeting ~40 tokens, an
    analysis ~700), so they take longer.
    """
    ladder = ladder or TierLadder.load()
    speeds = [_Speed.of(tier, index) for index, tier in enumerate(ladder.tiers)]
    rng = np.random.default_rng(seed)
    timing_rng = np.random.default_rng([seed, 1])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    support = start + timedelta(days=15)  # support-triage's busy hour, in the middle of the month
    rows = []
    for number in range(requests):
        domain = DOMAINS[int(rng.integers(len(DOMAINS)))]
        template = domain.templates[int(rng.integers(len(domain.templates)))]
        question = template.format(x=domain.fillers[int(rng.integers(len(domain.fillers)))])
        if rng.random() < 0.3:
            question += " Please be thorough and explain why each step holds."
        request_id = f"req-{seed}-{number:06d}"
        difficulty = _difficulty(domain, question, float(rng.normal(0, 0.3)))
        split = "test" if int(hashlib.sha256(request_id.encode()).hexdigest(), 16) % 5 == 0 else "train"
        when = start + timedelta(minutes=float(rng.uniform(0, 60 * 24 * 30)))
        if domain.system_prompt:
            when, support = support, support + timedelta(seconds=SUPPORT_GAP_S)
        text = f"{domain.system_prompt}\n\n{question}" if domain.system_prompt else question
        input_tokens = max(1, len(text) // 4)
        for index in _tiers_tried(rng, len(ladder)):
            tier = ladder.tiers[index]
            skill = SKILL_OFFSET + TIER_SKILL_STEP * index
            success = bool(rng.random() < 1 / (1 + math.exp(-SUCCESS_SLOPE * (skill - difficulty + 0.5))))
            output_tokens = max(5, int(rng.normal(domain.output_tokens, domain.output_tokens * 0.2)))
            ttft_ms, latency_ms = speeds[index].attempt(timing_rng, output_tokens, float(rng.uniform(100, 300)))
            rows.append(
                {
                    "request_id": request_id,
                    "prompt": text,
                    "model": tier.model,
                    "success": success,
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "cost_usd": tier.token_cost(input_tokens, output_tokens),
                    "latency_ms": latency_ms,
                    "ttft_ms": ttft_ms,
                    "timestamp": (when + timedelta(seconds=index * 5)).isoformat(),
                    "category": domain.name,
                    "workload": domain.workload,
                    "latency_band": domain.band,
                    "split": split,
                }
            )
    return pl.DataFrame(rows)


def write_sample_logs(
    out_dir: str | Path, requests: int, seed: int = 0, fmt: str = "jsonl", ladder: TierLadder | None = None
) -> Path:
    """Write generated attempt logs as `attempts.<fmt>` in out_dir and return the file's path.

    out_dir may be missing, empty or a previous sample-logs directory, which is replaced whole; anything else
    is refused (`OutputError`) before anything is written, so a directory of real logs is never overwritten.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    out = Path(out_dir)
    with SAMPLE_LOGS.building(out) as staging:
        write_table(generate_attempts(requests, seed=seed, ladder=ladder), staging / f"attempts.{fmt}")
    return out / f"attempts.{fmt}"
