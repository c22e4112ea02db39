"""Feature extractors for the quality metrics: samples -> [N, D] features, with a name.

The name goes into every record (``fid_features``) so FIDs are only compared like with like.
Extractors: ``raw`` (the flattened samples, for low-dimensional data such as the Gaussian
model), a domain extractor a model kind provides (e.g. a judge's penultimate layer), any
torch module, and Inception-v3 when its weights are on this machine.

Inception-v3 is never downloaded: fairbench looks for the files clean-fid and torchmetrics
cache, and otherwise refuses with one line naming the file to place and where.
"""

from __future__ import annotations

import pickle
import platform
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..errors import FairbenchError


@dataclass(frozen=True)
class FeatureExtractor:
    """``fn``: a batch of samples ``[B, *shape]`` -> features ``[B, D]``; applied in batches on `device`."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    device: str | torch.device = "cpu"
    batch_size: int = 256

    def batches(self, samples: torch.Tensor) -> Iterator[torch.Tensor]:
        """Features of consecutive batches, as float64 CPU tensors (so memory stays per batch)."""
        for lo in range(0, len(samples), self.batch_size):
            batch = samples[lo : lo + self.batch_size].to(self.device)
            with torch.no_grad():
                features = self.fn(batch)
            yield features.detach().reshape(len(batch), -1).to("cpu", torch.float64)

    def __call__(self, samples: torch.Tensor) -> torch.Tensor:
        parts = list(self.batches(samples))
        return torch.cat(parts) if parts else torch.empty(0, 0, dtype=torch.float64)

    def with_options(self, *, device: str | torch.device | None = None, batch_size: int | None = None) -> "FeatureExtractor":
        return FeatureExtractor(self.name, self.fn, device if device is not None else self.device,
                                batch_size if batch_size is not None else self.batch_size)


def raw_features(*, device: str | torch.device = "cpu", batch_size: int = 256) -> FeatureExtractor:
    """The samples themselves, flattened: meaningful for low-dimensional data."""
    return FeatureExtractor("raw", lambda x: x.reshape(len(x), -1), device, batch_size)


def module_features(
    module: torch.nn.Module, name: str, *, device: str | torch.device = "cpu", batch_size: int = 256
) -> FeatureExtractor:
    """Any torch module mapping samples to ``[B, D]`` (its output is flattened per sample)."""
    module.eval()
    return FeatureExtractor(name, module, device, batch_size)


class ExtractorModule(torch.nn.Module):
    """A `FeatureExtractor` as the ``nn.Module`` torchmetrics' FID/KID take as ``feature``.

    ``num_features`` spares torchmetrics its probe with a dummy 299x299 image.
    """

    def __init__(self, extractor: FeatureExtractor, num_features: int):
        super().__init__()
        self._extractor = (extractor,)  # a tuple, so torchmetrics' .to() never moves the extractor's module
        self.num_features = num_features

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        return self._extractor[0](samples)


# ---------------------------------------------------------------------------------------------
# Inception-v3, from local files only.

CLEANFID_FILE = "inception-2015-12-05.pt"  # clean-fid's TorchScript network (NVIDIA's StyleGAN2-ADA export)
CLEANFID_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
# The pytorch-fid port of the same TensorFlow graph; torchmetrics (through torch-fidelity)
# caches it under its own name in the same torch hub folder. Both names carry the same
# sha256 prefix, i.e. they are the same state dict.
STATE_DICT_FILES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
STATE_DICT_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"

InceptionFormat = Literal["torchscript", "state_dict"]


def cleanfid_dir() -> Path:
    """Where clean-fid keeps its network (its `feature_extractor` uses /tmp, or ./ on Windows)."""
    return Path("./") if platform.system() == "Windows" else Path("/tmp")


def torch_hub_checkpoints() -> Path:
    """Where torch.hub, pytorch-fid and torchmetrics cache state dicts ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def inception_candidates(search: Sequence[Path] | None = None) -> list[tuple[Path, InceptionFormat]]:
    """The files looked for, in order: clean-fid's TorchScript network, then the state dicts."""
    folders = [cleanfid_dir(), torch_hub_checkpoints()] if search is None else [Path(s) for s in search]
    found: list[tuple[Path, InceptionFormat]] = []
    for folder in folders:
        found.append((folder / CLEANFID_FILE, "torchscript"))
        found.extend((folder / name, "state_dict") for name in STATE_DICT_FILES)
    return found


def find_inception(search: Sequence[Path] | None = None) -> tuple[Path, InceptionFormat] | None:
    """The first Inception-v3 file present on this machine, or None. Never downloads."""
    return next(((path, kind) for path, kind in inception_candidates(search) if path.is_file()), None)


def missing_inception_message(search: Sequence[Path] | None = None) -> str:
    if search is None:
        where = (f"place clean-fid's {CLEANFID_FILE} ({CLEANFID_URL}) in {cleanfid_dir()}/ "
                 f"or {STATE_DICT_FILES[0]} ({STATE_DICT_URL}) in {torch_hub_checkpoints()}/")
    else:
        where = f"place {CLEANFID_FILE} or {STATE_DICT_FILES[0]} in one of {', '.join(str(s) for s in search)}"
    return (f"Inception-v3 weights are not on this machine and fairbench never downloads them: {where}, "
            "or set fid_features to 'setup' or 'raw'")


def pytorch_fid_inception() -> torch.nn.Module:
    """pytorch-fid's FID Inception architecture, untrained: torchvision's Inception-v3 with
    the TF-compatible blocks (clean-fid's copies), 1008 classes, no auxiliary head."""
    import torchvision
    from cleanfid import inception_pytorch as fid_blocks

    net = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b = fid_blocks.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = fid_blocks.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = fid_blocks.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = fid_blocks.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = fid_blocks.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = fid_blocks.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = fid_blocks.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = fid_blocks.FIDInceptionE_1(1280)
    net.Mixed_7c = fid_blocks.FIDInceptionE_2(2048)
    return net


def _pytorch_fid_trunk(path: Path) -> torch.nn.Module:
    """`pytorch_fid_inception` up to the 2048-d average pool, loaded with ``weights_only=True``."""
    net = pytorch_fid_inception()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except (RuntimeError, OSError, ValueError, pickle.UnpicklingError) as exc:
        raise FairbenchError(f"{str(path)!r} is not the pytorch-fid Inception-v3 state dict: {str(exc).splitlines()[0]}") from None
    pool = torch.nn.MaxPool2d(kernel_size=3, stride=2)
    return torch.nn.Sequential(
        net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, pool,
        net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, pool,
        net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e,
        net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    ).eval()


class CleanInception(torch.nn.Module):
    """Images in [-1, 1] (``[B, C, H, W]``, C = 1 or 3) -> 2048-d Inception pool features.

    Preprocessing is clean-fid's mode "clean": values mapped to [0, 255], each channel resized
    to 299x299 with PIL bicubic on float32 (no quantisation), as clean-fid does for images
    coming from a generator; grey images are repeated to 3 channels.
    """

    def __init__(self, path: Path, kind: InceptionFormat):
        super().__init__()
        from cleanfid.resize import build_resizer

        self.resize = build_resizer("clean")
        self.kind = kind
        if kind == "torchscript":
            from cleanfid.inception_torchscript import InceptionV3W

            # A TorchScript archive (restricted unpickler, TorchScript code), not a Python pickle.
            try:
                with warnings.catch_warnings():  # torch deprecates TorchScript; clean-fid's file is one
                    warnings.filterwarnings("ignore", message=".*torch.jit.load.*is deprecated", category=FutureWarning)
                    self.net = InceptionV3W(str(path.parent), download=False, resize_inside=False).eval()
            except (RuntimeError, OSError, ValueError) as exc:
                raise FairbenchError(f"{str(path)!r} is not clean-fid's TorchScript Inception-v3: {str(exc).splitlines()[0]}") from None
        else:
            self.net = _pytorch_fid_trunk(path)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise FairbenchError(f"Inception features need images [B, 1 or 3, H, W], got shape {tuple(images.shape)}")
        weight = next(self.net.parameters(), None)
        device = weight.device if weight is not None else images.device
        pixels = ((images.detach().to("cpu", torch.float32) + 1.0) * 127.5).clamp(0.0, 255.0)
        if pixels.shape[1] == 1:
            pixels = pixels.repeat(1, 3, 1, 1)
        resized = np.stack([self.resize(image.permute(1, 2, 0).numpy()) for image in pixels])
        batch = torch.from_numpy(resized).permute(0, 3, 1, 2).contiguous().to(device)
        if self.kind == "torchscript":
            return self.net(batch)  # expects [0, 255] at 299x299
        return self.net(batch / 255.0 * 2.0 - 1.0)  # the TF graph's input range


def inception_features(
    *, device: str | torch.device = "cpu", batch_size: int = 64, search: Sequence[Path] | None = None
) -> FeatureExtractor:
    """Inception-v3 pool features with clean-fid "clean" preprocessing, from a local file.

    Raises `FairbenchError` naming the file to place, and where, when none is present.
    """
    found = find_inception(search)
    if found is None:
        raise FairbenchError(missing_inception_message(search))
    path, kind = found
    module = CleanInception(path, kind).to(device)
    name = "inception-v3" if kind == "torchscript" else "inception-v3-pytorch-fid"
    return FeatureExtractor(name, module, device, batch_size)
