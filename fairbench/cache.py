"""The artifact cache: trained networks stored under a key derived from what produced them.

Root: ``$FAIRBENCH_CACHE``, default ``~/.cache/fairbench``. An artifact lives in
``<root>/<kind>/<key[:16]>/`` where ``key = sha256(canonical JSON of its recipe)`` and the
recipe holds everything the result depends on (training spec, architecture, noise schedule,
a digest of the training data, the format version). An artifact is complete once its
``artifact.json`` exists; it is written last and atomically, so an interrupted training
leaves an incomplete directory (with its resumable checkpoint), never a half-valid one.

Shipped networks: the package carries the artifacts of its embedded default benchmark under
``fairbench/networks/<kind>/<key[:16]>/`` (safetensors weights, ``artifact.json`` with the full
recipe key, and ``PROVENANCE.json`` at the root naming the config and command that trained
them). A recipe whose key matches a shipped artifact is served from there, so the default run
trains nothing and every machine samples from the same weights. ``fairbench train`` ignores
them (it trains into the cache), and ``FAIRBENCH_NETWORKS=cache`` makes runs ignore them too.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import FairbenchError
from .records import atomic_write_text, canonical_json

CACHE_ENV = "FAIRBENCH_CACHE"
NETWORKS_ENV = "FAIRBENCH_NETWORKS"  # "shipped" (default) or "cache"
MARKER = "artifact.json"
SHIPPED_ROOT = Path(__file__).resolve().parent / "networks"
_use_shipped: ContextVar[bool] = ContextVar("use_shipped", default=True)
_recorder: ContextVar[list | None] = ContextVar("recorder", default=None)


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fairbench").expanduser()


def tensor_digest(*arrays: torch.Tensor | np.ndarray) -> str:
    """sha256 over the dtype, shape and bytes of each array, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        data = array.detach().cpu().contiguous().numpy() if isinstance(array, torch.Tensor) else np.ascontiguousarray(array)
        digest.update(f"{data.dtype}:{data.shape};".encode())
        digest.update(data.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Artifact:
    kind: str
    key: str
    directory: Path

    @property
    def complete(self) -> bool:
        return (self.directory / MARKER).is_file()

    def metadata(self) -> dict[str, Any]:
        return json.loads((self.directory / MARKER).read_text(encoding="utf-8"))

    def finish(self, metadata: dict[str, Any]) -> None:
        """Mark the artifact complete; `metadata` is kept beside it (recipe key included)."""
        atomic_write_text(self.directory / MARKER, json.dumps({"kind": self.kind, "key": self.key} | metadata, indent=2) + "\n")


def recipe_key(kind: str, recipe: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({"kind": kind} | recipe).encode()).hexdigest()


@contextmanager
def without_shipped():
    """Inside this block, `shipped_artifact` finds nothing (training into the cache)."""
    token = _use_shipped.set(False)
    try:
        yield
    finally:
        _use_shipped.reset(token)


@contextmanager
def recorded_artifacts():
    """Collect ``(recipe, Artifact)`` for every artifact looked up inside this block."""
    used: list[tuple[dict[str, Any], Artifact]] = []
    token = _recorder.set(used)
    try:
        yield used
    finally:
        _recorder.reset(token)


def _record(recipe: dict[str, Any], found: Artifact) -> Artifact:
    used = _recorder.get()
    if used is not None:
        used.append((recipe, found))
    return found


def shipped_artifact(kind: str, recipe: dict[str, Any], *, root: Path | None = None) -> Artifact | None:
    """The packaged artifact of `recipe`, or None (none shipped, or shipped networks switched off)."""
    source = os.environ.get(NETWORKS_ENV, "shipped")
    if source not in ("shipped", "cache"):
        raise FairbenchError(f"{NETWORKS_ENV} must be 'shipped' or 'cache', got {source!r}")
    if source == "cache" or not _use_shipped.get():
        return None
    key = recipe_key(kind, recipe)
    found = Artifact(kind, key, (root or SHIPPED_ROOT) / kind / key[:16])
    if not found.complete or found.metadata().get("key") != key:
        return None
    return _record(recipe, found)


def artifact(kind: str, recipe: dict[str, Any], *, root: Path | None = None) -> Artifact:
    """The cache slot of the artifact produced by `recipe` (created, possibly empty)."""
    key = recipe_key(kind, recipe)
    directory = (root or cache_root()) / kind / key[:16]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FairbenchError(
            f"cannot create cache directory {str(directory)!r} ({exc.strerror}); set {CACHE_ENV} to a writable directory"
        ) from None
    return _record(recipe, Artifact(kind, key, directory))
