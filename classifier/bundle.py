"""The model bundle: a directory holding the ONNX graph, the tokenizer and a manifest that vouches for both.

A bundle is refused unless every file the manifest lists is a plain file inside the bundle with the checksum
it records, every value that decides an answer is one a router can honour, and the manifest's version is
the one its content gives (`content_version`): a manifest edited after it was written (a new threshold, time model,
prices, ladder, encoder or file list) is refused, so no answer is ever credited to a version that did not
give it. This guards against careless and accidental edits; it is not a signature (anyone who can write the
bundle can recompute the version), so a bundle directory deserves the permissions of code.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import InputError
from .outputs import atomic_file, check_output_dir
from .policy import RULES
from .tiers import TierError, TierLadder
from .timing import TierTime, TimeModel, TimingError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


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
    quality share, the number of calibration requests and the method (training/fit/guarantee.py).
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
    # Per tier, cheapest first: how long an attempt takes (`TierTime.to_json`); None when no timings were known.
    tier_times: list[dict[str, Any]] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    version: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def tier_ladder(self) -> TierLadder:
        return TierLadder.from_dict(self.ladder, source=MANIFEST)

    def tier_time_models(self, source: str = MANIFEST) -> list[TierTime] | None:
        """Each tier's time model, cheapest first (None: the bundle has none); BundleError if malformed."""
        if self.tier_times is None:
            return None
        if not isinstance(self.tier_times, list) or len(self.tier_times) != len(self.tier_costs_usd):
            raise BundleError(f"{source}: tier_times must list one time model per tier ({len(self.tier_costs_usd)})")
        try:
            return [TierTime.from_json(t, f"{source}: tier_times[{i}]") for i, t in enumerate(self.tier_times)]
        except TimingError as exc:
            raise BundleError(str(exc)) from exc

    def time_model(self) -> TimeModel | None:
        """The tiers' time model with its per-bundle tables, or None when the bundle has no timings."""
        times = self.tier_time_models()
        return None if times is None else TimeModel(times)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = MANIFEST) -> Manifest:
        """Rebuild a manifest from its JSON form, refusing a newer format and any value a router cannot honour."""
        if not isinstance(data, dict):
            raise BundleError(f"{source}: expected a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(f"{source}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
        try:
            manifest = cls(
                **{
                    **data,
                    "policy": PolicySpec(**data["policy"]),
                    "encoder": EncoderSpec(**data["encoder"]),
                }
            )
        except (KeyError, TypeError) as exc:
            raise BundleError(f"{source}: malformed manifest ({exc})") from exc
        _check_values(manifest, source)
        return manifest


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _plain_file_name(name: Any) -> bool:
    """A name that can only mean a file directly inside the bundle: no separator, no `..`, not absolute."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and not Path(name).is_absolute()
    )


def _check_values(manifest: Manifest, source: str = MANIFEST) -> None:
    """Refuse values no router can honestly serve with (NaN, a threshold of 5, negative prices, a path out).

    The message names the field, so the bundle that holds it can be found and rebuilt.
    """
    policy = manifest.policy
    if not _is_number(policy.threshold) or not 0.0 <= policy.threshold <= 1.0:
        raise BundleError(f"{source}: policy.threshold must be a finite number in [0, 1], got {policy.threshold!r}")
    if policy.rule not in RULES:
        raise BundleError(f"{source}: policy.rule must be one of {list(RULES)}, got {policy.rule!r}")
    try:
        ladder = TierLadder.from_dict(manifest.ladder, source=f"{source}: ladder")
    except TierError as exc:
        raise BundleError(str(exc)) from exc
    costs = manifest.tier_costs_usd
    if not isinstance(costs, list) or len(costs) != len(ladder):
        count = len(costs) if isinstance(costs, list) else type(costs).__name__
        raise BundleError(f"{source}: tier_costs_usd has {count} entries for {len(ladder)} tiers")
    for name, cost in zip(ladder.names, costs, strict=True):
        if not _is_number(cost) or cost < 0:
            raise BundleError(f"{source}: tier_costs_usd ({name}) must be a finite number >= 0, got {cost!r}")
    manifest.tier_time_models(source)
    encoder = manifest.encoder
    for key in ("kind", "name"):
        if not isinstance(getattr(encoder, key), str) or not getattr(encoder, key):
            raise BundleError(f"{source}: encoder.{key} must be a non-empty string")
    for key in ("dims", "max_chars", "max_tokens"):
        if not _is_count(getattr(encoder, key)):
            raise BundleError(f"{source}: encoder.{key} must be a positive integer, got {getattr(encoder, key)!r}")
    if not isinstance(encoder.add_special_tokens, bool):
        raise BundleError(f"{source}: encoder.add_special_tokens must be true or false")
    if not isinstance(manifest.files, dict):
        raise BundleError(f"{source}: files must map file names to SHA-256 checksums")
    for name, digest in manifest.files.items():
        if not _plain_file_name(name) or name == MANIFEST:
            raise BundleError(f"{source}: files: {name!r} is not a plain file name inside the bundle")
        if not isinstance(digest, str) or not SHA256_HEX.match(digest):
            raise BundleError(f"{source}: files: {name}: {digest!r} is not a SHA-256 checksum")
    if not isinstance(manifest.version, str):
        raise BundleError(f"{source}: version must be a string")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_version(manifest: Manifest, files: dict[str, str]) -> str:
    """A version id from everything that decides the bundle's answers: files, tiers and prices, policy, encoder,
    and the tiers' time model (a latency budget decides by it).

    Same answers, same version; a new threshold or price on the same graph is a new version.
    """
    decisive = {
        "files": files,
        "ladder": manifest.ladder,
        "tier_costs_usd": manifest.tier_costs_usd,
        "policy": [manifest.policy.rule, manifest.policy.threshold],
        "encoder": asdict(manifest.encoder),
    }
    if manifest.tier_times is not None:  # absent from bundles made before time models, whose versions stand
        decisive["tier_times"] = manifest.tier_times
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:12]


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Manifest:
    """Checksum the bundle's files, stamp the version its content gives and write manifest.json last.

    Any `version` the given manifest carries is replaced: a version is always what its content makes it.
    """
    files = {p.name: sha256_file(p) for p in sorted(bundle_dir.iterdir()) if p.is_file() and p.name != MANIFEST}
    content = replace(manifest, files=files, version="")
    stamped = Manifest.from_json({**content.to_json(), "version": content_version(content, files)})
    with atomic_file(bundle_dir / MANIFEST) as tmp:
        tmp.write_text(json.dumps(stamped.to_json(), indent=2, sort_keys=True))
    return stamped


def is_bundle_dir(path: Path) -> bool:
    """Whether `path` holds a tierwise bundle and nothing else: a manifest and only the files it lists.

    Only such a directory may be replaced by a new bundle: a stray file in it could be a user's.
    """
    try:
        data = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        return False
    return {p.name for p in path.iterdir()} <= {MANIFEST, *files}


def check_bundle_out(path: Path) -> None:
    """Refuse a bundle output directory that holds anything but a previous bundle; nothing is touched."""
    check_output_dir(path, is_bundle_dir, "tierwise bundle")


def _inside(root: Path, name: str) -> Path:
    """The bundle file `name`, refused if it is not a regular file or a link leads it out of the bundle."""
    path = root / name
    if not path.is_file():
        raise BundleError(f"{root}: {name} is missing")
    if path.resolve().parent != root.resolve():
        raise BundleError(f"{root}: {name} is a link to a file outside the bundle; refusing to follow it")
    return path


def read_manifest(bundle_dir: str | Path) -> Manifest:
    """Load and verify a bundle's manifest: its values sane, its version its content's, every file unmodified."""
    root = Path(bundle_dir)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    if not (root / MANIFEST).exists():
        raise BundleError(f"{root}: no {MANIFEST}")
    source = root / MANIFEST
    try:
        data = json.loads(_inside(root, MANIFEST).read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{source}: not valid JSON ({exc})") from exc
    manifest = Manifest.from_json(data, source=str(source))
    for name in (MODEL_FILE, TOKENIZER_FILE):
        if name not in manifest.files:
            raise BundleError(f"{root}: manifest does not list {name}")
    expected = content_version(manifest, manifest.files)
    if manifest.version != expected:
        raise BundleError(
            f"{source}: version {manifest.version!r} is not the version of the manifest's content ({expected!r}): "
            "the manifest (threshold, prices, ladder, time model, encoder or files) was changed after it was written; "
            "refusing a modified bundle"
        )
    for name, digest in manifest.files.items():
        if sha256_file(_inside(root, name)) != digest:
            raise BundleError(f"{root}: {name} does not match its checksum; refusing a modified bundle")
    return manifest
