"""Per-sample randomness: sample i's noise depends on (seed, i) only.

Each sample gets its own CPU ``torch.Generator`` seeded from ``(seed, index, stream)``, so
sample i sees the same initial noise (and the same per-step noise under stochastic
samplers) whatever the batch size, the device and the method: comparisons between methods
are paired.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

INITIAL = "initial"
STEPS = "steps"


def sample_seed(seed: int, index: int, stream: str) -> int:
    digest = hashlib.sha256(f"fairbench:{seed}:{index}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def generators(seed: int, indices: Sequence[int], stream: str) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(sample_seed(seed, int(i), stream)) for i in indices]


def initial_noise(
    seed: int, indices: Sequence[int], shape: Sequence[int], *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``x_T`` for the given sample indices, drawn on the CPU: shape ``[len(indices), *shape]``."""
    return torch.stack(
        [torch.randn(tuple(shape), generator=g, dtype=dtype) for g in generators(seed, indices, INITIAL)]
    )
