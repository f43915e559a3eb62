"""The model bundle: a directory holding the ONNX graph, the tokenizer and a manifest that vouches for both.

A bundle is refused unless every file the manifest lists is present with the checksum it records.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from classifier.errors import InputError
from classifier.tiers import TierError, TierLadder

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"


class BundleError(InputError):
    """A bundle that cannot be trusted or read; the message says which file and why."""


@dataclass(frozen=True)
class EncoderSpec:
    """How the graph expects its input: which encoder, its window, and whether special tokens are added."""

    kind: str
    name: str
    dims: int
    max_chars: int
    max_tokens: int
    add_special_tokens: bool


@dataclass(frozen=True)
class PolicySpec:
    """The default routing rule and threshold, and how training chose them.

    `guarantee` is set when the threshold was certified for a quality target (`tierwise train --quality-target`):
    the target share Q, the confidence C, whether a threshold was certified, the lower confidence bound of its
    quality share, the number of calibration requests and the method (training/guarantee.py).
    """

    threshold: float
    rule: str = "absolute"
    chosen_by: str = ""
    guarantee: dict[str, Any] | None = None


@dataclass(frozen=True)
class Manifest:
    """Everything a router needs besides the graph, and the record of how the bundle was made."""

    ladder: dict[str, Any]
    tier_costs_usd: list[float]
    policy: PolicySpec
    encoder: EncoderSpec
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    version: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def tier_ladder(self) -> TierLadder:
        return TierLadder.from_dict(self.ladder, source=MANIFEST)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """Rebuild a manifest from its JSON form, refusing one written by a newer format."""
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(f"{MANIFEST}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
        try:
            return cls(
                **{
                    **data,
                    "policy": PolicySpec(**data["policy"]),
                    "encoder": EncoderSpec(**data["encoder"]),
                }
            )
        except (KeyError, TypeError) as exc:
            raise BundleError(f"{MANIFEST}: malformed manifest ({exc})") from exc


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_version(manifest: Manifest, files: dict[str, str]) -> str:
    """A version id from everything that decides the bundle's answers: files, tiers and prices, policy, encoder.

    Same answers, same version; a new threshold or price on the same graph is a new version.
    """
    decisive = {
        "files": files,
        "ladder": manifest.ladder,
        "tier_costs_usd": manifest.tier_costs_usd,
        "policy": [manifest.policy.rule, manifest.policy.threshold],
        "encoder": asdict(manifest.encoder),
    }
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:12]


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Manifest:
    """Checksum the bundle's files, stamp the version and write manifest.json last."""
    files = {p.name: sha256_file(p) for p in sorted(bundle_dir.iterdir()) if p.is_file() and p.name != MANIFEST}
    version = manifest.version or content_version(manifest, files)
    stamped = Manifest(**{**asdict(manifest), "files": files, "version": version})
    stamped = Manifest.from_json(stamped.to_json())
    (bundle_dir / MANIFEST).write_text(json.dumps(stamped.to_json(), indent=2, sort_keys=True))
    return stamped


def read_manifest(bundle_dir: str | Path) -> Manifest:
    """Load and verify a bundle's manifest: every listed file present and unmodified, the ladder valid."""
    root = Path(bundle_dir)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    try:
        data = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise BundleError(f"{root}: no {MANIFEST}") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(f"{root / MANIFEST}: not valid JSON ({exc})") from exc
    manifest = Manifest.from_json(data)
    for name in (MODEL_FILE, TOKENIZER_FILE):
        if name not in manifest.files:
            raise BundleError(f"{root}: manifest does not list {name}")
    for name, expected in manifest.files.items():
        path = root / name
        if not path.is_file():
            raise BundleError(f"{root}: {name} is missing")
        if sha256_file(path) != expected:
            raise BundleError(f"{root}: {name} does not match its checksum; refusing a modified bundle")
    try:
        ladder = manifest.tier_ladder
    except TierError as exc:
        raise BundleError(str(exc)) from exc
    if len(manifest.tier_costs_usd) != len(ladder):
        raise BundleError(f"{root}: tier_costs_usd has {len(manifest.tier_costs_usd)} entries for {len(ladder)} tiers")
    return manifest
