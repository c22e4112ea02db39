"""Fair-sampling methods. A method decides only the condition (and any correction) per step.

Every method maps ``(t, requested)`` to a per-sample mixture over the k attribute values
(``weights``, shape [B, k]); the model turns the mixture into its condition. The sampling
loop (`fairbench.sampling`) is shared by all of them.

A method owns its parameters. Its class declares them as a frozen dataclass ``Params``
(types, defaults, ranges checked in ``Params.validate``), names the ones a config may sweep
over in ``sweepable``, and builds itself from the parsed parameters and what the run
provides (a `MethodContext`) in ``build``. The config layer only routes ``name`` and the
rest of a ``[[methods]]`` table here; adding a method is one class and one line in
`METHODS` (see docs/adding-a-method.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from .errors import FairbenchError, lookup, suggest
from .models.base import Denoiser, GuidanceClassifier, one_hot
from .noise import sample_seed
from .tables import positive

SEARCHES = ("reference", "direct")


@dataclass(frozen=True)
class NoParams:
    """The parameters of a method that has none."""


@dataclass(frozen=True)
class MethodContext:
    """What a run provides to a method while it builds itself.

    `search_tau(search, batch_size)` runs the named tau search on the run's model (the runner
    caches and records it) and returns the chosen tau.
    """

    model: Denoiser
    guidance: GuidanceClassifier | None = None
    search_tau: Callable[[str, int], int] | None = None


class Method:
    """The interface every method implements; subclasses are frozen dataclasses.

    Class attributes: ``name`` (the registry key), ``Params`` (the config keys, a frozen
    dataclass parsed strictly by `fairbench.tables.parse_table`), ``sweepable`` (keys that
    may be given a list in a config, one method per value; these also make up the default
    label), ``example`` (a valid params table, used by the contract tests) and
    ``final_rule`` (how `final` relates to the request, written into the record).

    Optional hooks: ``correct(eps, x, t, abar_t)`` adjusts the noise prediction (counted as
    a classifier evaluation), and ``assign(requested, k, seed, indices)`` replaces the value
    each sample is asked for before sampling (a control that ignores the request).
    """

    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    sweepable: ClassVar[tuple[str, ...]] = ()
    example: ClassVar[dict[str, Any]] = {}
    final_rule: ClassVar[str] = "requested"

    @classmethod
    def build(cls, params: Any, context: MethodContext) -> "Method":
        """The method for one run; the default passes every parameter to the constructor."""
        return cls(**vars(params))

    @classmethod
    def recorded(cls, params: Any, given: dict[str, Any]) -> dict[str, Any]:
        """The parameters a record's spec (and hence its key) holds: by default those the config gave."""
        return dict(given)

    @classmethod
    def check_model(cls, params: Any, num_train_timesteps: int, where: str) -> None:
        """Checks that need the model's number of training timesteps (before any work)."""

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        raise NotImplementedError

    def final(self, requested: torch.Tensor, k: int) -> torch.Tensor:
        """The value whose details each sample ends with."""
        return requested

    def params(self) -> dict[str, Any]:
        """The parameters this instance runs with, as the record shows them."""
        return {}

    def run_metrics(self) -> dict[str, Any]:
        """Values the method settled on for this run (e.g. a searched tau), added to the metrics."""
        return {}


def derangement(requested: torch.Tensor, k: int, target: tuple[int, ...] | None = None) -> torch.Tensor:
    """The value whose details a request ends with: ``target[a]``, default ``(a + 1) mod k``."""
    if target is None:
        return (requested + 1) % k
    return torch.as_tensor(target, dtype=torch.long, device=requested.device)[requested]


@dataclass(frozen=True)
class Conditional(Method):
    """Condition on the requested value at every step (the unfair reference)."""

    name: ClassVar[str] = "conditional"

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        return one_hot(requested, k)


@dataclass(frozen=True)
class SwitchingParams:
    """``tau``: a training timestep, a fraction of T, or the name of a search."""

    tau: int | float | str
    search_batch_size: int = 256  # noises per tau search; only used when tau names a search

    def validate(self, where: str) -> None:
        if isinstance(self.tau, str) and self.tau not in SEARCHES:
            raise FairbenchError(f"{where}.tau = {self.tau!r} is not a search.{suggest(self.tau, list(SEARCHES))}")
        positive(self.search_batch_size, f"{where}.search_batch_size")


@dataclass(frozen=True)
class AttributeSwitching(Method):
    """Algorithm 1 of Choi et al. (AAAI 2024): condition on ``s0`` while ``t > tau``, then ``s1``.

    `tau` is a training timestep in ``[-1, T-1]``: -1 never switches, ``T-1`` conditions on
    ``s1`` throughout. ``s1 = target[s0]`` (default: the next value, cyclically). The switch
    changes no model evaluation count: it only picks which condition each step uses.
    """

    tau: int
    target: tuple[int, ...] | None = None
    name: ClassVar[str] = "attribute_switching"
    Params: ClassVar[type] = SwitchingParams
    sweepable: ClassVar[tuple[str, ...]] = ("tau",)
    example: ClassVar[dict[str, Any]] = {"tau": 500}
    final_rule: ClassVar[str] = "target of the switch: (requested + 1) mod k"

    @classmethod
    def build(cls, params: SwitchingParams, context: MethodContext) -> "AttributeSwitching":
        if isinstance(params.tau, str):
            if context.search_tau is None:
                raise FairbenchError(f"tau = {params.tau!r} needs a tau search, which this run does not provide")
            return cls(tau=context.search_tau(params.tau, params.search_batch_size))
        return cls(tau=resolve_tau(params.tau, context.model.num_train_timesteps))

    @classmethod
    def recorded(cls, params: SwitchingParams, given: dict[str, Any]) -> dict[str, Any]:
        # The search's batch size changes the result only when tau is searched.
        out = {k: v for k, v in given.items() if k != "search_batch_size"}
        if isinstance(params.tau, str):
            out["search_batch_size"] = params.search_batch_size
        return out

    @classmethod
    def check_model(cls, params: SwitchingParams, num_train_timesteps: int, where: str) -> None:
        if not isinstance(params.tau, str):
            resolve_tau(params.tau, num_train_timesteps)

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        value = derangement(requested, k, self.target) if t <= self.tau else requested
        return one_hot(value, k)

    def final(self, requested: torch.Tensor, k: int) -> torch.Tensor:
        return derangement(requested, k, self.target) if self.tau >= 0 else requested

    def params(self) -> dict[str, Any]:
        return {"tau": self.tau, "target": "next value, cyclically" if self.target is None else list(self.target)}

    def run_metrics(self) -> dict[str, Any]:
        return {"tau": self.tau}


@dataclass(frozen=True)
class MixingParams:
    weight: float = 0.5  # weight of the next value's embedding, in [0, 1]

    def validate(self, where: str) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise FairbenchError(f"{where}.weight must be in [0, 1], got {self.weight}")


@dataclass(frozen=True)
class EmbeddingMixing(Method):
    """One condition for all steps: the interpolated embedding ``(1 - w) E[s0] + w E[s1]``."""

    weight: float = 0.5
    name: ClassVar[str] = "embedding_mixing"
    Params: ClassVar[type] = MixingParams
    sweepable: ClassVar[tuple[str, ...]] = ("weight",)
    example: ClassVar[dict[str, Any]] = {"weight": 0.5}

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        return (1.0 - self.weight) * one_hot(requested, k) + self.weight * one_hot(derangement(requested, k), k)

    def params(self) -> dict[str, Any]:
        return {"weight": self.weight}


@dataclass(frozen=True)
class GuidanceParams:
    scale: float = 1.0  # guidance strength w >= 0; 0 is the unguided sampler

    def validate(self, where: str) -> None:
        if self.scale < 0:
            raise FairbenchError(f"{where}.scale must be non-negative, got {self.scale}")


@dataclass(frozen=True)
class ClassifierGuidance(Method):
    """Condition on the request and push a noise-aware classifier's posterior toward uniform.

    ``eps~ = eps - w sqrt(1 - abar_t) grad_x sum_a (1/k) log p_phi(a | x_t, t)``
    (Dhariwal & Nichol 2021 guidance, with the uniform distribution as the target).
    """

    scale: float = 1.0
    classifier: GuidanceClassifier | None = field(default=None, compare=False, repr=False)
    name: ClassVar[str] = "classifier_guidance"
    Params: ClassVar[type] = GuidanceParams
    sweepable: ClassVar[tuple[str, ...]] = ("scale",)
    example: ClassVar[dict[str, Any]] = {"scale": 2.0}

    @classmethod
    def build(cls, params: GuidanceParams, context: MethodContext) -> "ClassifierGuidance":
        if context.guidance is None:
            raise FairbenchError("classifier_guidance needs a guidance classifier, and this model has none")
        return cls(scale=params.scale, classifier=context.guidance)

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        return one_hot(requested, k)

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


@dataclass(frozen=True)
class RandomCondition(Method):
    """A control: condition sample i on a value drawn uniformly from the k values, ignoring the request.

    The draw comes from a generator seeded by ``(seed, i)`` (`fairbench.noise.sample_seed`,
    stream ``"condition"``), so it is the same on any batch size and device. Every request
    gets the same mixture of the k conditional laws: fair under epsilon by construction, at
    the price of samples that show the requested value only by chance (1/k).
    """

    name: ClassVar[str] = "random_condition"
    final_rule: ClassVar[str] = "the drawn value"

    def assign(self, requested: torch.Tensor, k: int, seed: int, indices: Sequence[int]) -> torch.Tensor:
        draws = [
            int(torch.randint(k, (1,), generator=torch.Generator("cpu").manual_seed(sample_seed(seed, int(i), "condition"))))
            for i in indices
        ]
        return torch.tensor(draws, dtype=torch.long, device=requested.device)

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        return one_hot(requested, k)


METHODS: dict[str, type[Method]] = {
    "conditional": Conditional,
    "attribute_switching": AttributeSwitching,
    "embedding_mixing": EmbeddingMixing,
    "classifier_guidance": ClassifierGuidance,
    "random_condition": RandomCondition,
}


def method_class(name: str) -> type[Method]:
    return lookup(METHODS, name, "method")


def assigned(method: Method, requested: torch.Tensor, k: int, *, seed: int, indices: Sequence[int]) -> torch.Tensor:
    """The values the sampler conditions on for these samples: the request, unless the method assigns its own."""
    assign = getattr(method, "assign", None)
    return requested if assign is None else assign(requested, k, seed, indices)


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
