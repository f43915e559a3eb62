"""Text to token ids to a pooled vector: the arithmetic shared by training, the ONNX graph and serving."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from .text import clip_text

NORM_EPS = 1e-12
# Bump when the text -> ids -> vector arithmetic changes, so cached training embeddings are not reused.
ENCODING_REVISION = 3
WORD_CACHE_SIZE = 200_000
# Control characters Python's str.split() splits on but the BERT normaliser deletes: drop them first, as it does.
ID_BYTES = 8  # token ids travel as int64
SPLIT_ONLY_CONTROLS = "\x0b\x0c\x1c\x1d\x1e\x1f\x85"
_DROP_SPLIT_ONLY_CONTROLS = str.maketrans("", "", SPLIT_ONLY_CONTROLS)


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
        self._chunks: dict[str, bytes] = {}
        self._specials: tuple[bytes, bytes] = (b"", b"")
        if self.add_special_tokens:
            empty = np.asarray(self.tokenizer.encode("", add_special_tokens=True).ids, dtype=np.int64)
            self._specials = (empty[:1].tobytes(), empty[1:].tobytes())
        self._room = self.max_tokens - sum(len(s) for s in self._specials) // ID_BYTES

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
        """Tokenise a prompt's unseen chunks in one call and cache each one's ids, found from the tokens' offsets."""
        known = self._chunks
        unseen = [c for c in dict.fromkeys(chunks) if c not in known]
        if len(known) + len(unseen) > WORD_CACHE_SIZE:
            known.clear()
            unseen = list(dict.fromkeys(chunks))
        starts = np.cumsum([0] + [len(c) + 1 for c in unseen[:-1]])
        encoding = self.tokenizer.encode(" ".join(unseen), add_special_tokens=False)
        owners = np.searchsorted(starts, [start for start, _ in encoding.offsets], side="right") - 1
        learned: list[list[int]] = [[] for _ in unseen]
        for owner, token in zip(owners.tolist(), encoding.ids, strict=True):
            learned[owner].append(token)
        known.update(
            (chunk, np.asarray(ids, dtype=np.int64).tobytes()) for chunk, ids in zip(unseen, learned, strict=True)
        )

    def ids(self, text: str) -> np.ndarray:
        """Token ids of one prompt as a read-only int64 array (special tokens included when the encoder uses them).

        Each chunk's ids are cached as packed int64 bytes, so a warm call is one C-level join of dict look-ups.
        """
        text = clip_text(text, self.max_chars)
        if any(control in text for control in SPLIT_ONLY_CONTROLS):  # rare; translate costs a pass per call
            text = text.translate(_DROP_SPLIT_ONLY_CONTROLS)
        chunks = text.split()
        try:
            body = b"".join(map(self._chunks.__getitem__, chunks))
        except KeyError:
            self._learn(chunks)
            body = b"".join(map(self._chunks.__getitem__, chunks))
        room = self._room
        if len(body) > room * ID_BYTES:
            head = room * 2 // 3 * ID_BYTES
            body = body[:head] + body[len(body) - room * ID_BYTES + head :]
        first, last = self._specials
        return np.frombuffer(first + body + last if first or last else body, dtype=np.int64)

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
