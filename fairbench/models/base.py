"""What a model is to fairbench: a conditional noise predictor over a mixture of conditions.

Methods never touch a model's internals. They hand it, per sample, a weight vector over the
k attribute values (one-hot for plain conditioning, two non-zero entries for embedding
mixing); the model turns that into its own condition (a class embedding, a prompt
embedding, a class mean) and predicts the noise.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Denoiser(Protocol):
    """A conditional noise-prediction model ``eps(x_t, t, c)``."""

    attribute_names: tuple[str, ...]
    sample_shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def num_attributes(self) -> int: ...

    def eps(self, x: torch.Tensor, t: int, weights: torch.Tensor) -> torch.Tensor:
        """Noise prediction at training timestep `t` under condition ``weights @ E`` ([B, k])."""
        ...


class GuidanceClassifier(Protocol):
    """A noise-aware attribute classifier: ``log p(s | x_t, t)`` for each of the k values."""

    def log_prob(self, x: torch.Tensor, t: int) -> torch.Tensor:  # [B, k]
        ...


def one_hot(labels: torch.Tensor, k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.long(), k).to(dtype)


def as_labels(weights: torch.Tensor) -> torch.Tensor | None:
    """The attribute index of each row when every row is one-hot, else None."""
    labels = weights.argmax(dim=1)
    if torch.equal(weights, one_hot(labels, weights.shape[1], weights.dtype)):
        return labels
    return None
