"""What a model is to fairbench: a conditional noise predictor over a mixture of conditions.

Methods never touch a model's internals. They hand it, per sample, a weight vector over the
k attribute values (one-hot for plain conditioning, two non-zero entries for embedding
mixing); the model turns that into its own condition (a class embedding, a prompt
embedding, a class mean) and predicts the noise.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import FairbenchError, suggest


Capability = Literal["null_condition", "prompt_tokens", "attribute_axes", "guidance_classifier", "hspace"]

# What each capability is, and how a run gets it: a method that needs one the run lacks is
# refused with "needs <what>, and this model has none[: <how>]" (`fairbench.methods.check_method`).
CAPABILITIES: dict[Capability, tuple[str, str]] = {
    "null_condition": ("a null condition", "train the UNet with [model.unet] null_class = true (a UNet with k + 1 "
                       "class embeddings), or give a text-to-image model a neutral_prompt"),
    "prompt_tokens": ("prompt tokens to amplify (a text-to-image model)", ""),
    "attribute_axes": ("a sensitive attribute with several axes", ""),
    "guidance_classifier": ("a guidance classifier", ""),
    "hspace": ("an h-space attribute classifier on the generator's mid-block features",
               "use model kind 'unconditional', which trains one ([model.hspace])"),
}


@dataclass(frozen=True)
class Capabilities:
    """What a model offers beyond ``eps`` over the k attribute values, declared once per model.

    ``null_condition``: condition mixtures may have a column k, the null (neutral) condition.
    ``prompt_tokens``: the model has ``token_scale(weights, factor)``, the cross-attention
    factors that amplify the attribute tokens of a prompt (text-to-image).
    ``attribute_axes``: the sensitive attribute is a product of several (`AttributeAxes`);
    None for one attribute. ``hspace``: the model's bottleneck as distribution guidance uses it
    (`HSpace`); None where it has none. (A guidance classifier is the run's, not the model's: `Setup.guidance`.)
    """

    null_condition: bool = False
    prompt_tokens: bool = False
    attribute_axes: "AttributeAxes | None" = None
    hspace: "HSpace | None" = None  # the bottleneck distribution guidance edits (`HSpace`)

    def offered(self) -> frozenset[Capability]:
        """The capabilities this model has, by name (a guidance classifier is not the model's)."""
        named = {"null_condition": self.null_condition, "prompt_tokens": self.prompt_tokens,
                 "attribute_axes": self.attribute_axes is not None, "hspace": self.hspace is not None}
        return frozenset(name for name, present in named.items() if present)


@runtime_checkable
class Denoiser(Protocol):
    """A conditional noise-prediction model ``eps(x_t, t, c)``."""

    attribute_names: tuple[str, ...]
    capabilities: Capabilities
    sample_shape: tuple[int, ...]
    dtype: torch.dtype
    num_train_timesteps: int  # T: training timesteps are 0..T-1, tau lives in [-1, T-1]

    @property
    def num_attributes(self) -> int: ...

    def scheduler_config(self) -> dict[str, Any]:
        """The training noise schedule, as keyword arguments of `fairbench.schedulers.make_scheduler`."""
        ...

    def eps(self, x: torch.Tensor, t: int, weights: torch.Tensor) -> torch.Tensor:
        """Noise prediction at training timestep `t` under condition ``weights @ E`` ([B, k])."""
        ...


class GuidanceClassifier(Protocol):
    """A noise-aware attribute classifier: ``log p(s | x_t, t)`` for each of the k values."""

    def log_prob(self, x: torch.Tensor, t: int) -> torch.Tensor:  # [B, k]
        ...


EpsFunction = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class HSpace:
    """A model's bottleneck ("h-space") as distribution guidance uses it, declared in the
    model's `Capabilities` (``hspace``).

    - ``features(x, t)``: ``h_t`` of the model's last evaluation at ``(x, t)`` (detached);
    - ``log_prob(h, t)``: ``log p_psi(a | h_t, t)``, ``[B, k]``, differentiable in ``h``;
    - ``edited_eps(eps, x, t, weights, delta)``: ``eps(x, t, weights)`` evaluated through the
      given callable (the run's model, so that the evaluation is counted) with ``h_t``
      replaced by ``h_t + delta``.
    """

    features: Callable[[torch.Tensor, int], torch.Tensor]
    log_prob: Callable[[torch.Tensor, int], torch.Tensor]
    edited_eps: Callable[[EpsFunction, torch.Tensor, int, torch.Tensor, torch.Tensor], torch.Tensor]


def one_hot(labels: torch.Tensor, k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.long(), k).to(dtype)


def as_labels(weights: torch.Tensor) -> torch.Tensor | None:
    """The attribute index of each row when every row is one-hot, else None."""
    labels = weights.argmax(dim=1)
    if torch.equal(weights, one_hot(labels, weights.shape[1], weights.dtype)):
        return labels
    return None


@dataclass(frozen=True)
class AttributeAxes:
    """A sensitive attribute that is the product of several (gender x age): its axes.

    Axis j is named ``names[j]`` and has values ``values[j]`` (``k_j`` of them). The tuple
    ``(a_1, ..., a_m)`` sits at the flat index ``sum_j a_j prod_{l > j} k_l`` (row-major, the
    last axis fastest), so a model's k = prod_j k_j conditions enumerate the product and every
    method runs on the flat index unchanged. A model with one sensitive attribute has no axes
    (``Capabilities.attribute_axes = None``).
    """

    names: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.values):
            raise ValueError("one tuple of values per axis is needed")

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.values)

    @property
    def size(self) -> int:
        """k: the number of tuples, the model's number of attribute values."""
        return int(np.prod(self.sizes))

    def flat_names(self) -> tuple[str, ...]:
        """The name of each flat value: its axis values joined by "/" ("female/20-29")."""
        return tuple("/".join(combo) for combo in itertools.product(*self.values))

    def axis(self, name: str, where: str = "switch_attribute") -> int:
        """The position of the axis `name`; an unknown name is refused with the valid ones."""
        if name not in self.names:
            raise FairbenchError(
                f"{where} = {name!r} is not an axis of the sensitive attribute.{suggest(name, list(self.names))}"
            )
        return self.names.index(name)

    def decode(self, flat) -> np.ndarray:
        """``[N, m]`` axis codes of flat indices ``[N]``."""
        return np.stack(np.unravel_index(np.asarray(flat, dtype=np.int64), self.sizes), axis=-1)

    def encode(self, codes) -> np.ndarray:
        """Flat indices ``[N]`` of axis codes ``[N, m]``."""
        codes = np.asarray(codes, dtype=np.int64)
        return np.ravel_multi_index(tuple(codes[..., j] for j in range(len(self.names))), self.sizes)

    def switch_target(self, axis: int) -> tuple[int, ...]:
        """``target[flat(a)] = flat(a')`` with ``a'_axis = (a_axis + 1) mod k_axis`` and every other
        axis kept: the switch of one attribute while the others stay fixed."""
        codes = self.decode(np.arange(self.size))
        codes[:, axis] = (codes[:, axis] + 1) % self.sizes[axis]
        return tuple(int(i) for i in self.encode(codes))

    def marginal(self, p, axis: int) -> np.ndarray:
        """The distribution over axis `axis`'s values of a distribution `p` over the flat values."""
        table = np.asarray(p, dtype=np.float64).reshape(self.sizes)
        others = tuple(j for j in range(len(self.names)) if j != axis)
        return table.sum(axis=others)


class ModelKind:
    """What every ``[model]`` kind's spec declares; a kind's frozen spec dataclass extends it and
    is registered with `fairbench.models.register_model_kind`."""

    clip_sample_default: ClassVar[bool] = False  # samples live in [-1, 1]: clamp x0 where the scheduler can
    takes_dataset: ClassVar[bool] = False  # a [dataset] to train on and to measure against
    trains: ClassVar[bool] = False  # has networks `fairbench train` trains (`prepare`)

    def known_train_timesteps(self) -> int | None:
        """T when the spec alone fixes it, so that tau is checked before the model is built; else None."""
        return None

    def build(self, *, device: str = "cpu", dataset: dict | None = None) -> "Setup":
        raise NotImplementedError

    def prepare(self, *, device: str = "cpu", dataset: dict | None = None) -> Any:
        """Load or train (cached) the networks of a kind that `trains`."""
        raise NotImplementedError


@dataclass
class RealData:
    """Real samples for reference metrics (FID against real data, train-synthetic-test-real)."""

    samples: torch.Tensor  # [N, *sample_shape], same space as the generated samples
    sensitive: torch.Tensor  # [N] sensitive attribute codes
    target: torch.Tensor | None = None  # [N] target attribute codes (utility), if any
    target_values: tuple[str, ...] = ()
    train: "RealData | None" = None  # the real training split: reference utility and target gap


@dataclass
class Setup:
    """Everything a benchmark needs from a model kind, built once per run."""

    model: Denoiser
    guidance: GuidanceClassifier | None = None
    # Features the epsilon estimator classifies (raw values, or a judge's features for images).
    features: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda x: x.reshape(len(x), -1))
    feature_name: str = "raw"
    # Extra exact metrics for a run, e.g. the closed-form TV on the Gaussian model.
    exact_metrics: Callable[..., dict[str, Any]] | None = None
    # A kind with its own sampling path (text-to-image pipelines) provides it here, with the
    # signature of `fairbench.sampling.sample`; None means the shared loop.
    sample: Callable[..., Any] | None = None
    # Image kinds: real reference data, and the judge (trained on real data, never the
    # guidance classifier): samples -> log-probabilities over the k sensitive values.
    real: RealData | None = None
    judge: Callable[[torch.Tensor], torch.Tensor] | None = None
    # samples -> log-probabilities over the target attribute (labels for the utility metrics).
    target_judge: Callable[[torch.Tensor], torch.Tensor] | None = None
    # samples -> per-sample attribute probabilities [B, k], balanced by the direct tau search
    # (the judge's probabilities; None: the search balances the samples' raw values).
    balance_features: Callable[[torch.Tensor], torch.Tensor] | None = None
    # The shared loop's output -> samples, for kinds whose loop runs in a latent space (None: identity).
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
