"""The on-disk embedding cache: vectors keyed by (encoder, text hash) are reused, new texts add one shard."""

from __future__ import annotations

import numpy as np
import pytest
from tierwise.training.embedding.embed import embed
from tierwise.training.embedding.encoders import StaticEncoder


@pytest.fixture(scope="module")
def encoder() -> StaticEncoder:
    return StaticEncoder.load()


def test_cached_vectors_are_reused_and_only_new_texts_are_embedded(encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("TIERWISE_CACHE_DIR", str(tmp_path))
    texts = ["What is 2 + 2?", "Prove Fermat's little theorem.", "What is 2 + 2?"]
    first = embed(texts, encoder)
    np.testing.assert_allclose(first, encoder.encode(texts), atol=1e-7)
    (shard,) = tmp_path.rglob("shard-*.npz")
    with np.load(shard) as data:
        assert len(data["keys"]) == 2  # the duplicate prompt is embedded once

    # Overwrite the cached vectors: a new run must return what the cache holds, not re-embed.
    with np.load(shard) as data:
        keys, vectors = data["keys"], data["vectors"]
    np.savez(shard, keys=keys, vectors=np.full_like(vectors, 0.5))
    second = embed([*texts, "A brand new prompt."], encoder)
    np.testing.assert_array_equal(second[:3], np.full((3, first.shape[1]), 0.5, dtype=np.float32))
    np.testing.assert_allclose(second[3], encoder.encode(["A brand new prompt."])[0], atol=1e-7)
    assert len(list(tmp_path.rglob("shard-*.npz"))) == 2


def test_cache_can_be_bypassed(encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("TIERWISE_CACHE_DIR", str(tmp_path))
    embed(["hello there"], encoder, cache=False)
    assert not list(tmp_path.rglob("shard-*.npz"))
