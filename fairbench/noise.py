"""Per-sample randomness: sample i's noise depends on (seed, i) only.

Every standard normal variate fairbench samples with is a pure function of

    (seed, stream, sample index, step, element index)

computed by a counter-based generator, Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel
random numbers: as easy as 1, 2, 3", SC 2011), followed by the Box-Muller transform. There is
no generator state: a whole batch is a few dozen vectorised integer operations, and sample i
gets the same initial noise (and the same noise at every step of a stochastic sampler)
whatever the batch size, the split into shards, the executor, the device and the method.
Comparisons between methods are therefore paired.

Layout (one Philox call gives four 32-bit words, hence four variates):

- key: the first 8 bytes of ``sha256("fairbench-noise:{seed}:{stream}")``, as two 32-bit
  words: a different Philox stream per (seed, stream);
- counter: ``(element // 4, step, index mod 2**32, index // 2**32)``;
- words ``(w0, w1)`` and ``(w2, w3)`` become uniforms ``u = (w + 1/2) / 2**32`` in (0, 1)
  and then pairs of normals ``sqrt(-2 ln u_a) (cos 2 pi u_b, sin 2 pi u_b)``, computed in
  float64 and rounded to the requested dtype.

The words are computed on the CPU with exact integer arithmetic (int64 tensors) and the
normals on the CPU too; callers move the result to their
device. So the noise is bitwise the same on every machine with IEEE float64 ``log``,
``cos`` and ``sin`` as the CPU build of torch computes them, and never depends on a GPU's
math library.

What it cannot do: 32-bit uniforms bound ``|z|`` by ``sqrt(2 ln 2**32) = 6.66``; a standard
normal exceeds that with probability about ``3e-11``, so the cut is invisible at any sample
size fairbench runs. Sample indices must lie in ``[0, 2**63)``, steps in ``[0, 2**32)``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch

INITIAL = "initial"
STEPS = "steps"

# Written into every record's spec: results from another noise scheme are different numbers.
SCHEME = "philox4x32-10+box-muller/v1"

_MASK = 0xFFFFFFFF
_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)  # Philox4x32 round multipliers
_WEYL = (0x9E3779B9, 0xBB67AE85)  # key increments between rounds
_ROUNDS = 10


def sample_seed(seed: int, index: int, stream: str) -> int:
    """A 63-bit seed for a ``torch.Generator`` from (seed, index, stream) (used by training)."""
    digest = hashlib.sha256(f"fairbench:{seed}:{index}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _key(seed: int, stream: str) -> tuple[int, int]:
    digest = hashlib.sha256(f"fairbench-noise:{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:8], "little")


def _mulhilo(multiplier: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Low and high 32-bit words of ``multiplier * value`` (both in [0, 2**32)).

    The product can reach 2**64: its int64 value wraps (two's complement, as torch's integer
    kernels compute it), which keeps every bit, so masking and an arithmetic shift recover
    both words exactly. tests/test_noise.py checks this against Python's integers.
    """
    product = multiplier * value
    return product & _MASK, (product >> 32) & _MASK


def philox4x32(counter: torch.Tensor, key: tuple[int, int], rounds: int = _ROUNDS) -> torch.Tensor:
    """Philox4x32 of int64 counters ``[..., 4]`` (each word in [0, 2**32)) under a two-word key."""
    c0, c1, c2, c3 = counter.unbind(-1)
    dims = [1] * c0.dim()
    multipliers = torch.tensor(_MULTIPLIERS, dtype=torch.int64).view(2, *dims)
    round_keys = torch.tensor(
        [[(key[0] + r * _WEYL[0]) & _MASK, (key[1] + r * _WEYL[1]) & _MASK] for r in range(rounds)], dtype=torch.int64
    ).view(rounds, 2, *dims)
    # Rows (c0, c2) are multiplied, rows (c1, c3) ride along: one tensor operation for both.
    multiplied, passed = torch.stack([c0, c2]), torch.stack([c1, c3])
    for r in range(rounds):
        low, high = _mulhilo(multipliers, multiplied)
        # (c0, c1, c2, c3) <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
        multiplied, passed = high.flip(0).bitwise_xor_(passed).bitwise_xor_(round_keys[r]), low.flip(0)
    return torch.stack([multiplied[0], passed[0], multiplied[1], passed[1]], dim=-1)


def standard_normal(
    seed: int,
    indices: Sequence[int] | torch.Tensor,
    shape: Sequence[int],
    *,
    stream: str,
    step: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normal variates ``[len(indices), *shape]`` on the CPU; entry ``[j, e]`` (e in row-major
    order) depends only on ``(seed, stream, indices[j], step, e)``."""
    shape = tuple(int(s) for s in shape)
    size = math.prod(shape)
    blocks = -(-size // 4)
    index = indices if isinstance(indices, torch.Tensor) else torch.as_tensor(list(indices), dtype=torch.int64)
    if len(index) and int(index.min()) < 0:
        raise ValueError(f"sample indices must be non-negative, got {int(index.min())}")
    if not 0 <= step <= _MASK:
        raise ValueError(f"step must lie in [0, 2**32), got {step}")
    counter = torch.empty(len(index), blocks, 4, dtype=torch.int64)
    counter[..., 0] = torch.arange(blocks, dtype=torch.int64)
    counter[..., 1] = step
    counter[..., 2] = (index & _MASK)[:, None]
    counter[..., 3] = (index >> 32)[:, None]
    key = _key(seed, stream)
    flat = counter.view(-1, 4)
    chunk = _CHUNK if torch.get_num_threads() > 1 else max(len(flat), 1)
    normal = torch.cat([_normals(flat[lo : lo + chunk], key) for lo in range(0, len(flat), chunk)])
    return normal.view(len(index), blocks * 4)[:, :size].reshape(len(index), *shape).to(dtype)


# Counters per chunk when torch may use several threads: every integer operation stays below torch's parallel grain size (32768
# elements), so it runs on one thread. The work per operation is too small for threads to
# pay, and on a busy CPU each parallel operation waits for its slowest thread (measured:
# 2 threads on one busy core made the noise about 20x slower).
_CHUNK = 8192


def _normals(counter: torch.Tensor, key: tuple[int, int]) -> torch.Tensor:
    """Four float64 normals ``[C, 4]`` per counter ``[C, 4]``: Box-Muller on word pairs."""
    words = philox4x32(counter, key).to(torch.float64)
    # u = (w + 1/2) / 2**32, in (0, 1); radius from w0, w2 and angle from w1, w3
    radius = words[:, 0::2].add(0.5).mul_(2.0**-32).log_().mul_(-2.0).sqrt_()
    angle = words[:, 1::2].add(0.5).mul_(2.0 * math.pi * 2.0**-32)
    # (w0, w1) -> elements 4b, 4b+1; (w2, w3) -> 4b+2, 4b+3
    return torch.stack([angle.cos().mul_(radius), angle.sin_().mul_(radius)], dim=-1).view(-1, 4)


def initial_noise(
    seed: int, indices: Sequence[int], shape: Sequence[int], *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``x_T`` for the given sample indices, on the CPU: shape ``[len(indices), *shape]``."""
    return standard_normal(seed, indices, shape, stream=INITIAL, dtype=dtype)


def step_noise(
    seed: int, indices: Sequence[int] | torch.Tensor, step: int, shape: Sequence[int], *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The fresh noise a stochastic sampler adds at its `step`-th update (0 = the first), on the CPU."""
    return standard_normal(seed, indices, shape, stream=STEPS, step=step, dtype=dtype)


class StepNoise:
    """The per-step noise of one batch of samples, for a stochastic scheduler's ``variance_noise``."""

    def __init__(self, seed: int, indices: Sequence[int]):
        self.seed = seed
        self.indices = torch.as_tensor(list(indices), dtype=torch.int64)

    def __call__(self, step: int, like: torch.Tensor) -> torch.Tensor:
        """Step `step`'s noise, shaped, typed and placed like `like` (``[batch, *sample_shape]``)."""
        noise = step_noise(self.seed, self.indices, step, like.shape[1:], dtype=like.dtype)
        return noise.to(like.device)
