"""Many prompts embedded at once: each distinct text once, through an on-disk cache of vectors keyed by the text's hash,
so retraining on mostly-old logs re-embeds only new text."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from tierwise.classifier.encoding import ENCODING_REVISION
from tierwise.classifier.outputs import atomic_file
from tierwise.registry.cache import cache_dir
from tierwise.training.embedding.encoders import Encoder
from tierwise.training.progress import progress

SHARD_ROWS = 65_536  # new vectors per embedding-cache shard
HASH_SLICE = 65_536


class EmbeddingCache:
    """Embeddings on disk keyed by (encoder, text hash), so retraining on mostly-old logs re-embeds only new text.

    A shard file holds keys and vectors; each call that computes new vectors adds one shard per SHARD_ROWS of
    them. A lookup reads every shard's keys, then the vectors of only the shards that hold a wanted key, one
    shard at a time, so the cache may grow larger than memory.
    """

    def __init__(self, encoder_name: str, root: Path | None = None) -> None:
        self.dir = (root or cache_dir() / "embeddings") / encoder_name

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def fill(self, keys: pl.Series, out: np.ndarray) -> np.ndarray:
        """Copy the cached vector of each key into its row of `out`; the rows found, as a boolean mask."""
        found = np.zeros(len(keys), dtype=bool)
        shards = sorted(self.dir.glob("shard-*.npz"))
        if not shards or not len(keys):
            return found
        held = []
        for number, shard in enumerate(shards):
            with np.load(shard) as data:
                held.append(
                    pl.DataFrame({"key": data["keys"].astype(str)})
                    .with_row_index("at")
                    .with_columns(pl.lit(number, dtype=pl.UInt32).alias("shard"))
                )
        wanted = keys.to_frame("key").with_row_index("row")
        hits = wanted.join(pl.concat(held), on="key").unique("row", keep="last")
        for (number,), rows in hits.partition_by("shard", as_dict=True).items():
            with np.load(shards[int(number)]) as data:
                out[rows["row"].to_numpy()] = data["vectors"][rows["at"].to_numpy()]
        found[hits["row"].to_numpy()] = True
        return found

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not keys:
            return
        shard = self.dir / f"shard-{hashlib.sha256(''.join(keys).encode()).hexdigest()[:16]}.npz"
        with atomic_file(shard) as tmp, tmp.open("wb") as handle:
            np.savez(handle, keys=np.asarray(keys), vectors=vectors)


def _distinct(texts: pl.Series) -> tuple[pl.Series, np.ndarray | None]:
    """The distinct texts in order of first appearance, and each text's position among them (None: all distinct)."""
    distinct = texts.unique(maintain_order=True)
    if len(distinct) == len(texts):
        return distinct, None
    slots = texts.to_frame("text").join(
        distinct.to_frame("text").with_row_index("slot"), on="text", how="left", maintain_order="left"
    )
    return distinct, slots["slot"].to_numpy()


def _keys(texts: pl.Series) -> pl.Series:
    """The cache key of every text, hashed a slice at a time (never every text as a Python string at once)."""
    return pl.concat(
        [
            pl.Series([EmbeddingCache.key(t) for t in texts.slice(start, HASH_SLICE).to_list()], dtype=pl.String)
            for start in range(0, len(texts), HASH_SLICE)
        ]
        or [pl.Series([], dtype=pl.String)]
    )


def embed(texts: Sequence[str] | pl.Series, encoder: Encoder, cache: bool = True, batch: int = 256) -> np.ndarray:
    """Embed many texts (n, dims), each distinct text once, with a progress bar, reusing cached vectors and
    caching new ones as they are made (a shard per SHARD_ROWS, so an interrupted run keeps most of its work)."""
    spec = encoder.spec
    store = EmbeddingCache(f"{spec.name}-r{ENCODING_REVISION}-{spec.max_chars}-{spec.max_tokens}") if cache else None
    distinct, slots = _distinct(texts if isinstance(texts, pl.Series) else pl.Series(texts, dtype=pl.String))
    keys = _keys(distinct) if store else pl.Series(dtype=pl.String)
    vectors = np.zeros((len(distinct), spec.dims), dtype=np.float32)
    found = store.fill(keys, vectors) if store else np.zeros(len(distinct), dtype=bool)
    missing = np.flatnonzero(~found)
    with progress(len(missing), f"embedding ({encoder.name})", "text") as update:
        for start in range(0, len(missing), SHARD_ROWS):
            shard = missing[start : start + SHARD_ROWS]
            for begin in range(0, len(shard), batch):
                rows = shard[begin : begin + batch]
                vectors[rows] = encoder.encode(distinct.gather(rows).to_list())
                update(len(rows))
            if store:
                store.put_many(keys.gather(shard).to_list(), vectors[shard])
    return vectors if slots is None else vectors[slots]
