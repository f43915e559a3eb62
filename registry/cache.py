"""Where tierwise keeps what it can always rebuild: distilled encoders, embeddings, downloaded bundles."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$TIERWISE_CACHE_DIR, else ~/.cache/tierwise."""
    root = os.environ.get("TIERWISE_CACHE_DIR") or Path.home() / ".cache" / "tierwise"
    return Path(root)
