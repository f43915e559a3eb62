"""Text to token ids to a pooled vector: the arithmetic shared by training, the ONNX graph and serving."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from classifier.text import clip_text

NORM_EPS = 1e-12


@dataclass
class TextTokenizer:
    """Clips a prompt to the encoder's window (cheaply, by characters) and turns it into token ids."""

    tokenizer: Tokenizer
    max_chars: int
    max_tokens: int
    add_special_tokens: bool = False

    @classmethod
    def from_file(
        cls, path: str | Path, max_chars: int, max_tokens: int, add_special_tokens: bool = False
    ) -> TextTokenizer:
        """Load a tokenizer.json with its shipped padding removed and our own truncation set."""
        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_tokens)
        return cls(tokenizer, max_chars, max_tokens, add_special_tokens)

    def ids(self, text: str) -> np.ndarray:
        """Token ids of one prompt as int64, at most max_tokens of them."""
        encoding = self.tokenizer.encode(clip_text(text, self.max_chars), add_special_tokens=self.add_special_tokens)
        return np.asarray(encoding.ids, dtype=np.int64)

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
