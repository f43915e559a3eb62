"""The served tokenizer: same ids as the reference tokenizer, cheap clipping of long prompts."""

from __future__ import annotations

import pytest
from tierwise.classifier.encoding import TextTokenizer
from tierwise.training.embedding.encoders import minilm_dir
from tokenizers import Tokenizer

TEXTS = [
    "What is the capital of France?",
    "Prove that sqrt(2) is irrational; use x^2 = 2y^2 and (a, b) = 1.",
    "naïve café — emoji 🚀 and 中文字, tabs\tand\nnewlines, escaped \\t and \\n",
    "a\u00a0b\tc\x00d €100 x_y\u3000z\u2028w",
    # control characters str.split() splits on but the BERT normaliser deletes
    "ab\x0bcd e\x0cf g\x1ch i\x1dj\x1ek\x1fl m\x85n \x1c",
    "",
    "   ",
]


@pytest.fixture(scope="module")
def reference() -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


@pytest.mark.parametrize("add_special_tokens", [False, True])
def test_cached_chunk_tokenisation_equals_the_reference(reference, add_special_tokens):
    fast = TextTokenizer.from_file(minilm_dir() / "tokenizer.json", 10**6, 10**6, add_special_tokens)
    for _ in range(2):  # cold, then warm cache
        for text in TEXTS:
            assert fast.ids(text).tolist() == reference.encode(text, add_special_tokens=add_special_tokens).ids


def test_long_prompts_keep_head_and_tail(reference):
    fast = TextTokenizer.from_file(minilm_dir() / "tokenizer.json", max_chars=400, max_tokens=30)
    text = "alpha " * 200 + "omega question here"
    ids = fast.ids(text).tolist()
    assert len(ids) == 30
    assert ids[0] == reference.token_to_id("alpha")
    assert ids[-3:] == reference.encode("omega question here", add_special_tokens=False).ids
