"""Text to token ids to a pooled vector: the arithmetic shared by training, the ONNX graph and serving."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from classifier.text import clip_text

NORM_EPS = 1e-12
# Bump when the text -> ids -> vector arithmetic changes, so cached training embeddings are not reused.
ENCODING_REVISION = 3
WORD_CACHE_SIZE = 200_000
# Control characters Python's str.split() splits on but the BERT normaliser deletes: drop them first, as it does.
SPLIT_ONLY_CONTROLS = str.maketrans("", "", "\x0b\x0c\x1c\x1d\x1e\x1f\x85")


@dataclass
class TextTokenizer:
    """Turns a prompt into at most `max_tokens` token ids, fast enough for the served hot path.

    BERT-style tokenisers split on whitespace before anything else, so each whitespace-separated chunk
    tokenises the same on its own as in context. Chunks' ids are cached, making a warm call a few dict
    look-ups instead of a full normaliser + pre-tokeniser pass. Prompts longer than the window keep
    their head and their tail, both in characters (cheap, before tokenising) and in tokens.
    """

    tokenizer: Tokenizer
    max_chars: int
    max_tokens: int
    add_special_tokens: bool = False

    def __post_init__(self) -> None:
        self._chunks: dict[str, list[int]] = {}
        self._specials: tuple[list[int], list[int]] = ([], [])
        if self.add_special_tokens:
            empty = self.tokenizer.encode("", add_special_tokens=True).ids
            self._specials = (empty[:1], empty[1:])

    @classmethod
    def from_file(
        cls, path: str | Path, max_chars: int, max_tokens: int, add_special_tokens: bool = False
    ) -> TextTokenizer:
        """Load a tokenizer.json; its shipped padding and truncation are dropped (the window is ours)."""
        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return cls(tokenizer, max_chars, max_tokens, add_special_tokens)

    def _learn(self, chunks: list[str]) -> None:
        """Tokenise unseen chunks in one call and cache each one's ids, found from the tokens' offsets."""
        starts = np.cumsum([0] + [len(c) + 1 for c in chunks[:-1]])
        encoding = self.tokenizer.encode(" ".join(chunks), add_special_tokens=False)
        owners = np.searchsorted(starts, [start for start, _ in encoding.offsets], side="right") - 1
        learned: list[list[int]] = [[] for _ in chunks]
        for owner, token in zip(owners.tolist(), encoding.ids, strict=True):
            learned[owner].append(token)
        self._chunks.update(zip(chunks, learned, strict=True))

    def ids(self, text: str) -> np.ndarray:
        """Token ids of one prompt as int64 (special tokens included when the encoder uses them)."""
        chunks = clip_text(text, self.max_chars).translate(SPLIT_ONLY_CONTROLS).split()
        known = self._chunks
        if len(known) + len(chunks) > WORD_CACHE_SIZE:
            known.clear()
        unseen = [c for c in dict.fromkeys(chunks) if c not in known]
        if unseen:
            self._learn(unseen)
        ids = [i for chunk in chunks for i in known[chunk]]
        first, last = self._specials
        room = self.max_tokens - len(first) - len(last)
        if len(ids) > room:
            head = room * 2 // 3
            ids = ids[:head] + ids[len(ids) - (room - head) :]
        return np.asarray(first + ids + last, dtype=np.int64)

    def batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded ids (n, longest) and their 0/1 mask, for one batched graph run."""
        rows = [self.ids(text) for text in texts]
        width = max(1, max(len(r) for r in rows))
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask


def mean_pool(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Mean of the tokens' rows of a static table, L2-normalised (zeros for an empty prompt)."""
    if len(ids) == 0:
        return np.zeros(table.shape[1], dtype=np.float32)
    vector = table[ids].mean(axis=0)
    return (vector / max(float(np.linalg.norm(vector)), NORM_EPS)).astype(np.float32)
