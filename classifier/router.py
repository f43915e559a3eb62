"""The serving runtime: a verified bundle, its ONNX graph and tokenizer, and the routing policy.

Imports only numpy, onnxruntime, tokenizers and the standard library, so a server never loads torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .bundle import MODEL_FILE, TOKENIZER_FILE, BundleError, Manifest, read_manifest
from .encoding import TextTokenizer
from .policy import Choice, Policy
from .request import DEFAULT_OPTIONS, Conversation, RouteOptions
from .tiers import TierLadder

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
OUTPUT = "probabilities"


@dataclass(frozen=True)
class Prediction:
    """A routing answer: the tier to call, why, and what to do if it fails.

    `mode` is the routing mode applied (a tolerant band with a value of time applies `cost`); the expected
    cost is at Batch API prices for the async band; `expected_latency_ms` is the chain's expected time to an
    acceptable answer (None without a time model, or for the async band); `latency_budget_met` is false only
    when an interactive budget applied and no chain meets the quality target within it; `kept_warm` is true when
    a conversation's turn was kept on the tier whose prompt cache holds its prefix (`Policy.keep_warm`).
    """

    tier: str
    model: str
    probabilities: dict[str, float]
    fallback_chain: list[str]
    quality_target: float
    mode: str
    expected_cost_usd: float | None
    expected_latency_ms: float | None = None
    latency_budget_met: bool = True
    kept_warm: bool = False


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class Router:
    """Per-tier success probabilities for a prompt, turned into a tier by the bundle's policy."""

    def __init__(self, path: Path, manifest: Manifest, session: ort.InferenceSession, tokenizer: TextTokenizer):
        self.path = path
        self.manifest = manifest
        self.ladder: TierLadder = manifest.tier_ladder
        self.version = manifest.version
        costs = tuple(manifest.tier_costs_usd)
        self.policy = Policy(
            tiers=tuple(self.ladder.names),
            costs=costs,
            threshold=manifest.policy.threshold,
            rule=manifest.policy.rule,
            batch_costs=tuple(t.paid(c, batch=True) for c, t in zip(costs, self.ladder.tiers, strict=True)),
            times=manifest.time_model(),
        )
        self._session = session
        self._tokenizer = tokenizer
        self._takes_mask = ATTENTION_MASK in {i.name for i in session.get_inputs()}
        self._outputs = [o.name for o in session.get_outputs()]
        # Per-call work on the served hot path, done once: tier names and models, and a mask row to slice.
        self._names = tuple(self.ladder.names)
        self._models = tuple(t.model for t in self.ladder.tiers)
        self._ones = np.ones((1, tokenizer.max_tokens), dtype=np.int64)
        self._ones.flags.writeable = False

    @classmethod
    def load(cls, path: str | Path) -> Router:
        """Load a bundle directory, refusing it with BundleError if any file fails verification."""
        root = Path(path)
        manifest = read_manifest(root)
        spec = manifest.encoder
        try:
            tokenizer = TextTokenizer.from_file(
                root / TOKENIZER_FILE, spec.max_chars, spec.max_tokens, spec.add_special_tokens
            )
            session = _session(root / MODEL_FILE)
        except Exception as exc:
            raise BundleError(f"{root}: cannot load the model or tokenizer ({exc})") from exc
        outputs = session.get_outputs()
        if len(outputs) != 1 or outputs[0].shape[-1] != len(manifest.tier_costs_usd):
            raise BundleError(
                f"{root}: the graph's output does not match the manifest's {len(manifest.tier_costs_usd)} tiers"
            )
        return cls(root, manifest, session, tokenizer)

    def token_ids(self, text: str) -> np.ndarray:
        """The token ids the graph sees for a prompt (after clipping to the encoder's window)."""
        return self._tokenizer.ids(text)

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {INPUT_IDS: ids, ATTENTION_MASK: mask} if self._takes_mask else {INPUT_IDS: ids}
        return self._session.run(self._outputs, feeds)[0]

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated P(success) per tier, shape (n, tiers), cheapest tier first."""
        if len(texts) == 0:
            return np.zeros((0, len(self.ladder)), dtype=np.float32)
        ids, mask = self._tokenizer.batch(texts)
        return self._run(ids, mask)

    def _prediction(self, probs: np.ndarray, choice: Choice, target: float) -> Prediction:
        names = self._names
        return Prediction(
            tier=names[choice.tier],
            model=self._models[choice.tier],
            probabilities=dict(zip(names, probs.tolist(), strict=True)),
            fallback_chain=[names[i] for i in choice.chain],
            quality_target=target,
            mode=choice.mode,
            expected_cost_usd=choice.expected_cost,
            expected_latency_ms=choice.expected_time_ms,
            latency_budget_met=choice.budget_met,
            kept_warm=choice.kept_warm,
        )

    def _choose(self, probs: np.ndarray, options: RouteOptions, conversation: Conversation | None) -> Choice:
        """The policy's choice; for a conversation's turn, kept on its warm tier where that pays (`keep_warm`).

        A conversation with nothing cached, or warm on a tier this model does not know, is decided as any request.
        """
        choice = self.policy.choose(probs, options)
        if conversation is None or not conversation.cached_tokens or conversation.warm_tier not in self._names:
            return choice
        warm = self._names.index(conversation.warm_tier)
        batch = options.band == "async"
        prefix_costs = [
            tier.cached_prefix_cost(conversation.cached_tokens, index == warm, batch)
            for index, tier in enumerate(self.ladder.tiers)
        ]
        answer_costs = None
        if conversation.output_tokens:
            answer_costs = [
                tier.paid(tier.token_cost(0, conversation.output_tokens), batch) for tier in self.ladder.tiers
            ]
        return self.policy.keep_warm(probs, choice, options, warm, prefix_costs, answer_costs)

    def predict(
        self, text: str, options: RouteOptions = DEFAULT_OPTIONS, conversation: Conversation | None = None
    ) -> Prediction:
        """Route one prompt: the cheapest tier the policy trusts within its latency band, with its fallback chain.

        The band (`options.latency_band`): interactive (a person waits; `max_latency_ms` bounds the time to an
        acceptable answer), tolerant (`value_of_time_usd_per_s` prices waiting against cost) or async (Batch API
        prices, time ignored). A turn of a `conversation` stays on its warm tier where that pays.
        """
        ids = self._tokenizer.ids(text)
        if len(ids) == 0:
            ids = np.zeros(1, dtype=np.int64)
            mask = np.zeros((1, 1), dtype=np.int64)
        else:
            mask = self._ones[:, : len(ids)]  # ids never outnumber the encoder's window
        probs = self._run(ids[None, :], mask)[0]
        choice = self._choose(probs, options, conversation)
        return self._prediction(probs, choice, self.policy.target(options.quality_target))

    def predict_batch(
        self,
        texts: Sequence[str],
        options: RouteOptions = DEFAULT_OPTIONS,
        conversations: Sequence[Conversation | None] | None = None,
    ) -> list[Prediction]:
        """Route many prompts with one graph run (the same options for every prompt; `conversations`, one per
        prompt, as `predict` takes one)."""
        probs = self.probabilities(texts)
        target = self.policy.target(options.quality_target)
        each = conversations if conversations is not None else [None] * len(probs)
        return [
            self._prediction(row, self._choose(row, options, conversation), target)
            for row, conversation in zip(probs, each, strict=True)
        ]
