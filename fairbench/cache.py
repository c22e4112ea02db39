"""The artifact cache: trained networks stored under a key derived from what produced them.

Root: ``$FAIRBENCH_CACHE``, default ``~/.cache/fairbench``. An artifact lives in
``<root>/<kind>/<key[:16]>/`` where ``key = sha256(canonical JSON of its recipe)`` and the
recipe holds everything the result depends on (training spec, architecture, noise schedule,
a digest of the training data, the format version). An artifact is complete once its
``artifact.json`` exists; it is written last and atomically, so an interrupted training
leaves an incomplete directory (with its resumable checkpoint), never a half-valid one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import FairbenchError
from .records import atomic_write_text, canonical_json

CACHE_ENV = "FAIRBENCH_CACHE"
MARKER = "artifact.json"


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


def artifact(kind: str, recipe: dict[str, Any], *, root: Path | None = None) -> Artifact:
    """The cache slot of the artifact produced by `recipe` (created, possibly empty)."""
    key = hashlib.sha256(canonical_json({"kind": kind} | recipe).encode()).hexdigest()
    directory = (root or cache_root()) / kind / key[:16]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FairbenchError(
            f"cannot create cache directory {str(directory)!r} ({exc.strerror}); set {CACHE_ENV} to a writable directory"
        ) from None
    return Artifact(kind, key, directory)
