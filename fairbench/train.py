"""Training the networks an image benchmark needs, cached and resumable.

Three networks, each trained on the train split of a dataset (`fairbench train CONFIG`, or on
first use by the ``unet`` model kind):

(a) the generator: a class-conditional diffusers ``UNet2DModel`` (class = sensitive value;
    optionally one extra null class), trained with the epsilon objective
    ``L = E || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t, s) ||^2``
    (Ho et al. 2020), ``t ~ U{0..T-1}``; the exponential moving average of its weights
    (``theta_ema <- d theta_ema + (1 - d) theta`` with ``d = min(decay, (1 + n) / (10 + n))``
    after update n) is what is saved, as a diffusers folder (safetensors) with its
    ``scheduler_config.json``;
(b) the judge (`fairbench.classifiers.AttributeJudge`), cross-entropy on clean images for
    the sensitive and the target attribute;
(c) the guidance classifier (`fairbench.classifiers.NoiseAwareClassifier`), cross-entropy on
    ``x_t`` at uniformly drawn t, for the model's own noise schedule.

The classifiers draw their batches uniformly over the (sensitive, target) strata of the train
split (each stratum with probability 1/#strata, uniform inside it), so that a bias injected
in the training data (e.g. heavy strokes mostly on digits >= 5) is not a shortcut for them.

Randomness: step n draws its batch, timesteps and noise from a generator seeded by
``(seed, n)``, so a training resumed from a checkpoint equals an uninterrupted one.
Checkpoints are safetensors (weights, EMA weights, optimizer state) plus a JSON step
counter; nothing is pickled. Results are cached (`fairbench.cache`) under a hash of the
training spec, the architecture, the noise schedule and the training data.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DModel
from safetensors.torch import load_file, save_file
from torch import nn

from .cache import artifact, shipped_artifact, tensor_digest
from .classifiers import AttributeJudge, HSpaceClassifier, NoiseAwareClassifier, mid_block_features
from .errors import FairbenchError, lookup
from .noise import sample_seed
from .progress import progress
from .schedulers import BETA_SCHEDULES, make_scheduler

FORMAT_VERSION = 1
WARMUP_STEPS = 100
NOISE_KEYS = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type")


# ---------------------------------------------------------------------------------------------
# Specs ([model.unet], [model.judge], [model.guidance] of a ``kind = "unet"`` model).


def _check_positive(spec, where: str, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(spec, name)
        if value <= 0:
            raise FairbenchError(f"{where}.{name} must be positive, got {value}")


@dataclass(frozen=True)
class UNetTraining:
    """The generator trained when ``[model] path`` is absent."""

    block_out_channels: list[int] = field(default_factory=lambda: [32, 64])
    layers_per_block: int = 1
    attention: bool = False  # self-attention in the lowest-resolution block
    null_class: bool = False  # one extra class, used with probability `null_probability`
    null_probability: float = 0.1
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    steps: int = 3000
    batch_size: int = 128
    learning_rate: float = 1e-3
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    seed: int = 0

    def validate(self, where: str) -> None:
        lookup({b: b for b in BETA_SCHEDULES}, self.beta_schedule, f"{where}.beta_schedule")
        if not self.block_out_channels or any(c <= 0 or c % 8 for c in self.block_out_channels):
            raise FairbenchError(f"{where}.block_out_channels must be positive multiples of 8, got {self.block_out_channels}")
        _check_positive(self, where, ("layers_per_block", "steps", "batch_size", "learning_rate", "checkpoint_every"))
        if self.num_train_timesteps < 2:
            raise FairbenchError(f"{where}.num_train_timesteps must be at least 2, got {self.num_train_timesteps}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise FairbenchError(f"{where}.ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 < self.null_probability < 1.0:
            raise FairbenchError(f"{where}.null_probability must be in (0, 1), got {self.null_probability}")

    def noise_schedule(self) -> dict[str, Any]:
        return {"num_train_timesteps": self.num_train_timesteps, "beta_schedule": self.beta_schedule}


@dataclass(frozen=True)
class JudgeTraining:
    """The judge: attribute classifier on clean real images (evaluation only)."""

    width: int = 32
    feature_dim: int = 128
    steps: int = 1500
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    checkpoint_every: int = 500
    seed: int = 0

    def validate(self, where: str) -> None:
        _check_positive(self, where, ("width", "feature_dim", "steps", "batch_size", "learning_rate", "checkpoint_every"))
        if self.weight_decay < 0:
            raise FairbenchError(f"{where}.weight_decay must be non-negative, got {self.weight_decay}")


@dataclass(frozen=True)
class GuidanceTraining:
    """The noise-aware guidance classifier (sampling only; never the judge)."""

    width: int = 32
    steps: int = 3000
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    checkpoint_every: int = 500
    seed: int = 0

    def validate(self, where: str) -> None:
        _check_positive(self, where, ("width", "steps", "batch_size", "learning_rate", "checkpoint_every"))
        if self.weight_decay < 0:
            raise FairbenchError(f"{where}.weight_decay must be non-negative, got {self.weight_decay}")


@dataclass(frozen=True)
class HSpaceTraining:
    """``[model.hspace]``: the attribute classifier on the generator's mid-block features
    (distribution guidance; sampling only, never the judge)."""

    hidden: int = 256
    steps: int = 1500
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    checkpoint_every: int = 500
    seed: int = 0

    def validate(self, where: str) -> None:
        _check_positive(self, where, ("hidden", "steps", "batch_size", "learning_rate", "checkpoint_every"))
        if self.weight_decay < 0:
            raise FairbenchError(f"{where}.weight_decay must be non-negative, got {self.weight_decay}")


# ---------------------------------------------------------------------------------------------
# Training data.


@dataclass
class LabelledImages:
    """Images with their sensitive (and optional target) codes, for training one network."""

    images: torch.Tensor  # [N, C, H, W] in [-1, 1]
    sensitive: torch.Tensor  # [N]
    sensitive_values: tuple[str, ...]
    target: torch.Tensor | None = None  # [N]
    target_values: tuple[str, ...] = ()

    @classmethod
    def from_dataset(cls, dataset, split: str, attribute: str, target: str | None) -> "LabelledImages":
        part = dataset.subset(split)
        if len(part) == 0:
            raise FairbenchError(f"dataset {dataset.name!r} has no images in its {split!r} split")
        return cls(
            images=part.images().to(torch.float32),
            sensitive=part.labels(attribute),
            sensitive_values=tuple(dataset.attribute_values[attribute]),
            target=part.labels(target) if target else None,
            target_values=tuple(dataset.attribute_values[target]) if target else (),
        )

    @property
    def k(self) -> int:
        return len(self.sensitive_values)

    def digest(self) -> str:
        arrays = [self.images, self.sensitive] + ([self.target] if self.target is not None else [])
        return tensor_digest(*arrays) + ":" + json.dumps([self.sensitive_values, self.target_values])

    def stratum_probabilities(self) -> torch.Tensor:
        """Per-image draw probability: each (sensitive, target) stratum 1/#strata, uniform inside."""
        strata = self.sensitive * (len(self.target_values) or 1) + (self.target if self.target is not None else 0)
        _, inverse, counts = torch.unique(strata, return_inverse=True, return_counts=True)
        weights = 1.0 / counts[inverse].to(torch.float64)
        return weights / weights.sum()


# ---------------------------------------------------------------------------------------------
# Checkpoints: safetensors + JSON, never pickle.


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict as contiguous CPU tensors, what safetensors writes."""
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def save_checkpoint(directory: Path, step: int, module: nn.Module, ema: nn.Module | None, optimizer) -> None:
    """Write ``directory`` as a whole: a new folder renamed over the old one."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_cpu_state(module), tmp / "model.safetensors")
    if ema is not None:
        save_file(_cpu_state(ema), tmp / "ema.safetensors")
    state = optimizer.state_dict()
    flat = {f"{index}.{name}": value.detach().contiguous().cpu()
            for index, values in state["state"].items() for name, value in values.items()}
    save_file(flat, tmp / "optimizer.safetensors")
    (tmp / "state.json").write_text(json.dumps({"step": step, "param_groups": state["param_groups"]}), encoding="utf-8")
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(directory: Path, module: nn.Module, ema: nn.Module | None, optimizer) -> int:
    """Restore a checkpoint into the given objects; return its step (0 when there is none)."""
    if not (directory / "state.json").is_file():
        return 0
    meta = json.loads((directory / "state.json").read_text(encoding="utf-8"))
    device = next(module.parameters()).device
    module.load_state_dict(load_file(directory / "model.safetensors", device=str(device)))
    if ema is not None:
        ema.load_state_dict(load_file(directory / "ema.safetensors", device=str(device)))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(directory / "optimizer.safetensors").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"])


# ---------------------------------------------------------------------------------------------
# The one training loop.


def fit(
    module: nn.Module,
    batch_loss: Callable[[nn.Module, torch.Generator], torch.Tensor],
    *,
    steps: int,
    learning_rate: float,
    seed: int,
    checkpoint_dir: Path | None,
    checkpoint_every: int,
    weight_decay: float = 0.0,
    ema_decay: float | None = None,
    desc: str = "training",
) -> nn.Module:
    """AdamW on ``batch_loss(module, generator_for_step)`` for `steps` steps, resuming from
    `checkpoint_dir` when it holds a checkpoint (``None``: no checkpoints, for short fits);
    returns the EMA copy when `ema_decay` is set.

    Learning rate: linear warm-up over the first 100 steps, then constant.
    """
    module.train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=learning_rate, weight_decay=weight_decay)
    ema = copy.deepcopy(module).requires_grad_(False) if ema_decay is not None else None
    start = load_checkpoint(checkpoint_dir, module, ema, optimizer) if checkpoint_dir is not None else 0
    # Layers that draw from torch's global generator (dropout) get a per-step seed inside a
    # forked generator: a step's randomness depends on (seed, step) only, so training is
    # reproducible and a resumed run equals an uninterrupted one; the caller's state is kept.
    with progress(total=steps, initial=start, desc=desc, unit="step") as bar, torch.random.fork_rng(devices=[]):
        for step in range(start, steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate * min(1.0, (step + 1) / WARMUP_STEPS)
            generator = torch.Generator("cpu").manual_seed(sample_seed(seed, step, "train"))
            torch.manual_seed(sample_seed(seed, step, "train-global"))
            loss = batch_loss(module, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                decay = min(ema_decay, (1.0 + step) / (10.0 + step))
                with torch.no_grad():
                    for averaged, current in zip(ema.parameters(), module.parameters()):
                        averaged.lerp_(current, 1.0 - decay)
            if checkpoint_dir is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
                save_checkpoint(checkpoint_dir, step + 1, module, ema, optimizer)
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
    trained = ema if ema is not None else module
    return trained.eval()


# ---------------------------------------------------------------------------------------------
# (a) the generator.


def initialised(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with its initial weights drawn from `seed`, not from torch's global generator.

    Without this, a network's starting point depended on whatever had drawn from the global
    generator before it, so two trainings of one recipe started from different weights.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_unet(spec: UNetTraining, sample_shape: tuple[int, int, int], num_classes: int):
    """A fresh class-conditional ``UNet2DModel`` for images of `sample_shape` = (C, H, W)."""
    channels, height, width = sample_shape
    levels = len(spec.block_out_channels)
    if height != width or height % 2 ** (levels - 1):
        raise FairbenchError(
            f"model.unet: images of {height}x{width} need square sides divisible by 2^{levels - 1} "
            f"for block_out_channels {spec.block_out_channels}"
        )
    down = ["DownBlock2D"] * levels
    up = ["UpBlock2D"] * levels
    if spec.attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return UNet2DModel(
        sample_size=height,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(spec.block_out_channels),
        layers_per_block=spec.layers_per_block,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        num_class_embeds=num_classes,
        norm_num_groups=8,
    )


def _abar(schedule: dict[str, Any]) -> torch.Tensor:
    return make_scheduler("ddpm", **schedule).alphas_cumprod.to(torch.float32)


def _noised(x0: torch.Tensor, abar: torch.Tensor, generator: torch.Generator,
            t: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_t, t, eps)`` with ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``, ``eps ~ N(0, I)`` and
    ``t ~ U{0..T-1}`` per sample unless given."""
    if t is None:
        t = torch.randint(len(abar), (len(x0),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    a = abar[t].view(-1, *[1] * (x0.ndim - 1))
    return a.sqrt() * x0 + (1.0 - a).sqrt() * eps, t, eps


def train_unet(data: LabelledImages, spec: UNetTraining, *, device: str, directory: Path):
    """Train (a) into `directory` (checkpoints, then ``unet/``); returns the EMA ``UNet2DModel``."""
    k = data.k
    unet = initialised(spec.seed, lambda: build_unet(spec, tuple(data.images.shape[1:]), k + int(spec.null_class))).to(device)
    abar = _abar(spec.noise_schedule())

    def batch_loss(model: nn.Module, generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(len(data.images), (spec.batch_size,), generator=generator)
        labels = data.sensitive[index]
        if spec.null_class:
            labels = torch.where(torch.rand(len(index), generator=generator) < spec.null_probability, k, labels)
        x_t, t, eps = _noised(data.images[index], abar, generator)
        prediction = model(x_t.to(device), t.to(device), class_labels=labels.to(device)).sample
        return torch.nn.functional.mse_loss(prediction, eps.to(device))

    ema = fit(unet, batch_loss, steps=spec.steps, learning_rate=spec.learning_rate, seed=spec.seed,
              checkpoint_dir=directory / "checkpoint", checkpoint_every=spec.checkpoint_every,
              ema_decay=spec.ema_decay, desc="training the UNet")
    save_unet(ema, spec.noise_schedule(), directory / "unet")
    return ema


def save_unet(unet, schedule: dict[str, Any], folder: Path) -> None:
    """A diffusers folder: ``config.json``, safetensors weights and ``scheduler_config.json``."""
    unet.save_pretrained(folder, safe_serialization=True)
    DDPMScheduler(**schedule).save_config(folder)


# ---------------------------------------------------------------------------------------------
# (b) the judge and (c) the guidance classifier.


def _save_network(network: nn.Module, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(_cpu_state(network), folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(network.config, indent=2), encoding="utf-8")


def load_network(cls: type[nn.Module], folder: Path, device: str) -> nn.Module:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    network = cls(**config)
    network.load_state_dict(load_file(folder / "model.safetensors"))
    return network.to(device).eval().requires_grad_(False)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1).cpu() == labels).float().mean())


def train_judge(data: LabelledImages, held_out: LabelledImages, spec: JudgeTraining, *, device: str,
                directory: Path) -> dict[str, float]:
    """Train (b) into ``directory / "judge"``; returns its accuracies on `held_out`."""
    num_target = len(data.target_values)
    network = initialised(spec.seed, lambda: AttributeJudge(data.images.shape[1], data.k, num_target, width=spec.width,
                                                             feature_dim=spec.feature_dim)).to(device)
    probabilities = data.stratum_probabilities()

    def batch_loss(model: nn.Module, generator: torch.Generator) -> torch.Tensor:
        index = torch.multinomial(probabilities, spec.batch_size, replacement=True, generator=generator)
        sensitive_logits, target_logits = model(data.images[index].to(device))
        loss = torch.nn.functional.cross_entropy(sensitive_logits, data.sensitive[index].to(device))
        if num_target:
            loss = loss + torch.nn.functional.cross_entropy(target_logits, data.target[index].to(device))
        return loss

    network = fit(network, batch_loss, steps=spec.steps, learning_rate=spec.learning_rate, seed=spec.seed,
                  weight_decay=spec.weight_decay, checkpoint_dir=directory / "checkpoint",
                  checkpoint_every=spec.checkpoint_every, desc="training the judge")
    _save_network(network, directory / "judge")
    with torch.no_grad():
        sensitive_logits, target_logits = network(held_out.images.to(device))
    accuracy = {"sensitive": _accuracy(sensitive_logits, held_out.sensitive)}
    if num_target:
        accuracy["target"] = _accuracy(target_logits, held_out.target)
    return accuracy


GUIDANCE_CHECK_TIMESTEPS = (0, 250, 500, 750)


def fit_guidance_classifier(data: LabelledImages, spec: GuidanceTraining, alphas_cumprod: torch.Tensor, *, device: str,
                            checkpoint_dir: Path | None) -> NoiseAwareClassifier:
    """Fit (c) on `data` (images, or any ``[N, C, H, W]`` tensors such as latents) noised with
    the schedule `alphas_cumprod`: cross-entropy ``-log p_phi(s | x_t, t)`` on stratified
    batches, ``t ~ U{0..T-1}``, by `fit`."""
    network = initialised(spec.seed, lambda: NoiseAwareClassifier(data.images.shape[1], data.k, width=spec.width)).to(device)
    abar = alphas_cumprod.to(torch.float32)
    probabilities = data.stratum_probabilities()

    def batch_loss(model: nn.Module, generator: torch.Generator) -> torch.Tensor:
        index = torch.multinomial(probabilities, spec.batch_size, replacement=True, generator=generator)
        x_t, t, _ = _noised(data.images[index], abar, generator)
        return torch.nn.functional.cross_entropy(model(x_t.to(device), t.to(device)), data.sensitive[index].to(device))

    return fit(network, batch_loss, steps=spec.steps, learning_rate=spec.learning_rate, seed=spec.seed,
               weight_decay=spec.weight_decay, checkpoint_dir=checkpoint_dir,
               checkpoint_every=spec.checkpoint_every, desc="training the guidance classifier")


def train_guidance(data: LabelledImages, held_out: LabelledImages, spec: GuidanceTraining, schedule: dict[str, Any],
                   *, device: str, directory: Path) -> dict[str, float]:
    """Train (c) into ``directory / "guidance"`` for the noise schedule `schedule`; returns its
    accuracy on `held_out` noised at a few fractions of T."""
    abar = _abar(schedule)
    network = fit_guidance_classifier(data, spec, abar, device=device, checkpoint_dir=directory / "checkpoint")
    _save_network(network, directory / "guidance")
    accuracy = {}
    generator = torch.Generator("cpu").manual_seed(sample_seed(spec.seed, 0, "guidance-check"))
    T = len(abar)
    for fraction in GUIDANCE_CHECK_TIMESTEPS:
        t = fraction * T // 1000
        x_t, _, _ = _noised(held_out.images, abar, generator, torch.full((len(held_out.images),), t))
        with torch.no_grad():
            logits = network(x_t.to(device), torch.full((len(x_t),), t, device=device))
        accuracy[f"t={t}"] = _accuracy(logits, held_out.sensitive)
    return accuracy


def _hspace_features(unet, x_t: torch.Tensor, t: torch.Tensor, class_label: int | None, device: str) -> torch.Tensor:
    labels = None if class_label is None else torch.full((len(x_t),), class_label, dtype=torch.long, device=device)
    with torch.no_grad():
        return mid_block_features(unet, x_t.to(device), t.to(device), labels)


def train_hspace(data: LabelledImages, held_out: LabelledImages, spec: HSpaceTraining, unet, schedule: dict[str, Any],
                 class_label: int | None, *, device: str, directory: Path) -> dict[str, float]:
    """Train the h-space classifier into ``directory / "hspace"``: cross-entropy
    ``-log p_psi(s | h(x_t, t), t)`` with ``h`` the frozen generator's mid-block output on train
    images noised to ``x_t`` (``t ~ U{0..T-1}``, stratified batches as for (c)); the generator
    runs on its null class `class_label` (None: a UNet without classes). Returns its accuracy
    on `held_out` noised at a few fractions of T."""
    abar = _abar(schedule)
    unet = unet.eval()
    probe = _hspace_features(unet, data.images[:1], torch.zeros(1, dtype=torch.long), class_label, device)
    network = initialised(spec.seed, lambda: HSpaceClassifier(probe[0].numel(), data.k, hidden=spec.hidden)).to(device)
    probabilities = data.stratum_probabilities()

    def batch_loss(model: nn.Module, generator: torch.Generator) -> torch.Tensor:
        index = torch.multinomial(probabilities, spec.batch_size, replacement=True, generator=generator)
        x_t, t, _ = _noised(data.images[index], abar, generator)
        h = _hspace_features(unet, x_t, t, class_label, device)
        return torch.nn.functional.cross_entropy(model(h, t.to(device)), data.sensitive[index].to(device))

    network = fit(network, batch_loss, steps=spec.steps, learning_rate=spec.learning_rate, seed=spec.seed,
                  weight_decay=spec.weight_decay, checkpoint_dir=directory / "checkpoint",
                  checkpoint_every=spec.checkpoint_every, desc="training the h-space classifier")
    _save_network(network, directory / "hspace")
    accuracy = {}
    generator = torch.Generator("cpu").manual_seed(sample_seed(spec.seed, 0, "hspace-check"))
    T = len(abar)
    for fraction in GUIDANCE_CHECK_TIMESTEPS:
        t = fraction * T // 1000
        eps = torch.randn(held_out.images.shape, generator=generator)
        x_t = abar[t].sqrt() * held_out.images + (1.0 - abar[t]).sqrt() * eps
        steps = torch.full((len(x_t),), t, dtype=torch.long)
        with torch.no_grad():
            logits = network(_hspace_features(unet, x_t, steps, class_label, device), steps.to(device))
        accuracy[f"t={t}"] = _accuracy(logits, held_out.sensitive)
    return accuracy


# ---------------------------------------------------------------------------------------------
# Cached artifacts.


def _recipe(spec, data: LabelledImages, **extra) -> dict[str, Any]:
    return {"format": FORMAT_VERSION, "spec": dataclasses.asdict(spec), "data": data.digest()} | extra


@dataclass
class Trained:
    """A network from the cache: loaded, or trained now and stored."""

    network: nn.Module
    directory: Path  # the artifact's folder
    key: str  # sha256 of its recipe
    metadata: dict[str, Any]
    trained_now: bool


def _cached(kind: str, recipe: dict[str, Any], train: Callable[[Path], dict[str, Any]],
            load: Callable[[Path], nn.Module]) -> Trained:
    """Load the artifact of `recipe` (shipped with the package, or cached), training it first if absent."""
    shipped = shipped_artifact(kind, recipe)
    if shipped is not None:
        return Trained(load(shipped.directory), shipped.directory, shipped.key, shipped.metadata(), False)
    store = artifact(kind, recipe)
    trained_now = not store.complete
    if trained_now:
        store.finish(train(store.directory))
        shutil.rmtree(store.directory / "checkpoint", ignore_errors=True)  # the artifact supersedes it
    return Trained(load(store.directory), store.directory, store.key, store.metadata(), trained_now)


def cached_unet(data: LabelledImages, spec: UNetTraining, *, device: str) -> Trained:
    """The generator for `data`; ``directory / "unet"`` is its diffusers folder."""

    def train(directory: Path) -> dict[str, Any]:
        train_unet(data, spec, device=device, directory=directory)
        return {"attribute_values": list(data.sensitive_values), "null_class": data.k if spec.null_class else None,
                "device": device}

    def load(directory: Path) -> nn.Module:
        return UNet2DModel.from_pretrained(directory / "unet", low_cpu_mem_usage=False, use_safetensors=True).to(device).eval()

    return _cached("unet", _recipe(spec, data), train, load)


def cached_judge(data: LabelledImages, held_out: LabelledImages, spec: JudgeTraining, *, device: str) -> Trained:
    """The judge; ``metadata["val_accuracy"]`` holds its accuracies on `held_out`."""

    def train(directory: Path) -> dict[str, Any]:
        return {"val_accuracy": train_judge(data, held_out, spec, device=device, directory=directory), "device": device}

    return _cached("judge", _recipe(spec, data), train, lambda directory: load_network(AttributeJudge, directory / "judge", device))


def cached_guidance(data: LabelledImages, held_out: LabelledImages, spec: GuidanceTraining, schedule: dict[str, Any],
                    *, device: str) -> Trained:
    """The guidance classifier for noise schedule `schedule`; ``metadata["val_accuracy"]`` as for the judge."""
    schedule = {k: schedule[k] for k in NOISE_KEYS if k in schedule}

    def train(directory: Path) -> dict[str, Any]:
        accuracy = train_guidance(data, held_out, spec, schedule, device=device, directory=directory)
        return {"val_accuracy": accuracy, "device": device}

    return _cached("guidance", _recipe(spec, data, schedule=schedule), train,
                   lambda directory: load_network(NoiseAwareClassifier, directory / "guidance", device))


def cached_hspace(data: LabelledImages, held_out: LabelledImages, spec: HSpaceTraining, unet, schedule: dict[str, Any],
                  *, class_label: int | None, device: str) -> Trained:
    """The h-space classifier of generator `unet` (its recipe holds a digest of the generator's
    weights and the class it runs on); ``metadata["val_accuracy"]`` as for the judge."""
    schedule = {k: schedule[k] for k in NOISE_KEYS if k in schedule}
    weights = unet.state_dict()
    generator = tensor_digest(*(weights[name] for name in sorted(weights)))

    def train(directory: Path) -> dict[str, Any]:
        accuracy = train_hspace(data, held_out, spec, unet, schedule, class_label, device=device, directory=directory)
        return {"val_accuracy": accuracy, "device": device}

    recipe = _recipe(spec, data, schedule=schedule, generator=generator, class_label=class_label)
    return _cached("hspace", recipe, train, lambda directory: load_network(HSpaceClassifier, directory / "hspace", device))
