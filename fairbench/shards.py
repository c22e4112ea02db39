"""A run's samples on disk, in shards, read back one shard at a time.

`ShardedSamples` behaves like a ``[N, *shape]`` tensor for what the measurements do with
samples (``len``, contiguous slices, integer index arrays), while holding at most one shard
in memory: a run's memory does not grow with the number of samples.
"""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file


def write_shard(path: Path, samples: torch.Tensor, metadata: dict[str, str]) -> None:
    """Write atomically: a shard file is whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({"samples": samples.contiguous()}, str(tmp), metadata=metadata)
    tmp.replace(path)


def read_shard(path: Path) -> tuple[torch.Tensor, dict[str, str]]:
    with safe_open(str(path), framework="pt") as handle:
        return handle.get_tensor("samples"), handle.metadata() or {}


def shard_header(path: Path) -> tuple[int, dict[str, str]]:
    """A shard's number of samples and its metadata, without reading the samples."""
    with safe_open(str(path), framework="pt") as handle:
        return handle.get_slice("samples").get_shape()[0], handle.metadata() or {}


class ShardedSamples:
    def __init__(self, paths: list[Path], sizes: list[int]):
        if len(paths) != len(sizes) or not paths:
            raise ValueError("one size per shard, and at least one shard")
        self.paths, self.sizes = list(paths), list(sizes)
        self.starts = list(np.cumsum([0] + self.sizes[:-1]))
        self._cached: tuple[int, torch.Tensor] | None = None

    @classmethod
    def from_folder(cls, folder: Path) -> "ShardedSamples | None":
        """The shards of one job folder, in order; None when it holds none."""
        paths = sorted(Path(folder).glob("*.safetensors"))
        if not paths:
            return None
        return cls(paths, [shard_header(path)[0] for path in paths])

    def __len__(self) -> int:
        return sum(self.sizes)

    @property
    def shape(self) -> torch.Size:
        return torch.Size([len(self), *self._shard(0).shape[1:]])

    def _shard(self, index: int) -> torch.Tensor:
        if self._cached is None or self._cached[0] != index:
            self._cached = (index, read_shard(self.paths[index])[0])
        return self._cached[1]

    def _rows(self, positions: np.ndarray) -> torch.Tensor:
        out = []
        shard_of = np.searchsorted(self.starts, positions, side="right") - 1
        # keep the requested order; read each shard once per run of equal shard ids
        for shard in dict.fromkeys(shard_of.tolist()):
            mask = shard_of == shard
            out.append((np.flatnonzero(mask), self._shard(shard)[torch.as_tensor(positions[mask] - self.starts[shard])]))
        order = np.concatenate([where for where, _ in out])
        rows = torch.cat([values for _, values in out])
        return rows[torch.as_tensor(np.argsort(order, kind="stable"))]

    def __getitem__(self, index) -> torch.Tensor:
        n = len(self)
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step != 1:
                return self._rows(np.arange(start, stop, step))
            if start >= stop:
                return self._shard(0)[:0]
            first = bisect.bisect_right(self.starts, start) - 1
            parts = []
            for shard in range(first, len(self.paths)):
                lo = self.starts[shard]
                if lo >= stop:
                    break
                part = self._shard(shard)[max(start - lo, 0) : stop - lo]
                parts.append(part)
            return parts[0] if len(parts) == 1 else torch.cat(parts)
        if isinstance(index, int):
            return self[index : index + 1][0] if index >= 0 else self[n + index]
        positions = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        positions = positions.astype(np.int64)
        if positions.size == 0:
            return self._shard(0)[:0]
        if positions.min() < 0 or positions.max() >= n:
            raise IndexError("sample index out of range")
        return self._rows(positions)

    def tensor(self) -> torch.Tensor:
        """All samples in memory (for small runs and figures)."""
        return self[0 : len(self)]
