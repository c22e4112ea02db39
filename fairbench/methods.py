"""Fair-sampling methods. A method decides only the condition (and any correction) per step.

Every method maps ``(t, requested)`` to a per-sample mixture over the k attribute values
(``weights``, shape [B, k]); the model turns the mixture into its condition. The sampling
loop (`fairbench.sampling`) is shared by all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from .errors import FairbenchError, lookup
from .models.base import GuidanceClassifier, one_hot


def derangement(requested: torch.Tensor, k: int, target: tuple[int, ...] | None = None) -> torch.Tensor:
    """The value whose details a request ends with: ``target[a]``, default ``(a + 1) mod k``."""
    if target is None:
        return (requested + 1) % k
    return torch.as_tensor(target, dtype=torch.long, device=requested.device)[requested]


@dataclass(frozen=True)
class Conditional:
    """Condition on the requested value at every step (the unfair reference)."""

    name: ClassVar[str] = "conditional"

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        return one_hot(requested, k)

    def final(self, requested: torch.Tensor, k: int) -> torch.Tensor:
        return requested

    def params(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class AttributeSwitching:
    """Algorithm 1 of Choi et al. (AAAI 2024): condition on ``s0`` while ``t > tau``, then ``s1``.

    `tau` is a training timestep in ``[-1, T-1]``: -1 never switches, ``T-1`` conditions on
    ``s1`` throughout. ``s1 = target[s0]`` (default: the next value, cyclically). The switch
    changes no model evaluation count: it only picks which condition each step uses.
    """

    tau: int
    target: tuple[int, ...] | None = None
    name: ClassVar[str] = "attribute_switching"

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        value = derangement(requested, k, self.target) if t <= self.tau else requested
        return one_hot(value, k)

    def final(self, requested: torch.Tensor, k: int) -> torch.Tensor:
        return derangement(requested, k, self.target) if self.tau >= 0 else requested

    def params(self) -> dict[str, Any]:
        return {"tau": self.tau, "target": "next value, cyclically" if self.target is None else list(self.target)}


@dataclass(frozen=True)
class EmbeddingMixing:
    """One condition for all steps: the interpolated embedding ``(1 - w) E[s0] + w E[s1]``."""

    weight: float = 0.5
    name: ClassVar[str] = "embedding_mixing"

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        return (1.0 - self.weight) * one_hot(requested, k) + self.weight * one_hot(derangement(requested, k), k)

    def final(self, requested: torch.Tensor, k: int) -> torch.Tensor:
        return requested

    def params(self) -> dict[str, Any]:
        return {"weight": self.weight}


@dataclass(frozen=True)
class ClassifierGuidance:
    """Condition on the request and push a noise-aware classifier's posterior toward uniform.

    ``eps~ = eps - w sqrt(1 - abar_t) grad_x sum_a (1/k) log p_phi(a | x_t, t)``
    (Dhariwal & Nichol 2021 guidance, with the uniform distribution as the target).
    """

    scale: float = 1.0
    classifier: GuidanceClassifier | None = field(default=None, compare=False, repr=False)
    name: ClassVar[str] = "classifier_guidance"

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        return one_hot(requested, k)

    def final(self, requested: torch.Tensor, k: int) -> torch.Tensor:
        return requested

    def correct(self, eps: torch.Tensor, x: torch.Tensor, t: int, abar_t: float) -> torch.Tensor:
        if self.classifier is None:
            raise FairbenchError("classifier_guidance needs a guidance classifier for this model")
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_prob = self.classifier.log_prob(x_in, t)
            objective = log_prob.mean(dim=1).sum()
            (grad,) = torch.autograd.grad(objective, x_in)
        return eps - self.scale * math.sqrt(1.0 - abar_t) * grad.to(eps.dtype)

    def params(self) -> dict[str, Any]:
        return {"scale": self.scale}


METHODS = {
    "conditional": Conditional,
    "attribute_switching": AttributeSwitching,
    "embedding_mixing": EmbeddingMixing,
    "classifier_guidance": ClassifierGuidance,
}


def method_class(name: str):
    return lookup(METHODS, name, "method")


def resolve_tau(value: int | float, num_train_timesteps: int) -> int:
    """An integer tau in ``[-1, T-1]``; a float in ``[0, 1]`` is read as the fraction ``tau / T``."""
    T = num_train_timesteps
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FairbenchError(f"tau must be an integer in [-1, {T - 1}], a fraction in [0, 1], 'reference' or 'direct'; got {value!r}")
    if isinstance(value, float):
        if not (0.0 <= value <= 1.0) or not math.isfinite(value):
            raise FairbenchError(f"tau fraction must be in [0, 1], got {value!r}")
        return min(int(round(value * T)), T - 1)
    if not -1 <= value <= T - 1:
        raise FairbenchError(f"tau {value} is out of range [-1, {T - 1}]")
    return int(value)
