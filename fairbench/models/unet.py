"""``kind = "unet"``: any diffusers class-conditional ``UNet2DModel`` as a fairbench model.

``[model] path`` names a local diffusers folder (the UNet's ``config.json`` and weights at
its root or under ``unet/``) or a hub id; without `path`, a UNet is trained on the
``[dataset]``'s train split (`fairbench.train`) and cached. With a ``[dataset]``, the kind
also provides the judge, the guidance classifier and the real test split for the metrics.

Conditions: class label a = sensitive value a (``num_class_embeds >= k``). A UNet with
exactly ``k + 1`` class embeddings (what ``fairbench train`` writes with
``[model.unet] null_class = true``) has a null class, label k, which is the column k of a
condition mixture; a UNet with k embeddings has no null condition. One-hot weights take the UNet's standard path
(``class_labels``); any other mixture ``w`` ([B, k]) replaces the class embedding by
``w @ E[:k]`` through a forward hook on ``unet.class_embedding``, so the UNet's own forward
runs unchanged (embedding mixing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from diffusers import DDPMScheduler, UNet2DModel
from huggingface_hub import HfApi

from ..classifiers import Judge
from ..datasets import dataset_spec
from ..errors import FairbenchError
from ..schedulers import BETA_SCHEDULES
from ..train import GuidanceTraining, JudgeTraining, LabelledImages, UNetTraining, cached_guidance, cached_judge, cached_unet
from . import register_model_kind
from .base import AttributeAxes, Capabilities, ModelKind, RealData, Setup, as_labels

DEFAULT_SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "linear"}  # DDPM's
SCHEDULE_KEYS = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type")


class UNetDenoiser:
    """A `Denoiser` over a class-conditional ``UNet2DModel``."""

    def __init__(self, unet, schedule: dict[str, Any], attribute_names: tuple[str, ...], *,
                 attribute_axes: AttributeAxes | None = None):
        classes = unet.config.num_class_embeds
        if unet.class_embedding is None or unet.config.class_embed_type is not None or not classes:
            raise FairbenchError(
                "the UNet is not class-conditional: fairbench needs a UNet2DModel with num_class_embeds "
                "set (one class per sensitive value) and class_embed_type unset"
            )
        if len(attribute_names) < 2 or len(attribute_names) > classes:
            raise FairbenchError(
                f"the UNet has {classes} class embeddings; it cannot condition on {len(attribute_names)} "
                f"attribute values {list(attribute_names)}"
            )
        self.unet = unet.eval()
        self.sample_shape = unet_sample_shape(unet)
        self.dtype = unet.dtype
        self.attribute_names = tuple(attribute_names)
        # label k is a null class when the UNet has exactly k + 1 class embeddings (module docstring)
        self.capabilities = Capabilities(null_condition=classes == len(attribute_names) + 1, attribute_axes=attribute_axes)
        self.schedule = dict(schedule)
        self.num_train_timesteps = int(schedule["num_train_timesteps"])

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)

    def scheduler_config(self) -> dict[str, Any]:
        return dict(self.schedule)

    def eps(self, x: torch.Tensor, t: int, weights: torch.Tensor) -> torch.Tensor:
        """``eps_theta(x_t, t, c)`` with ``c`` = class a for one-hot rows, else ``w @ E[:k]``."""
        timesteps = torch.full((len(x),), int(t), dtype=torch.long, device=x.device)
        labels = as_labels(weights)
        if labels is not None:
            return self.unet(x, timesteps, class_labels=labels.to(x.device)).sample
        embedding = self.unet.class_embedding
        mixed = weights.to(embedding.weight) @ embedding.weight[: weights.shape[1]]
        # The hook's return value replaces the embedding lookup; labels only make it run.
        handle = embedding.register_forward_hook(lambda module, inputs, output: mixed.to(output))
        try:
            return self.unet(x, timesteps, class_labels=torch.zeros(len(x), dtype=torch.long, device=x.device)).sample
        finally:
            handle.remove()


def unet_sample_shape(unet) -> tuple[int, int, int]:
    size = unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return (unet.config.in_channels, height, width)


def _looks_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or Path(path).expanduser().exists() or path.count("/") != 1


def read_schedule(source: str) -> dict[str, Any]:
    """The noise schedule from a saved ``scheduler_config.json`` (beside the UNet, under
    ``scheduler/``), else DDPM's default (linear betas, T = 1000)."""
    for subfolder in ("scheduler", None):
        try:
            config = DDPMScheduler.load_config(source, subfolder=subfolder)
        except (OSError, ValueError):
            continue
        break
    else:
        return dict(DEFAULT_SCHEDULE)
    if config.get("trained_betas") is not None:
        raise FairbenchError(f"model.path {source!r}: schedulers with trained_betas are not supported")
    if config.get("prediction_type", "epsilon") != "epsilon":
        raise FairbenchError(
            f"model.path {source!r} predicts {config['prediction_type']!r}; fairbench's samplers and guidance need 'epsilon'"
        )
    schedule = {key: config[key] for key in SCHEDULE_KEYS if key in config}
    if schedule.get("beta_schedule", "linear") not in BETA_SCHEDULES:
        raise FairbenchError(
            f"model.path {source!r}: beta_schedule {schedule['beta_schedule']!r} is not supported. Valid: {', '.join(BETA_SCHEDULES)}."
        )
    return DEFAULT_SCHEDULE | schedule


def load_unet(path: str, device: str):
    """(UNet2DModel, noise schedule, folder it came from) for a local folder or a hub id."""
    if _looks_local(path):
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise FairbenchError(
                f"model.path {path!r} does not exist; give a diffusers UNet2DModel folder (config.json + weights), "
                "a hub id available offline, or leave model.path out and give a [dataset] to train one"
            )
        for root in (folder, folder / "unet"):
            if (root / "config.json").is_file():
                break
        else:
            raise FairbenchError(f"model.path {path!r} holds no UNet config.json (at its root or under unet/)")
        try:
            unet = UNet2DModel.from_pretrained(root, low_cpu_mem_usage=False, use_safetensors=True)
        except (OSError, ValueError, EnvironmentError) as exc:
            raise FairbenchError(f"cannot load a UNet2DModel from {str(root)!r}: {' '.join(str(exc).split())[:200]}") from None
        return unet.to(device).eval(), read_schedule(str(folder)), str(root)
    how = f"download it where the hub is reachable (`hf download {path} --local-dir DIR`) and set model.path = DIR"
    # The local hub cache first: no network, no retries.
    for subfolder in (None, "unet"):
        try:
            unet = UNet2DModel.from_pretrained(path, subfolder=subfolder, local_files_only=True, low_cpu_mem_usage=False, use_safetensors=True)
        except (OSError, ValueError):
            continue
        return unet.to(device).eval(), read_schedule(path), path
    try:  # one quick request, so that an offline machine fails at once rather than after download retries
        HfApi().model_info(path, timeout=10)
    except Exception as exc:  # offline, unknown repository, gated, ...: the same advice
        raise FairbenchError(
            f"model.path {path!r} is neither a local folder nor in the hub cache, and the hub cannot serve it "
            f"({type(exc).__name__}); {how}"
        ) from None
    for subfolder in (None, "unet"):
        try:
            unet = UNet2DModel.from_pretrained(path, subfolder=subfolder, low_cpu_mem_usage=False, use_safetensors=True)
        except (OSError, ValueError):
            continue
        return unet.to(device).eval(), read_schedule(path), path
    raise FairbenchError(f"hub repository {path!r} holds no UNet2DModel (at its root or under unet/); {how}")


@dataclass
class ImageArtifacts:
    """The networks and data of an image benchmark, as `UNetSpec.prepare` returns them."""

    unet: Any
    schedule: dict[str, Any]
    attribute_names: tuple[str, ...]
    judge: Any = None  # fairbench.classifiers.Judge
    guidance: Any = None  # fairbench.classifiers.NoiseAwareClassifier
    real: RealData | None = None
    info: dict[str, Any] = field(default_factory=dict)  # sources, cache state, held-out accuracies
    attribute_axes: AttributeAxes | None = None  # a product attribute's axes
    hspace: Any = None  # fairbench.classifiers.HSpaceClassifier (model kind "unconditional")


@dataclass
class LabelledSplits:
    """A `[dataset]` loaded as labelled train, val and test images."""

    data: Any  # fairbench.datasets.ImageDataset
    train: Any  # fairbench.train.LabelledImages
    val: Any
    test: Any
    info: dict[str, Any]


def labelled_splits(dataset: dict) -> LabelledSplits:
    """Held-out accuracies use val, real reference data test; one stands in for the other if missing."""

    data_spec = dataset_spec(dataset)
    data = data_spec.load()
    target = data_spec.target
    present = [split for split in ("train", "val", "test") if (data.split == split).any()]
    if "train" not in present or len(present) < 2:
        raise FairbenchError(f"dataset {data.name!r} needs a train split and a val or test split, has {present}")
    parts = {split: LabelledImages.from_dataset(data, split, data_spec.sensitive, target) for split in present}
    train, val, test = parts["train"], parts.get("val", parts.get("test")), parts.get("test", parts.get("val"))
    return LabelledSplits(data, train, val, test, {"dataset": data.name, "attribute": data_spec.attribute, "target": target})


def judge_and_real(splits: LabelledSplits, training: JudgeTraining, *, device: str = "cpu") -> tuple[Any, RealData, dict]:
    """The judge (trained on the train split, or taken from the cache), the real test split, and cache facts.

    The benchmark (`UNetSpec.prepare`) and `fairbench audit` both measure through this, so
    they use the same judge and the same real data.
    """
    judge = cached_judge(splits.train, splits.val, training, device=device)
    test, train = splits.test, splits.train
    real = RealData(samples=test.images, sensitive=test.sensitive, target=test.target, target_values=test.target_values,
                    train=RealData(samples=train.images, sensitive=train.sensitive, target=train.target,
                                   target_values=train.target_values))
    info = {"judge_trained_now": judge.trained_now, "judge_val_accuracy": judge.metadata["val_accuracy"]}
    return Judge(judge.network, name=f"judge:{splits.data.name}:{judge.key[:12]}"), real, info


@dataclass(frozen=True)
class UNetSpec(ModelKind):
    """``kind = "unet"``; training keys live in ``[model.unet]``, ``[model.judge]``, ``[model.guidance]``."""

    clip_sample_default: ClassVar[bool] = True  # images live in [-1, 1] (the authors' DDIM clamps x0)
    kind: Literal["unet"]
    path: str | None = None  # a diffusers UNet2DModel folder or hub id; absent: trained on [dataset]
    attribute_names: list[str] | None = None  # class names of a given UNet used without [dataset]
    unet: UNetTraining = field(default_factory=UNetTraining)
    judge: JudgeTraining = field(default_factory=JudgeTraining)
    guidance: GuidanceTraining = field(default_factory=GuidanceTraining)
    takes_dataset: ClassVar[bool] = True  # [dataset]: the data to train on and to measure against
    trains: ClassVar[bool] = True

    def validate(self, where: str) -> None:
        if self.path is not None and _looks_local(self.path) and not Path(self.path).expanduser().is_dir():
            raise FairbenchError(
                f"{where}.path {self.path!r} does not exist; give a diffusers UNet2DModel folder or hub id, "
                "or leave it out and give a [dataset] to train one"
            )

    def prepare(self, *, device: str = "cpu", dataset: dict | None = None) -> ImageArtifacts:
        """Load or train (cached) everything this model needs."""
        if dataset is None:
            if self.path is None:
                raise FairbenchError(
                    "model kind 'unet' needs model.path (a diffusers UNet2DModel folder or hub id) "
                    "or a [dataset] to train a UNet on"
                )
            unet, schedule, source = load_unet(self.path, device)
            names = tuple(self.attribute_names or (f"s{a}" for a in range(unet.config.num_class_embeds or 0)))
            return ImageArtifacts(unet, schedule, names, info={"unet": source})
        splits = labelled_splits(dataset)
        data, train, val = splits.data, splits.train, splits.val
        info: dict[str, Any] = dict(splits.info)
        if self.path is not None:
            unet, schedule, source = load_unet(self.path, device)
            info |= {"unet": source, "unet_trained_now": False}
            if unet_sample_shape(unet) != tuple(data.image_shape):
                raise FairbenchError(
                    f"model.path {self.path!r} generates {'x'.join(map(str, unet_sample_shape(unet)))} images but dataset "
                    f"{data.name!r} holds {'x'.join(map(str, data.image_shape))}; set the dataset's resolution to match"
                )
        else:
            generator = cached_unet(train, self.unet, device=device)
            unet, schedule = generator.network, DEFAULT_SCHEDULE | self.unet.noise_schedule()
            info |= {"unet": str(generator.directory / "unet"), "unet_trained_now": generator.trained_now}
        judge, real, judge_info = judge_and_real(splits, self.judge, device=device)
        guidance = cached_guidance(train, val, self.guidance, schedule, device=device)
        info |= judge_info | {
            "guidance_trained_now": guidance.trained_now, "guidance_val_accuracy": guidance.metadata["val_accuracy"],
        }
        return ImageArtifacts(unet, schedule, train.sensitive_values, judge, guidance.network, real, info,
                              attribute_axes=data.product_axes.get(dataset_spec(dataset).sensitive))

    def build(self, *, device: str = "cpu", dataset: dict | None = None, **_: Any) -> Setup:
        prepared = self.prepare(device=device, dataset=dataset)
        model = UNetDenoiser(prepared.unet, prepared.schedule, prepared.attribute_names, attribute_axes=prepared.attribute_axes)
        if prepared.judge is None:
            return Setup(model=model, extras={"artifacts": prepared.info})
        judge = prepared.judge
        return Setup(
            model=model,
            guidance=prepared.guidance,
            features=judge.features,
            feature_name=judge.features.name,
            real=prepared.real,
            judge=judge.sensitive_log_prob,
            target_judge=judge.target_log_prob if prepared.real.target is not None else None,
            balance_features=judge.sensitive_prob,
            extras={"artifacts": prepared.info},
        )


register_model_kind("unet", UNetSpec)
