"""Conversations and their prompt cache: what keeping a conversation on its warm tier (`tierwise proxy`, on by
default; `--session-ttl 0` turns it off) does to cost, to the share of input tokens read from the cache, and to
quality, on a multi-turn workload against the stand-in API, which reports cache reads and writes per model and
prefix as the real API does (`serving/standin_cache.py`).

The workload: C conversations of T turns. Each asks, turn by turn, held-out prompts from generated sample logs
whose cheapest acceptable tier is known (the logs record every tier's outcome), under a one-line system prompt of
its own; the stand-in answers each turn at length (`--answer-tokens` tokens that restate the question, so the router
reading the conversation sees its questions rather than filler). The last user message is marked for caching, as a
multi-turn client marks it, so each turn can read the conversation so far from the cache of the model that served
the turn before. Turns go round the conversations (turn 1 of each, then turn 2, ...), each conversation named by
`x-tierwise-session`. Both runs send the same turns through `tierwise proxy --model BUNDLE` to a fresh stand-in.

A turn is answered acceptably when the tier that answered it is at or above its cheapest acceptable tier (turns no
tier solves count as failures in both runs). Cost is what the proxy priced (`x-tierwise-cost-usd`: the ladder's
prices, cache reads at 0.1x and writes at 1.25x the input price). The stand-in's answers are never judged wrong,
so nothing escalates during the run; "to an acceptable answer" adds, for each turn answered unacceptably that some
tier solves, what asking its cheapest acceptable tier again would cost (the whole prompt written to that tier's
cold cache, the same answer length): the retry a grader would trigger. Intervals are 95% percentile bootstrap intervals
over conversations, paired between the two runs.

    python benchmarks/sessions.py [--model BUNDLE] [--conversations 60] [--turns 6] [--answer-tokens 1000] [--seed 0]

Without --model it trains a static-encoder bundle on generated sample logs (their train split) first.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import polars as pl
from tierwise.classifier.tiers import TierLadder
from tierwise.classifier.usage import Usage
from tierwise.serving.process import ServerProcess
from tierwise.serving.standin import StandIn
from tierwise.serving.standin_text import text_of
from tierwise.training.evaluation.bootstrap import percentile_interval, resampled_sums

API_KEY = "sk-ant-sessions-bench"
PROXY = (sys.executable, "-m", "tierwise", "proxy")
RUNS = {"each turn on its own (--session-ttl 0)": ("--session-ttl", "0"), "conversations kept warm (default)": ()}
CACHED = {"type": "ephemeral"}


@dataclass(frozen=True)
class Turn:
    prompt: str
    needed: int | None  # the cheapest acceptable tier's index; None: no tier answers it acceptably


@dataclass(frozen=True)
class Conversation:
    system: str
    turns: tuple[Turn, ...]


@dataclass
class Tally:
    """One run's per-conversation sums: cost, the retries unacceptable answers would cost, acceptable turns, turns
    kept warm; and input tokens by kind, and turns by the tier that answered them."""

    cost: np.ndarray
    retries: np.ndarray
    acceptable: np.ndarray
    kept: np.ndarray
    tokens: dict[str, int] = field(default_factory=lambda: {"input": 0, "read": 0, "written": 0})
    tiers: dict[str, int] = field(default_factory=dict)


def labelled_prompts(logs: Path, ladder: TierLadder) -> list[Turn]:
    """The held-out (test split) prompts of the sample logs with their cheapest acceptable tier."""
    tier_of = ladder.model_to_tier()
    rows = pl.read_ndjson(logs).filter(pl.col("split") == "test")
    turns = []
    for (prompt,), group in rows.group_by(["prompt"], maintain_order=True):
        solved = [tier_of[m] for m, ok in zip(group["model"], group["success"], strict=True) if ok and m in tier_of]
        turns.append(Turn(prompt, min(solved) if solved else None))
    return turns


def workload(prompts: list[Turn], conversations: int, turns: int, seed: int) -> list[Conversation]:
    """Conversations of `turns` distinct prompts each, drawn with a seeded generator."""
    rng = random.Random(seed)
    made = []
    for index in range(conversations):
        system = f"You are assistant {index}: answer thoroughly, step by step."
        made.append(Conversation(system, tuple(rng.sample(prompts, turns))))
    return made


def long_answer(tokens: int) -> Callable[[dict], str]:
    """Deterministic answers of about `tokens` tokens (four characters each) restating the last question."""

    def answer(params: dict) -> str:
        question = text_of(params["messages"][-1]["content"])
        return (f"On '{question}': " * (tokens * 4 // (len(question) + 6) + 1))[: tokens * 4]

    return answer


def asked_before(question: dict) -> list[dict]:
    """A user message's content with its cache mark removed, once two later user messages carry the marks."""
    return [{"type": "text", "text": part["text"]} for part in question["content"]]


def run(
    bundle: Path, conversations: list[Conversation], flags: tuple[str, ...], ladder: TierLadder, answer_tokens: int
) -> Tally:
    """Every turn of every conversation through one proxy and a fresh stand-in."""
    names = ladder.names
    count = len(conversations)
    tally = Tally(np.zeros(count), np.zeros(count), np.zeros(count), np.zeros(count))
    args = ["--model", str(bundle), "--no-metrics", "--listen", "127.0.0.1:0", *flags]
    with (
        StandIn(api_key=API_KEY, answer=long_answer(answer_tokens)) as upstream,
        ServerProcess([*args, "--upstream", upstream.url], program=PROXY) as proxy,
    ):
        histories: list[list[dict]] = [[] for _ in conversations]
        headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
        with httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}", headers=headers, timeout=60) as client:
            for turn in range(len(conversations[0].turns)):
                for index, conversation in enumerate(conversations):
                    asked = conversation.turns[turn]
                    question = {
                        "role": "user",
                        "content": [{"type": "text", "text": asked.prompt, "cache_control": CACHED}],
                    }
                    body = {
                        "model": "tierwise",
                        "max_tokens": 2 * answer_tokens,
                        "system": conversation.system,
                        "messages": [*histories[index], question],
                    }
                    response = client.post("/v1/messages", json=body, headers={"x-tierwise-session": f"c{index}"})
                    response.raise_for_status()
                    answer = response.json()
                    tier = response.headers["x-tierwise-tier"]
                    tally.cost[index] += float(response.headers["x-tierwise-cost-usd"])
                    tally.acceptable[index] += asked.needed is not None and names.index(tier) >= asked.needed
                    tally.kept[index] += response.headers.get("x-tierwise-kept-warm") == "true"
                    tally.tiers[tier] = tally.tiers.get(tier, 0) + 1
                    usage = Usage.from_mapping(answer["usage"])
                    if asked.needed is not None and names.index(tier) < asked.needed:
                        prompt = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
                        retry = ladder.tiers[asked.needed].token_cost(0, usage.output_tokens, 0, prompt)
                        tally.retries[index] += retry
                    tally.tokens["input"] += usage.input_tokens
                    tally.tokens["read"] += usage.cache_read_input_tokens
                    tally.tokens["written"] += usage.cache_creation_input_tokens
                    histories[index] += [question, {"role": "assistant", "content": answer["content"][0]["text"]}]
                    if len(histories[index]) > 2:  # two marks: the last user message and the one before it
                        histories[index][-4] = {"role": "user", "content": asked_before(histories[index][-4])}
    return tally


def report(tallies: dict[str, Tally], turns: int, ladder: TierLadder) -> None:
    base, kept = tallies.values()
    columns = [base.cost, kept.cost, base.cost + base.retries, kept.cost + kept.retries]
    sums = resampled_sums(np.column_stack([*columns, base.acceptable, kept.acceptable]))
    billed = percentile_interval(100 * (sums[:, 1] / sums[:, 0] - 1))
    to_acceptable = percentile_interval(100 * (sums[:, 3] / sums[:, 2] - 1))
    quality = percentile_interval(100 * (sums[:, 5] - sums[:, 4]) / turns)
    print(
        "| routing | cost USD | to an acceptable answer USD | cache-read share of input tokens "
        "| acceptable turns [95% CI] | turns kept warm | tiers served (" + " / ".join(ladder.names) + ") |"
    )
    print("|---|---:|---:|---:|---|---:|---|")
    for name, tally in tallies.items():
        tokens = tally.tokens
        share = tokens["read"] / max(1, tokens["input"] + tokens["read"] + tokens["written"])
        own = percentile_interval(100 * resampled_sums(tally.acceptable[:, None])[:, 0] / turns)
        served = " / ".join(str(tally.tiers.get(tier, 0)) for tier in ladder.names)
        print(
            f"| {name} | {tally.cost.sum():.4f} | {(tally.cost + tally.retries).sum():.4f} | {100 * share:.1f}% "
            f"| {100 * tally.acceptable.sum() / turns:.1f}% [{own.lo:.1f}, {own.hi:.1f}] "
            f"| {int(tally.kept.sum())} | {served} |"
        )
    totals = [column.sum() for column in columns]
    print(
        f"\nKept warm against each turn on its own (paired): cost {100 * (totals[1] / totals[0] - 1):+.1f}% "
        f"[{billed.lo:+.1f}, {billed.hi:+.1f}], to an acceptable answer {100 * (totals[3] / totals[2] - 1):+.1f}% "
        f"[{to_acceptable.lo:+.1f}, {to_acceptable.hi:+.1f}], acceptable turns "
        f"{100 * (kept.acceptable.sum() - base.acceptable.sum()) / turns:+.1f} pp "
        f"[{quality.lo:+.1f}, {quality.hi:+.1f}]."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="Bundle to route with (default: train one on sample logs).")
    parser.add_argument("--conversations", type=int, default=60)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--answer-tokens", type=int, default=1000, help="Length of each answer (default: 1000).")
    options = parser.parse_args()
    from tierwise.training.data.logs import read_attempts
    from tierwise.training.data.sample_logs import write_sample_logs
    from tierwise.training.fit.train import TrainOptions, train_bundle

    ladder = TierLadder.load()
    with tempfile.TemporaryDirectory() as work:
        logs = write_sample_logs(Path(work) / "logs", 1500, seed=options.seed)
        bundle = options.model
        if bundle is None:
            bundle = Path(work) / "bundle"
            train_bundle(read_attempts([logs]), bundle, ladder, TrainOptions(encoder="static"))
        conversations = workload(labelled_prompts(logs, ladder), options.conversations, options.turns, options.seed)
        turns = options.conversations * options.turns
        print(
            f"{options.conversations} conversations x {options.turns} turns ({turns} turns a run), bundle {bundle.name}"
        )
        tallies = {
            name: run(bundle, conversations, flags, ladder, options.answer_tokens) for name, flags in RUNS.items()
        }
        print(json.dumps({name: t.tokens for name, t in tallies.items()}))
        report(tallies, turns, ladder)


if __name__ == "__main__":
    main()
