"""Fair-sampling methods. A method decides only the condition (and any correction) per step.

Every method maps ``(t, requested)`` to a per-sample mixture over the k attribute values
(``weights``, shape [B, k]); the model turns the mixture into its condition. The sampling
loop (`fairbench.sampling`) is shared by all of them.

A method owns its parameters, and declares them once: a frozen dataclass ``Params`` (types,
defaults, ranges checked in ``Params.validate``) that the method class extends, so the
method's fields, the parameters its record shows (`Method.params`) and its part of a job's
spec (`Method.recorded`) all come from that one list. It names the keys a config may sweep
over in ``sweepable``, the model capabilities it needs in ``requires`` (checked once, with
the config location, by `check_method`), and builds itself from the parsed parameters and
what the run provides (a `MethodContext`) in ``build``. The config layer only routes
``name`` and the rest of a ``[[methods]]`` table here; adding a method is one class and one
line in `METHODS` (see docs/adding-a-method.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from .errors import FairbenchError, lookup
from .models.base import CAPABILITIES, Capability, Denoiser, GuidanceClassifier, one_hot
from .noise import sample_seed
from .tables import positive


@dataclass(frozen=True)
class NoParams:
    """The parameters of a method that has none."""


@dataclass(frozen=True)
class MethodContext:
    """What a run provides to a method while it builds itself.

    `search_tau(search, batch_size, pair)` runs the named tau search on the run's model for
    the switch between the flat values ``pair = (s0, s1)`` (the runner caches and records it)
    and returns the chosen tau.
    """

    model: Denoiser
    guidance: GuidanceClassifier | None = None
    search_tau: Callable[[str, int, tuple[int, int]], int] | None = None
    # `search_points(search, batch_size, cycle, **options)`: the k - 1 transition points of cyclic
    # switching along ``cycle`` (the one-place move of every flat value), searched on the run's
    # model; `options` are the search's own (``between_steps``)
    search_points: Callable[..., tuple[int | float, ...]] | None = None
    # Whether the run samples through the model's own pipeline (`Setup.sample`), which can swap
    # each step's condition but not mix two noise predictions
    own_sampler: bool = False

    def offers(self, capability: Capability) -> bool:
        """Whether the run provides `capability`: the model's (`Denoiser.capabilities`), or a guidance classifier."""
        if capability == "guidance_classifier":
            return self.guidance is not None
        return capability in self.model.capabilities.offered()


class Method:
    """The interface every method implements; subclasses are frozen dataclasses that extend their ``Params``.

    Class attributes: ``name`` (the registry key), ``Params`` (the config keys, a frozen
    dataclass parsed strictly by `fairbench.tables.parse_table`; the method class extends
    it, so its fields are the method's first fields), ``sweepable`` (keys that may be given
    a list in a config, one method per value; these also make up the default label),
    ``requires`` (capability -> the parameter that asks for it, None when the method always
    needs it; `check_method`), ``example`` (a valid params table, used by the contract tests)
    and ``final_rule`` (how `final` relates to the request, written into the record).

    Optional hooks, None on this class: ``correct(eps, x, t, abar_t, requested)`` adjusts the
    noise prediction (``requested``: the per-sample values the sampler was given); it is
    counted as one classifier evaluation per sample, or, for a method whose correction calls
    the model (``correction_nfe`` > 0), as that many model evaluations per sample and step.
    And ``assign(requested, k, seed, indices)`` replaces the value each sample is asked for
    before sampling (a control that ignores the request, or a method that draws a value).

    ``mixes_predictions``: a row of `weights` with several non-zero entries is a mixture of
    noise predictions, ``sum_v w_v eps(x, t, v)`` (one model evaluation per non-zero entry,
    `fairbench.sampling.predict`), rather than one condition mixed inside the model (embedding
    mixing); a one-hot row is one evaluation either way. `visiting(timesteps)` gives the
    method the visited timesteps before a trajectory starts (the sampler calls it).
    """

    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    sweepable: ClassVar[tuple[str, ...]] = ()
    requires: ClassVar[dict[Capability, str | None]] = {}
    example: ClassVar[dict[str, Any]] = {}
    final_rule: ClassVar[str] = "requested"
    correction_nfe: ClassVar[int] = 0  # model evaluations per sample and step made by `correct`
    mixes_predictions: ClassVar[bool] = False  # several non-zero weights: a mixture of noise predictions
    # Whether a sample depends on the others sampled in its batch (then the batch size is in the spec)
    batch_dependent: ClassVar[bool] = False
    correct: ClassVar[Callable[..., torch.Tensor] | None] = None
    assign: ClassVar[Callable[..., torch.Tensor] | None] = None

    @classmethod
    def build(cls, params: Any, context: MethodContext) -> "Method":
        """The method for one run (`check_method` has passed); the default passes every parameter on."""
        return cls(**vars(params))

    @classmethod
    def recorded(cls, params: Any) -> dict[str, Any]:
        """The parameters a job's spec (and hence its key) holds: the fields of ``Params`` off their
        defaults (a required one always), so a value written out equal to its default, or a new
        parameter whose default keeps the old behaviour, leaves the key unchanged."""
        return {f.name: value for f in dataclasses.fields(params)
                if (value := getattr(params, f.name)) != f.default or f.default is dataclasses.MISSING}

    @classmethod
    def check_model(cls, params: Any, num_train_timesteps: int, where: str) -> None:
        """Checks that need the model's number of training timesteps (before any work)."""

    @classmethod
    def check_context(cls, params: Any, context: MethodContext, where: str) -> None:
        """Checks of parameter values against what the run provides, beyond ``requires`` (before any work)."""

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        raise NotImplementedError

    def visiting(self, timesteps: Sequence[int]) -> "Method":
        """This method for a trajectory over the visited `timesteps` (descending); most need not know them."""
        return self

    def final(self, requested: torch.Tensor, k: int) -> torch.Tensor:
        """The value whose details each sample ends with."""
        return requested

    def conditional_prefix(self, timesteps: list[int]) -> int:
        """How many of the visited `timesteps`, from the first, this method samples exactly as
        `Conditional` does (the one-hot request, no correction); the sampler may reuse those
        steps from a conditional run (`fairbench.sampling.PrefixCache`)."""
        return 0

    def attention_amplification(self) -> float:
        """The factor on the attribute prompt tokens' cross-attention (1: none; needs ``prompt_tokens``)."""
        return 1.0

    def params(self) -> dict[str, Any]:
        """Every parameter this instance runs with (a searched tau resolved), as the record shows them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self.Params)}

    def run_metrics(self) -> dict[str, Any]:
        """Values the method settled on for this run (e.g. a searched tau), added to the metrics."""
        return {}


def check_method(cls: type[Method], params: Any, context: MethodContext, where: str) -> None:
    """Refuse, on one line naming the config location, a method the run cannot serve: a capability
    in ``cls.requires`` the run lacks (one asked for by a parameter only when that parameter is off
    its default), then the method's own `Method.check_context`. The runner calls it once per method,
    before any work."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls.Params)}
    for capability, parameter in cls.requires.items():
        if context.offers(capability):
            continue
        what, remedy = CAPABILITIES[capability]
        if parameter is None:
            raise FairbenchError(f"{where}: {cls.name} needs {what}, and this model has none{': ' + remedy if remedy else ''}")
        value = getattr(params, parameter)
        if value != defaults[parameter]:
            leave = "out" if defaults[parameter] is None else f"at {defaults[parameter]!r}"
            raise FairbenchError(f"{where}.{parameter} = {value!r} needs {what}, and this model has none; leave {parameter} {leave}")
    cls.check_context(params, context, where)


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

    def conditional_prefix(self, timesteps: list[int]) -> int:
        # a subclass that picks other conditions is not conditional sampling
        return len(timesteps) if type(self).weights is Conditional.weights else 0


# Field metadata of a parameter whose string values name a tau search (`fairbench.tau_search.SEARCHES`,
# checked where configs are parsed, `fairbench.config.parse_method`).
NAMES_A_SEARCH = {"names_a_search": True}


@dataclass(frozen=True)
class SwitchingParams:
    """``tau``: a training timestep, a fraction of T, or the name of a search."""

    tau: int | float | str = field(metadata=NAMES_A_SEARCH)
    search_batch_size: int = 256  # noises per tau search; only used when tau names a search
    # One axis of a product attribute to switch, the others kept; None: the whole condition
    switch_attribute: str | None = None

    def validate(self, where: str) -> None:
        positive(self.search_batch_size, f"{where}.search_batch_size")


@dataclass(frozen=True)
class AttributeSwitching(SwitchingParams, Method):
    """Algorithm 1 of Choi et al. (AAAI 2024): condition on ``s0`` while ``t > tau``, then ``s1``.

    `tau` is a training timestep in ``[-1, T-1]``: -1 never switches, ``T-1`` conditions on
    ``s1`` throughout. ``s1 = target[s0]`` (default: the next value, cyclically). The switch
    changes no model evaluation count: it only picks which condition each step uses.

    On a model whose attribute is a product of axes (`fairbench.models.base.AttributeAxes`),
    ``switch_attribute`` names one axis: ``target`` then moves that axis to its next value,
    cyclically, and keeps every other axis (`AttributeAxes.switch_target`), so
    ``(female, young)`` switches to ``(male, young)`` when the axis is the sex. Without it the
    whole condition switches to the next flat value.
    """

    target: tuple[int, ...] | None = None  # target[a]: the value a request for a switches to
    name: ClassVar[str] = "attribute_switching"
    Params: ClassVar[type] = SwitchingParams
    sweepable: ClassVar[tuple[str, ...]] = ("tau",)
    requires: ClassVar[dict[Capability, str | None]] = {"attribute_axes": "switch_attribute"}
    example: ClassVar[dict[str, Any]] = {"tau": 500}

    @property
    def final_rule(self) -> str:  # type: ignore[override]
        if self.switch_attribute is None:
            return "target of the switch: (requested + 1) mod k"
        return f"target of the switch: the next value of {self.switch_attribute!r}, cyclically, the other attributes kept"

    @classmethod
    def check_context(cls, params: SwitchingParams, context: MethodContext, where: str) -> None:
        axes = context.model.capabilities.attribute_axes
        if params.switch_attribute is not None and axes is not None:
            axes.axis(params.switch_attribute, f"{where}.switch_attribute")

    @classmethod
    def build(cls, params: SwitchingParams, context: MethodContext) -> "AttributeSwitching":
        target, pair = None, (0, 1)
        if params.switch_attribute is not None:
            axes = context.model.capabilities.attribute_axes
            target = axes.switch_target(axes.axis(params.switch_attribute))
            pair = (0, target[0])  # the first tuple and the one that differs from it in the switched axis
        if isinstance(params.tau, str):
            if context.search_tau is None:
                raise FairbenchError(f"tau = {params.tau!r} needs a tau search, which this run does not provide")
            tau = context.search_tau(params.tau, params.search_batch_size, pair)
        else:
            tau = resolve_tau(params.tau, context.model.num_train_timesteps)
        return cls(**vars(params) | {"tau": tau}, target=target)

    @classmethod
    def recorded(cls, params: SwitchingParams) -> dict[str, Any]:
        # The search's batch size changes the result only when tau is searched.
        out = super().recorded(params)
        if isinstance(params.tau, str):
            out["search_batch_size"] = params.search_batch_size
        else:
            out.pop("search_batch_size", None)
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

    def conditional_prefix(self, timesteps: list[int]) -> int:
        # the request while t > tau; timesteps are visited in descending order
        return next((i for i, t in enumerate(timesteps) if t <= self.tau), len(timesteps))

    def run_metrics(self) -> dict[str, Any]:
        return {"tau": self.tau}


# Field metadata of a parameter whose string values name a search for cyclic switching's points
# (`fairbench.tau_search.CYCLIC_SEARCHES`, checked where configs are parsed).
NAMES_A_CYCLIC_SEARCH = {"names_a_search": "cyclic"}


@dataclass(frozen=True)
class CyclicParams:
    """``taus``: k - 1 transition points (training timesteps, fractions of T, or continuous points), or a search's name."""

    taus: list[int | float] | str = field(metadata=NAMES_A_CYCLIC_SEARCH)
    search_batch_size: int = 256  # noises per group for a search; only used when taus names one
    # One axis of a product attribute to cycle, the others kept; None: the whole condition
    switch_attribute: str | None = None
    # Whether a search (direct, sweep) refines its grid points between visited steps; only used when taus names one
    between_steps: bool = True

    def validate(self, where: str) -> None:
        if not isinstance(self.taus, str) and not self.taus:
            raise FairbenchError(f"{where}.taus must list k - 1 transition points (k values), or name a search")
        positive(self.search_batch_size, f"{where}.search_batch_size")


# The cyclic searches that refine points between visited steps (`fairbench.tau_search.CYCLIC_SEARCHES`).
BETWEEN_STEPS_SEARCHES = ("direct", "sweep")


@dataclass(frozen=True)
class CyclicSwitching(CyclicParams, Method):
    """Cyclic switching: the condition moves ``a -> a+1 -> ... -> a+k-1`` (mod k) at k - 1 points.

    With transition points ``tau_1 >= tau_2 >= ... >= tau_(k-1)``, a step at timestep t
    conditions on ``target^j(a)``, where ``j = #{i : t <= tau_i}`` is its stage and ``target``
    moves a value one place along the cycle (default ``(a + 1) mod k``): an integer point is a
    training timestep with Algorithm 1's rule. With k = 2 it is `AttributeSwitching` at ``tau_1``.

    A continuous point (a float above 1; `resolve_point`) may fall between visited steps. With
    ``t_i`` the visited timesteps (descending, ``t_n = -1``) step i is past it by the fraction

        f_i(tau) = clip((tau - t_(i+1)) / (t_i - t_(i+1)), 0, 1),

    (on a visited timestep this is Algorithm 1's rule) and with ``F_0 = 1``, ``F_j = f_i(tau_j)``,
    ``F_k = 0`` the step's noise prediction is the mixture of its stages' predictions,
    ``sum_j (F_j - F_(j+1)) eps(x, t, target^j(a))`` (`mixes_predictions`): the step that holds
    a point mixes ``(1 - f) eps(value j-1) + f eps(value j)``, at one extra model evaluation
    per sample; every other step makes one. On the analytic model this is exactly
    `fairbench.models.gaussian.cyclic_mixtures`, whose exact points make every request the same.

    Why: with one switch, request a ends at ``c_1 mu_a + c_2 mu_(a+1)`` on the analytic model,
    and for k >= 3 the k requests cannot coincide unless both weights vanish. Cycling through
    every value gives request a the mixture ``sum_j c_j mu_(a+j)``, and equal stage weights
    ``c_j`` make every request the same (docs/method.md; the exact points on the analytic
    model: `fairbench.models.gaussian.exact_cyclic_points`).

    On a product attribute (`fairbench.models.base.AttributeAxes`) ``switch_attribute`` names
    the axis to cycle (k is then that axis's number of values); the other axes are kept.
    """

    target: tuple[int, ...] | None = None  # target[a]: the value one place after a along the cycle
    # The visited timesteps (descending), given by `visiting`; needed only by a point between them
    timesteps: tuple[int, ...] | None = field(default=None, compare=False, repr=False)
    name: ClassVar[str] = "cyclic_switching"
    Params: ClassVar[type] = CyclicParams
    requires: ClassVar[dict[Capability, str | None]] = {"attribute_axes": "switch_attribute"}
    example: ClassVar[dict[str, Any]] = {"taus": [500]}
    mixes_predictions: ClassVar[bool] = True

    @property
    def final_rule(self) -> str:  # type: ignore[override]
        moves = sum(1 for tau in self.taus if tau >= 0)
        if self.switch_attribute is None:
            return f"the last value of the cycle: (requested + {moves}) mod k"
        return f"the last value of the cycle: {self.switch_attribute!r} moved {moves} places, the other attributes kept"

    @staticmethod
    def cycle_length(params: CyclicParams | SwitchingParams, model: Denoiser) -> int:
        """k: the number of values the cycle (or a switch) goes through: the model's, or the named axis's."""
        axes = model.capabilities.attribute_axes
        if params.switch_attribute is None or axes is None:
            return model.num_attributes
        return axes.sizes[axes.axis(params.switch_attribute)]

    @classmethod
    def check_context(cls, params: CyclicParams, context: MethodContext, where: str) -> None:
        AttributeSwitching.check_context(params, context, where)  # the same switch_attribute rules
        k = cls.cycle_length(params, context.model)
        if not isinstance(params.taus, str) and len(params.taus) != k - 1:
            axis = "" if params.switch_attribute is None else f" of {params.switch_attribute!r}"
            raise FairbenchError(
                f"{where}.taus must list k - 1 = {k - 1} transition points for the {k} values{axis}, got {len(params.taus)}"
            )
        if not params.between_steps and params.taus not in BETWEEN_STEPS_SEARCHES:
            raise FairbenchError(f"{where}.between_steps = false applies only to the searches "
                                 f"{', '.join(BETWEEN_STEPS_SEARCHES)} (taus = {params.taus!r}); leave it out")
        if context.own_sampler:  # a step between points mixes two predictions: the shared loop's `predict`
            if isinstance(params.taus, str) and params.taus in BETWEEN_STEPS_SEARCHES and params.between_steps:
                raise FairbenchError(f"{where}: this model samples through its own pipeline, which cannot mix the two noise "
                                     f"predictions of a step between points; set between_steps = false")
            continuous = [tau for tau in ([] if isinstance(params.taus, str) else params.taus) if isinstance(tau, float) and tau > 1]
            if continuous:
                raise FairbenchError(f"{where}.taus: this model samples through its own pipeline, which cannot mix the two noise "
                                     f"predictions of a step between points; give training timesteps (integers), not {continuous}")

    @classmethod
    def build(cls, params: CyclicParams, context: MethodContext) -> "CyclicSwitching":
        model = context.model
        target = None
        if params.switch_attribute is not None:
            axes = model.capabilities.attribute_axes
            target = axes.switch_target(axes.axis(params.switch_attribute))
        if isinstance(params.taus, str):
            if context.search_points is None:
                raise FairbenchError(f"taus = {params.taus!r} needs a search, which this run does not provide")
            cycle = target or tuple((a + 1) % model.num_attributes for a in range(model.num_attributes))
            options = {} if params.between_steps else {"between_steps": False}
            taus = tuple(context.search_points(params.taus, params.search_batch_size, cycle, **options))
        else:
            taus = tuple(resolve_point(tau, model.num_train_timesteps) for tau in params.taus)
            if any(a < b for a, b in zip(taus, taus[1:])):
                raise FairbenchError(f"method.taus must be in descending order (tau_1 >= tau_2 >= ...), got {list(taus)}")
        return cls(**vars(params) | {"taus": taus}, target=target)

    @classmethod
    def recorded(cls, params: CyclicParams) -> dict[str, Any]:
        # The search's batch size and extent change the result only when the points are searched.
        out = super().recorded(params)
        if isinstance(params.taus, str):
            out["search_batch_size"] = params.search_batch_size
        else:
            out.pop("search_batch_size", None)
            out.pop("between_steps", None)
        return out

    @classmethod
    def check_model(cls, params: CyclicParams, num_train_timesteps: int, where: str) -> None:
        if not isinstance(params.taus, str):
            taus = [resolve_point(tau, num_train_timesteps) for tau in params.taus]
            if any(a < b for a, b in zip(taus, taus[1:])):
                raise FairbenchError(f"{where}.taus must be in descending order (tau_1 >= tau_2 >= ...), got {taus}")

    def visiting(self, timesteps: Sequence[int]) -> "CyclicSwitching":
        if not any(isinstance(tau, float) for tau in self.taus):
            return self  # integer points need only the timestep itself
        return dataclasses.replace(self, timesteps=tuple(int(t) for t in timesteps))

    def past(self, t: int) -> list[float]:
        """``f_i(tau_j)`` for every point at the visited step with timestep `t` (class docstring): 1 or 0
        for an integer point (``t <= tau``), the fraction of the step past a continuous one."""
        fractions = []
        for tau in self.taus:
            if not isinstance(tau, float):
                fractions.append(1.0 if t <= tau else 0.0)
                continue
            if self.timesteps is None or t not in self.timesteps:
                raise FairbenchError(f"cyclic_switching at the continuous point {tau} needs the visited timesteps "
                                     f"(the sampler gives them through `visiting`); timestep {t} is not among them")
            i = self.timesteps.index(t)
            below = self.timesteps[i + 1] if i + 1 < len(self.timesteps) else -1
            fractions.append(min(max((tau - below) / (t - below), 0.0), 1.0))
        return fractions

    def moved(self, requested: torch.Tensor, k: int, moves: int) -> torch.Tensor:
        """The value `moves` places along the cycle from each request."""
        value = requested
        for _ in range(moves):
            value = derangement(value, k, self.target)
        return value

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        past = self.past(t)
        if all(f in (0.0, 1.0) for f in past):  # one stage: the one-hot condition, as Algorithm 1
            return one_hot(self.moved(requested, k, sum(1 for f in past if f == 1.0)), k)
        bounds = [1.0] + past + [0.0]  # stage j of the cycle (k - 1 points: k stages, k the cycle's length)
        return sum((bounds[j] - bounds[j + 1]) * one_hot(self.moved(requested, k, j), k, torch.float64)
                   for j in range(len(bounds) - 1))

    def final(self, requested: torch.Tensor, k: int) -> torch.Tensor:
        return self.moved(requested, k, sum(1 for tau in self.taus if tau >= 0))

    def conditional_prefix(self, timesteps: list[int]) -> int:
        bound = self.visiting(timesteps)
        return next((i for i, t in enumerate(timesteps) if any(f > 0.0 for f in bound.past(t))), len(timesteps))

    def params(self) -> dict[str, Any]:
        return super().params() | {"taus": list(self.taus)}

    def run_metrics(self) -> dict[str, Any]:
        return {"taus": list(self.taus)}


@dataclass(frozen=True)
class MixingParams:
    weight: float = 0.5  # weight of the next value's embedding, in [0, 1]

    def validate(self, where: str) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise FairbenchError(f"{where}.weight must be in [0, 1], got {self.weight}")


@dataclass(frozen=True)
class EmbeddingMixing(MixingParams, Method):
    """One condition for all steps: the interpolated embedding ``(1 - w) E[s0] + w E[s1]``."""

    name: ClassVar[str] = "embedding_mixing"
    Params: ClassVar[type] = MixingParams
    sweepable: ClassVar[tuple[str, ...]] = ("weight",)
    example: ClassVar[dict[str, Any]] = {"weight": 0.5}

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        return (1.0 - self.weight) * one_hot(requested, k) + self.weight * one_hot(derangement(requested, k), k)


@dataclass(frozen=True)
class GuidanceParams:
    scale: float = 1.0  # guidance strength w >= 0; 0 is the unguided sampler
    # "uniform": push the posterior toward uniform; "unconditional": remove the request's
    # log-probability (Bayes' rule), which at scale 1 estimates the unconditional model
    target: Literal["uniform", "unconditional"] = "uniform"

    def validate(self, where: str) -> None:
        if self.scale < 0:
            raise FairbenchError(f"{where}.scale must be non-negative, got {self.scale}")


@dataclass(frozen=True)
class ClassifierGuidance(GuidanceParams, Method):
    """Condition on the request and correct the noise prediction with a noise-aware classifier.

    ``target = "uniform"`` pushes the classifier's posterior toward uniform:
    ``eps~ = eps - w sqrt(1 - abar_t) grad_x sum_a (1/k) log p_phi(a | x_t, t)``
    (Dhariwal & Nichol 2021 guidance, with the uniform distribution as the target).

    ``target = "unconditional"`` takes the request's log-probability out:
    ``eps~ = eps + w sqrt(1 - abar_t) grad_x log p_phi(s | x_t, t)`` with ``s`` the request.
    Since ``eps = -sqrt(1 - abar_t) grad log p(x_t | s)`` and, by Bayes' rule,
    ``grad log p(x_t) = grad log p(x_t | s) - grad log p(s | x_t)``, at ``w = 1`` this is the
    unconditional noise prediction (exactly, with the exact posterior), so sampling is fair
    without a null class; ``0 < w < 1`` interpolates. It is guidance with scale ``-w`` on the
    request's log-probability.
    """

    classifier: GuidanceClassifier | None = field(default=None, compare=False, repr=False)
    name: ClassVar[str] = "classifier_guidance"
    Params: ClassVar[type] = GuidanceParams
    sweepable: ClassVar[tuple[str, ...]] = ("scale",)
    requires: ClassVar[dict[Capability, str | None]] = {"guidance_classifier": None}
    example: ClassVar[dict[str, Any]] = {"scale": 2.0}

    @classmethod
    def build(cls, params: GuidanceParams, context: MethodContext) -> "ClassifierGuidance":
        return cls(**vars(params), classifier=context.guidance)

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        return one_hot(requested, k)

    def correct(self, eps: torch.Tensor, x: torch.Tensor, t: int, abar_t: float, requested: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise FairbenchError("classifier_guidance needs a guidance classifier for this model")
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_prob = self.classifier.log_prob(x_in, t)
            if self.target == "uniform":
                objective = log_prob.mean(dim=1).sum()
            else:
                objective = -log_prob.gather(1, requested.to(log_prob.device).long()[:, None]).sum()
            (grad,) = torch.autograd.grad(objective, x_in)
        return eps - self.scale * math.sqrt(1.0 - abar_t) * grad.to(eps.dtype)


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


@dataclass(frozen=True)
class NullPrefixParams:
    """``tau``: a training timestep in [-1, T-1], or a fraction of T."""

    tau: int | float


@dataclass(frozen=True)
class NullPrefixSwitching(NullPrefixParams, Method):
    """The null condition while ``t > tau``, the requested value while ``t <= tau``.

    Coarse structure comes from the unconditional model, details from the request (the
    attribute-switching schedule of Choi et al. with the null condition as ``s0``). The null condition is
    column k of the condition mixture: the null class of a UNet trained with one
    (``[model.unet] null_class = true``), the neutral prompt of a text-to-image model, the
    exact unconditional model of the analytic one. ``tau = -1`` is unconditional sampling
    (null throughout), ``tau = T-1`` conditional sampling; no extra model evaluation. The
    tau searches find the balance point of ``s0 -> s1`` switching, not of this schedule,
    so tau is given as a number.
    """

    name: ClassVar[str] = "null_prefix_switching"
    Params: ClassVar[type] = NullPrefixParams
    sweepable: ClassVar[tuple[str, ...]] = ("tau",)
    requires: ClassVar[dict[Capability, str | None]] = {"null_condition": None}
    example: ClassVar[dict[str, Any]] = {"tau": 500}

    @classmethod
    def build(cls, params: NullPrefixParams, context: MethodContext) -> "NullPrefixSwitching":
        return cls(**vars(params) | {"tau": resolve_tau(params.tau, context.model.num_train_timesteps)})

    @classmethod
    def check_model(cls, params: NullPrefixParams, num_train_timesteps: int, where: str) -> None:
        resolve_tau(params.tau, num_train_timesteps)

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        value = requested if t <= self.tau else torch.full_like(requested, k)
        return one_hot(value, k + 1)


@dataclass(frozen=True)
class SemanticParams:
    """SEGA's edit parameters (Brack et al. 2023); defaults are SEGA's published example settings."""

    edit_scale: float = 4.0  # s_e >= 0; 0 is conditional sampling
    warmup_steps: int = 10  # visited steps before the edit is applied (its momentum builds from step 0)
    threshold: float = 0.95  # lambda in [0, 1): only entries with |edit| at or above this quantile are kept
    momentum_scale: float = 0.3  # s_m >= 0
    momentum_beta: float = 0.6  # beta_m in [0, 1)

    def validate(self, where: str) -> None:
        if self.edit_scale < 0:
            raise FairbenchError(f"{where}.edit_scale must be non-negative, got {self.edit_scale}")
        if self.warmup_steps < 0:
            raise FairbenchError(f"{where}.warmup_steps must be non-negative, got {self.warmup_steps}")
        if not 0.0 <= self.threshold < 1.0:
            raise FairbenchError(f"{where}.threshold must be in [0, 1), got {self.threshold}")
        if self.momentum_scale < 0:
            raise FairbenchError(f"{where}.momentum_scale must be non-negative, got {self.momentum_scale}")
        if not 0.0 <= self.momentum_beta < 1.0:
            raise FairbenchError(f"{where}.momentum_beta must be in [0, 1), got {self.momentum_beta}")


@dataclass(frozen=True)
class SemanticGuidance(SemanticParams, Method):
    """Fair Diffusion (Friedrich et al. 2023): semantic guidance toward a value drawn per sample.

    Sample i keeps its request ``a`` as the condition and draws a value ``b`` uniformly from
    the k values (seed ``(seed, i)``, the stream `random_condition` draws from, so both draw
    the same value). At visited step ``i`` the SEGA edit (Brack et al. 2023) toward ``b``,
    relative to the request, is

        psi_i = s_e (eps(x_t, t, b) - eps(x_t, t, a)),
        gamma_i = psi_i * [|psi_i| >= q_lambda(|psi_i|)] + s_m nu_i,
        nu_{i+1} = beta_m nu_i + (1 - beta_m) gamma_i,     nu_0 = 0,

    with ``q_lambda`` the lambda-quantile of ``|psi|`` per sample and channel (per sample
    for vectors), and the prediction becomes ``eps + gamma_i`` from step ``warmup_steps``
    on (the momentum builds during the warm-up). ``psi`` is zero when ``b = a``. Fair
    Diffusion adds two SEGA concepts, toward ``b`` and away from ``a``, each relative to the
    unconditional prediction, with equal scales: their sum is ``eps_b - eps_a``; fairbench
    thresholds that sum once instead of each concept separately. On a CFG pipeline ``eps``
    is the guided prediction, so ``psi = s_e g (text_b - text_a)``: s_e here is SEGA's
    scale divided by the CFG scale ``g``. Cost: one extra model evaluation per sample and
    step (``eps`` under ``b``; under CFG a UNet call on both halves). ``edit_scale = 0`` is
    conditional sampling.

    The sampler is given the code ``a + k b`` per sample (`assign`); `weights` and `final`
    read ``a`` and ``b`` back from it.
    """

    model: Denoiser | None = field(default=None, compare=False, repr=False)
    # The running trajectory's step count and momentum (reset when t stops decreasing).
    trajectory: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    name: ClassVar[str] = "semantic_guidance"
    Params: ClassVar[type] = SemanticParams
    sweepable: ClassVar[tuple[str, ...]] = ("edit_scale",)
    example: ClassVar[dict[str, Any]] = {"edit_scale": 4.0, "warmup_steps": 1}
    final_rule: ClassVar[str] = "the drawn value the edit pushes toward (the request when edit_scale = 0)"
    correction_nfe: ClassVar[int] = 1

    @classmethod
    def build(cls, params: SemanticParams, context: MethodContext) -> "SemanticGuidance":
        return cls(**vars(params), model=context.model)

    def assign(self, requested: torch.Tensor, k: int, seed: int, indices: Sequence[int]) -> torch.Tensor:
        return requested + k * RandomCondition().assign(requested, k, seed, indices)

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        return one_hot(requested % k, k)

    def final(self, requested: torch.Tensor, k: int) -> torch.Tensor:
        return requested // k if self.edit_scale > 0 else requested % k

    def correct(self, eps: torch.Tensor, x: torch.Tensor, t: int, abar_t: float, requested: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            raise FairbenchError("semantic_guidance needs the run's model")
        k = self.model.num_attributes
        request, drawn = requested % k, requested // k
        state = self.trajectory
        if "t" not in state or t >= state["t"]:  # a new trajectory starts at the largest timestep
            state.clear()
            state.update(step=0, momentum=torch.zeros_like(eps))
        with torch.no_grad():
            edit = self.edit_scale * (self.model.eps(x, t, one_hot(drawn, k)) - eps)
        edit = torch.where((drawn != request).view(-1, *[1] * (eps.ndim - 1)).to(edit.device), edit, torch.zeros_like(edit))
        flat = edit.flatten(start_dim=min(2, edit.ndim - 1))  # [B, C, pixels] for images, [B, d] for vectors
        magnitude = flat.abs() if flat.dtype in (torch.float32, torch.float64) else flat.abs().float()
        cut = torch.quantile(magnitude, self.threshold, dim=-1, keepdim=True)
        edit = torch.where(magnitude >= cut, flat, torch.zeros_like(flat)).view_as(edit)
        edit = edit + self.momentum_scale * state["momentum"]
        state["momentum"] = self.momentum_beta * state["momentum"] + (1.0 - self.momentum_beta) * edit
        step, state["step"], state["t"] = state["step"], state["step"] + 1, t
        return eps + edit if step >= self.warmup_steps else eps


@dataclass(frozen=True)
class QueuingParams(NullPrefixParams):
    """``tau``: the switch from the base to the attribute prompt; ``amplification``: attention factor c."""

    amplification: float = 1.0  # c > 0 on the attribute tokens' cross-attention after the switch; 1 is none

    def validate(self, where: str) -> None:
        if not (self.amplification > 0 and math.isfinite(self.amplification)):
            raise FairbenchError(f"{where}.amplification must be a positive number, got {self.amplification}")


@dataclass(frozen=True)
class PromptQueuing(QueuingParams, NullPrefixSwitching):
    """FairQueue's prompt queuing (Teo et al., NeurIPS 2024), with its attention amplification.

    The base prompt (the model's neutral prompt) while ``t > tau``, the attribute prompt of
    the request while ``t <= tau``; after the switch the cross-attention probabilities of the
    attribute tokens (those of the attribute prompt that the base prompt lacks) are
    multiplied by ``amplification`` (c) in the conditional half of every cross-attention
    layer (`fairbench.models.text_to_image.attention`). FairQueue queues a base prompt before
    ITI-GEN's learned inclusive prompt and amplifies the inclusive tokens; fairbench's
    attribute prompts are plain text, so its attribute tokens are words.

    How it relates to the other switches: attribute switching goes from one attribute value
    to another (``s0 -> s1``, the request's details come from ``s1``); null-prefix switching
    and prompt queuing go from no attribute to the request. With ``amplification = 1`` prompt
    queuing *is* null-prefix switching on a text-to-image model (the same schedule, bitwise);
    the amplification is what FairQueue adds. Amplification needs prompt tokens, so only
    text-to-image models take ``amplification != 1``, and only through the pipeline's own
    call (the runner's path for text-to-image). No extra model evaluation.
    """

    name: ClassVar[str] = "prompt_queuing"
    Params: ClassVar[type] = QueuingParams
    sweepable: ClassVar[tuple[str, ...]] = ("tau", "amplification")
    requires: ClassVar[dict[Capability, str | None]] = {"null_condition": None, "prompt_tokens": "amplification"}
    example: ClassVar[dict[str, Any]] = {"tau": 500}

    def attention_amplification(self) -> float:
        return self.amplification


@dataclass(frozen=True)
class DistributionParams:
    """``scale``: gamma, the step on the h-space features; ``balance_target``: the target distribution."""

    scale: float = 1.0  # gamma >= 0; 0 is unconditional sampling
    balance_target: list[float] | None = None  # one probability per attribute value; None: uniform

    def validate(self, where: str) -> None:
        if not (self.scale >= 0 and math.isfinite(self.scale)):
            raise FairbenchError(f"{where}.scale must be a non-negative number, got {self.scale}")
        target = self.balance_target
        if target is not None and (len(target) < 2 or any(p < 0 for p in target) or abs(sum(target) - 1.0) > 1e-6):
            raise FairbenchError(f"{where}.balance_target must be at least 2 non-negative numbers summing to 1, got {list(target)}")


@dataclass(frozen=True)
class DistributionGuidance(DistributionParams, Method):
    """Distribution guidance (Parihar et al., CVPR 2024, "Balancing Act"): the unconditional model,
    with each batch's predicted attribute distribution pushed toward a target.

    At every step the model's mid-block features ``h_i`` of the B samples of the batch give the
    batch's predicted distribution through the h-space classifier ``p_psi``,
    ``p_hat(a) = (1/B) sum_i p_psi(a | h_i, t)``; the loss is the cross-entropy from the target
    ``p_ref`` (uniform, or `balance_target`), ``L = -sum_a p_ref(a) log p_hat(a)``, and the
    features are replaced by ``h_i - gamma B grad_{h_i} L`` before the rest of the UNet predicts
    the noise (the paper's guidance on ``h_t``; the factor B, fairbench's, keeps the push on one
    sample independent of the batch size, since ``grad_{h_i} L`` is O(1/B)). The condition is
    the null condition (the unconditional model); requests are ignored.

    Batch dependence, by design: a sample's path depends on the other samples of its batch, so
    results depend on the batch size and composition (`batch_dependent`: the runner records
    the batch size in the spec). Cost: the edited evaluation is a second model evaluation per
    sample and step (``correction_nfe = 1``; the first one gives ``h_t``).
    """

    model: Denoiser | None = field(default=None, compare=False, repr=False)
    name: ClassVar[str] = "distribution_guidance"
    Params: ClassVar[type] = DistributionParams
    sweepable: ClassVar[tuple[str, ...]] = ("scale",)
    requires: ClassVar[dict[Capability, str | None]] = {"null_condition": None, "hspace": None}
    example: ClassVar[dict[str, Any]] = {"scale": 1.0}
    final_rule: ClassVar[str] = "the request (the sampler ignores it: the batch, not the sample, is guided)"
    correction_nfe: ClassVar[int] = 1
    batch_dependent: ClassVar[bool] = True

    @classmethod
    def check_context(cls, params: DistributionParams, context: MethodContext, where: str) -> None:
        k = context.model.num_attributes
        if params.balance_target is not None and len(params.balance_target) != k:
            raise FairbenchError(
                f"{where}.balance_target must give {k} probabilities (one per value of {list(context.model.attribute_names)}), "
                f"got {list(params.balance_target)}"
            )

    @classmethod
    def build(cls, params: DistributionParams, context: MethodContext) -> "DistributionGuidance":
        return cls(**vars(params), model=context.model)

    def weights(self, t: int, requested: torch.Tensor, k: int) -> torch.Tensor:
        return one_hot(torch.full_like(requested, k), k + 1)

    def target(self, k: int, like: torch.Tensor) -> torch.Tensor:
        if self.balance_target is None:
            return torch.full((k,), 1.0 / k, dtype=like.dtype, device=like.device)
        return torch.tensor(self.balance_target, dtype=like.dtype, device=like.device)

    def correct(self, eps: torch.Tensor, x: torch.Tensor, t: int, abar_t: float, requested: torch.Tensor) -> torch.Tensor:
        if self.model is None or self.model.capabilities.hspace is None:
            raise FairbenchError("distribution_guidance needs the run's model and its h-space")
        hspace, k = self.model.capabilities.hspace, self.model.num_attributes
        with torch.enable_grad():
            h = hspace.features(x, t).detach().requires_grad_(True)
            log_prob = hspace.log_prob(h, t)
            batch = torch.logsumexp(log_prob, dim=0) - math.log(len(h))  # log p_hat, [k]
            loss = -(self.target(k, batch) * batch).sum() * len(h)
            (grad,) = torch.autograd.grad(loss, h)
        return hspace.edited_eps(self.model.eps, x, t, self.weights(t, requested, k), -self.scale * grad)


METHODS: dict[str, type[Method]] = {
    "conditional": Conditional,
    "attribute_switching": AttributeSwitching,
    "cyclic_switching": CyclicSwitching,
    "embedding_mixing": EmbeddingMixing,
    "classifier_guidance": ClassifierGuidance,
    "random_condition": RandomCondition,
    "null_prefix_switching": NullPrefixSwitching,
    "semantic_guidance": SemanticGuidance,
    "prompt_queuing": PromptQueuing,
    "distribution_guidance": DistributionGuidance,
}


def method_class(name: str) -> type[Method]:
    return lookup(METHODS, name, "method")


def assigned(method: Method, requested: torch.Tensor, k: int, *, seed: int, indices: Sequence[int]) -> torch.Tensor:
    """The values the sampler conditions on for these samples: the request, unless the method assigns its own."""
    return requested if method.assign is None else method.assign(requested, k, seed, indices)


def single_switch_advice(method_class: type[Method], params: Any, model: Denoiser) -> str | None:
    """The one warning line for attribute switching on an attribute (or axis) of k >= 3 values, else None.

    One switch ends request a as a mixture of two values, ``c_1 mu_a + c_2 mu_(a+1)``; for
    k >= 3 the k requests coincide only where ``c_1 = c_2 = 0`` (docs/method.md), so no tau is fair.
    """
    if method_class is not AttributeSwitching:
        return None
    axis = params.switch_attribute
    k = CyclicSwitching.cycle_length(params, model)
    if k < 3:
        return None
    what = "the sensitive attribute" if axis is None else f"{axis!r}"
    return (f"fairbench: warning: attribute_switching switches {what} ({k} values) once, and with 3 or more values no "
            f"single switch is fair; cyclic_switching moves through every value (docs/method.md)")


def resolve_point(value: int | float, num_train_timesteps: int) -> int | float:
    """A transition point of cyclic switching: an integer or a fraction in ``[0, 1]`` as `resolve_tau`;
    a float above 1 is a continuous point in ``(1, T-1]``, kept as given (it may fall between visited steps)."""
    T = num_train_timesteps
    if isinstance(value, float) and value > 1.0:
        if not (math.isfinite(value) and value <= T - 1):
            raise FairbenchError(f"tau {value} is out of range [-1, {T - 1}]")
        return value
    return resolve_tau(value, T)


def resolve_tau(value: int | float, num_train_timesteps: int) -> int:
    """An integer tau in ``[-1, T-1]``; a float in ``[0, 1]`` is read as the fraction ``tau / T``."""
    T = num_train_timesteps
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FairbenchError(f"tau must be an integer in [-1, {T - 1}] or a fraction in [0, 1] (a searched tau is resolved "
                             f"by its search); got {value!r}")
    if isinstance(value, float):
        if not (0.0 <= value <= 1.0) or not math.isfinite(value):
            raise FairbenchError(f"tau fraction must be in [0, 1], got {value!r}")
        return min(int(round(value * T)), T - 1)
    if not -1 <= value <= T - 1:
        raise FairbenchError(f"tau {value} is out of range [-1, {T - 1}]")
    return int(value)
