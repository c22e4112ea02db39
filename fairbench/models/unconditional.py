"""``kind = "unconditional"``: an unconditional generator, conditioned through a noise-aware classifier.

Most public diffusion models are unconditional. fairbench runs its class-conditional methods
on them by Bayes' rule: with ``eps(x, t) = -sqrt(1 - abar_t) grad log p(x_t)`` the unconditional
noise prediction and ``p_phi(a | x_t, t)`` a noise-aware attribute classifier (the guidance
classifier fairbench trains), conditioning on value ``a`` is classifier guidance toward ``a``
(Dhariwal & Nichol 2021):

    eps(x, t, a) = eps(x, t) - w sqrt(1 - abar_t) grad_x log p_phi(a | x_t, t),

exact at ``w = 1`` with the exact posterior, since ``grad log p(x_t | a) = grad log p(x_t) +
grad log p(a | x_t)`` under a uniform prior. A condition mixture ``u`` ([B, k]) guides toward
``sum_a u_a log p_phi(a | x_t, t)``; column k of a mixture is the null condition (no guidance:
the unconditional model). So every method that only picks conditions (`conditional`,
`attribute_switching` with any tau search, `random_condition`, ...) runs unchanged on such a
model: switching conditions becomes switching the guidance target (guided switching).

The generator is a diffusers ``UNet2DModel``: one without class embeddings
(``condition = "none"``), or a class-conditional one used through its null class
(``condition = "null"``, the class k of a UNet trained with ``[model.unet] null_class = true``).

The h-space: distribution guidance (`fairbench.methods.DistributionGuidance`) edits the UNet's
mid-block output ``h_t`` (Parihar et al., CVPR 2024). A model offers this as the ``hspace``
of its `Capabilities` (an `HSpace` record): the bottleneck features of its last evaluation, an attribute classifier on
them (trained by `fairbench.train.cached_hspace`) and a way to evaluate the model with ``h_t``
replaced by ``h_t + delta``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from ..classifiers import HSpaceClassifier
from ..schedulers import make_scheduler
from ..errors import FairbenchError
from ..train import GuidanceTraining, HSpaceTraining, JudgeTraining, UNetTraining, cached_hspace
from . import register_model_kind
from .base import AttributeAxes, Capabilities, EpsFunction, GuidanceClassifier, HSpace, ModelKind, Setup
from .unet import UNetSpec, labelled_splits, unet_sample_shape

class GuidedDenoiser:
    """A `Denoiser` over an unconditional noise prediction and a noise-aware attribute classifier.

    ``eps(x, t, u) = eps_0(x, t) - w sqrt(1 - abar_t) grad_x sum_a u_a log p_phi(a | x_t, t)``
    for a condition mixture ``u`` over the k values; column k of ``u`` (the null condition)
    adds no guidance. ``w = guidance_scale``; ``w = 1`` is Bayes' rule (module docstring).
    """


    def __init__(
        self,
        unconditional: Callable[[torch.Tensor, int], torch.Tensor],
        classifier: GuidanceClassifier,
        *,
        guidance_scale: float,
        alphas_cumprod: torch.Tensor,
        attribute_names: tuple[str, ...],
        sample_shape: tuple[int, ...],
        dtype: torch.dtype,
        schedule: dict[str, Any],
        hspace: HSpace | None = None,
        attribute_axes: AttributeAxes | None = None,
    ):
        if len(attribute_names) < 2:
            raise FairbenchError(f"an unconditional model needs at least 2 attribute values, got {list(attribute_names)}")
        self.unconditional = unconditional
        self.classifier = classifier
        self.guidance_scale = float(guidance_scale)
        self.alphas_cumprod = alphas_cumprod.to(torch.float64)
        self.attribute_names = tuple(attribute_names)
        self.sample_shape = tuple(sample_shape)
        self.dtype = dtype
        self.schedule = dict(schedule)
        self.num_train_timesteps = int(schedule["num_train_timesteps"])
        # column k of a mixture (the null condition) is the unconditional model itself
        self.capabilities = Capabilities(null_condition=True, attribute_axes=attribute_axes, hspace=hspace)

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)

    def scheduler_config(self) -> dict[str, Any]:
        return dict(self.schedule)

    def eps(self, x: torch.Tensor, t: int, weights: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            eps = self.unconditional(x, t)
        mixture = weights[:, : self.num_attributes].to(x.device, torch.float64)
        if self.guidance_scale == 0.0 or not mixture.any():
            return eps
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_prob = self.classifier.log_prob(x_in, t)
            (grad,) = torch.autograd.grad((log_prob * mixture.to(log_prob.dtype)).sum(), x_in)
        abar = float(self.alphas_cumprod[int(t)])
        return eps - self.guidance_scale * math.sqrt(1.0 - abar) * grad.to(eps.dtype)


def gaussian_unconditional(model, *, guidance_scale: float = 1.0, classifier: GuidanceClassifier | None = None) -> GuidedDenoiser:
    """The analytic model's exact unconditional noise prediction (its null column) guided by
    `classifier` (default: the exact posterior). With the exact posterior and ``w = 1`` it equals
    the conditional model (Bayes' rule), the exact limit the tests check."""
    k = model.num_attributes
    null = torch.zeros(1, k + 1, dtype=torch.float64)
    null[0, k] = 1.0

    def unconditional(x: torch.Tensor, t: int) -> torch.Tensor:
        return model.eps(x, t, null.expand(len(x), -1))

    return GuidedDenoiser(
        unconditional, classifier or model.guidance_classifier(), guidance_scale=guidance_scale,
        alphas_cumprod=model.alphas_cumprod, attribute_names=model.attribute_names, sample_shape=model.sample_shape,
        dtype=model.dtype, schedule=model.scheduler_config(), hspace=model.capabilities.hspace,
        attribute_axes=model.capabilities.attribute_axes,
    )


# ---------------------------------------------------------------------------------------------
# The UNet's h-space.


class UNetHSpace:
    """The mid-block output of a ``UNet2DModel``: recorded at every forward, replaceable by ``h + delta``."""

    def __init__(self, unet, classifier: HSpaceClassifier | None):
        self.unet, self.classifier = unet, classifier
        self.last: tuple[int, torch.Tensor] | None = None
        self.delta: torch.Tensor | None = None
        unet.mid_block.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self.delta is not None:
            output = output + self.delta.to(output)
        self.last = output.detach()
        return output

    def features(self, x: torch.Tensor, t: int) -> torch.Tensor:
        if self.last is None or len(self.last) != len(x):
            raise FairbenchError("distribution guidance reads the h-space of the model's last evaluation, and there is none")
        return self.last

    def log_prob(self, h: torch.Tensor, t: int) -> torch.Tensor:
        parameter = next(self.classifier.parameters())
        timesteps = torch.full((len(h),), int(t), device=parameter.device)
        return torch.log_softmax(self.classifier(h.to(parameter.device, parameter.dtype), timesteps), dim=1).to(h.device)

    def edited_eps(self, eps: EpsFunction, x: torch.Tensor, t: int, weights: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        self.delta = delta
        try:
            return eps(x, t, weights)
        finally:
            self.delta = None

    def capability(self) -> HSpace | None:
        if self.classifier is None:
            return None
        return HSpace(features=self.features, log_prob=self.log_prob, edited_eps=self.edited_eps)


def unet_unconditional(unet, condition: Literal["null", "none"], k: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``eps_0(x, t)`` of a UNet: its null class k (``"null"``) or no class at all (``"none"``)."""

    def unconditional(x: torch.Tensor, t: int) -> torch.Tensor:
        timesteps = torch.full((len(x),), int(t), dtype=torch.long, device=x.device)
        labels = torch.full((len(x),), k, dtype=torch.long, device=x.device) if condition == "null" else None
        return unet(x, timesteps, class_labels=labels).sample

    return unconditional


def check_generator(unet, condition: str, k: int, where: str = "model") -> None:
    """One line where the UNet cannot give the unconditional prediction `condition` asks for."""
    classes = unet.config.num_class_embeds
    if condition == "null" and classes != k + 1:
        raise FairbenchError(
            f"{where}.condition = 'null' needs a UNet with a null class (k + 1 = {k + 1} class embeddings, "
            f"[model.unet] null_class = true); this one has {classes or 0}. A UNet without class embeddings takes condition = 'none'"
        )
    if condition == "none" and (classes or unet.class_embedding is not None):
        raise FairbenchError(
            f"{where}.condition = 'none' needs a UNet without class embeddings; this one has {classes} classes: "
            "use condition = 'null' (its null class) or model kind 'unet'"
        )


@dataclass(frozen=True)
class UnconditionalSpec(ModelKind):
    """``kind = "unconditional"``: the keys of ``kind = "unet"`` plus `condition`, `guidance_scale`
    and ``[model.hspace]`` (the h-space attribute classifier of distribution guidance).

    ``condition = "null"`` uses a class-conditional UNet through its null class (without
    `path`, the UNet ``[model.unet]`` describes, which must have ``null_class = true``; the
    digits generator fairbench ships is one); ``condition = "none"`` takes a UNet without
    class embeddings from `path`. The guidance classifier is the one ``kind = "unet"`` trains
    (``[model.guidance]``), so the two kinds share it and the judge.
    """

    clip_sample_default: ClassVar[bool] = True
    takes_dataset: ClassVar[bool] = True
    trains: ClassVar[bool] = True
    kind: Literal["unconditional"]
    condition: Literal["null", "none"] = "null"
    guidance_scale: float = 1.0  # w of the Bayes-rule guidance that conditions the model; 1 is Bayes' rule
    path: str | None = None
    attribute_names: list[str] | None = None
    unet: UNetTraining = field(default_factory=UNetTraining)
    judge: JudgeTraining = field(default_factory=JudgeTraining)
    guidance: GuidanceTraining = field(default_factory=GuidanceTraining)
    hspace: HSpaceTraining = field(default_factory=HSpaceTraining)

    def validate(self, where: str) -> None:
        if not (self.guidance_scale >= 0 and math.isfinite(self.guidance_scale)):
            raise FairbenchError(f"{where}.guidance_scale must be a non-negative number, got {self.guidance_scale}")
        if self.condition == "none" and self.path is None:
            raise FairbenchError(
                f"{where}.condition = 'none' needs model.path (a UNet2DModel without class embeddings); "
                "fairbench trains class-conditional UNets, used through their null class with condition = 'null'"
            )
        if self.condition == "null" and self.path is None and not self.unet.null_class:
            raise FairbenchError(f"{where}.condition = 'null' needs [model.unet] null_class = true (the UNet's null class)")
        self._generator().validate(where)

    def _generator(self) -> UNetSpec:
        return UNetSpec(kind="unet", path=self.path, attribute_names=self.attribute_names, unet=self.unet,
                        judge=self.judge, guidance=self.guidance)

    def prepare(self, *, device: str = "cpu", dataset: dict | None = None):
        """The `UNetSpec` artifacts, plus the h-space classifier trained on the train split."""
        if dataset is None:
            raise FairbenchError("model kind 'unconditional' needs a [dataset]: its guidance classifier is trained on it")
        prepared = self._generator().prepare(device=device, dataset=dataset)
        k = len(prepared.attribute_names)
        check_generator(prepared.unet, self.condition, k)
        splits = labelled_splits(dataset)
        labels = k if self.condition == "null" else None
        hspace = cached_hspace(splits.train, splits.val, self.hspace, prepared.unet, prepared.schedule,
                               class_label=labels, device=device)
        prepared.info |= {"hspace_trained_now": hspace.trained_now, "hspace_val_accuracy": hspace.metadata["val_accuracy"]}
        prepared.hspace = hspace.network
        return prepared

    def build(self, *, device: str = "cpu", dataset: dict | None = None, **_: Any) -> Setup:
        prepared = self.prepare(device=device, dataset=dataset)
        unet, k = prepared.unet, len(prepared.attribute_names)
        hspace = UNetHSpace(unet, prepared.hspace)
        model = GuidedDenoiser(
            unet_unconditional(unet, self.condition, k), prepared.guidance, guidance_scale=self.guidance_scale,
            alphas_cumprod=make_scheduler("ddpm", **prepared.schedule).alphas_cumprod, attribute_names=prepared.attribute_names,
            sample_shape=unet_sample_shape(unet), dtype=unet.dtype, schedule=prepared.schedule,
            hspace=hspace.capability(), attribute_axes=prepared.attribute_axes,
        )
        judge = prepared.judge
        return Setup(
            model=model, guidance=prepared.guidance, features=judge.features, feature_name=judge.features.name,
            real=prepared.real, judge=judge.sensitive_log_prob,
            target_judge=judge.target_log_prob if prepared.real.target is not None else None,
            balance_features=judge.sensitive_prob, extras={"artifacts": prepared.info},
        )


register_model_kind("unconditional", UnconditionalSpec)
