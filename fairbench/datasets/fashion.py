"""Fashion-MNIST and MNIST as benchmarks: a class target and an ink attribute, biased in training.

Source: the four standard IDX files (`fairbench.datasets.idx`): Fashion-MNIST (Xiao et al.
2017; 60,000 training and 10,000 test images of 10 garment categories, 28x28 grey) or MNIST
(LeCun et al. 1998; the same format, 10 digits). ``root`` is where they are (the system
package's folder by default: ``apt-get install dataset-fashion-mnist`` puts them in
``/usr/share/datasets/fashion-mnist``).

Definitions (all fixed by the spec, so the same spec and files give the same dataset on any
machine):

- image: ``x = v / 127.5 - 1`` in ``[-1, 1]`` (v the 0..255 pixel value, 0 = background),
  1 channel, 28x28; at ``resolution = 14`` (or 7) the 28x28 image averaged over 2x2 (4x4)
  blocks.
- target attribute: the label, 10 values: ``category`` (Fashion-MNIST's ``t-shirt``,
  ``trouser``, ``pullover``, ``dress``, ``coat``, ``sandal``, ``shirt``, ``sneaker``,
  ``bag``, ``ankle-boot``) or ``digit`` (MNIST's ``"0".."9"``).
- sensitive attribute: the ink of an image is ``ink = mean of its 784 pixel values`` (at
  28x28, whatever the resolution); it is 1 when ``ink > median(ink over all 70,000 images of
  the same class)`` (training and test files together), else 0. Fashion-MNIST calls it
  ``shade`` (1 ``"dark"``, 0 ``"light"``: the garment carries more ink than its category's
  median), MNIST ``stroke`` (1 ``"heavy"``, 0 ``"light"``, as the digits benchmark).
- splits: the test file is the test split. The training file is split into train and val:
  within each (class, attribute) stratum a permutation seeded by `seed` puts the first
  ``round(val_fraction n)`` images in val, the rest in train.
- bias (train split only): among training images of classes >= 5 a fraction `bias` has the
  attribute 1 (dark, heavy), among classes <= 4 a fraction ``1 - bias``, by the subsampling
  rule of `fairbench.datasets.bias.biased_subsample` (per class the largest subset with that
  fraction, one side kept whole, the other thinned, drawn with `seed`), shared with the
  digits benchmark. ``bias = 0.5`` balances the attribute in every class. Val and test stay
  as drawn (about half dark in every class).

So at ``bias = 0.8`` a model trained on the train split and asked for "dark" draws mostly
sandals, shirts, sneakers, bags and ankle boots (categories 5-9), and for "light" mostly
t-shirts, trousers, pullovers, dresses and coats (0-4).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from ..errors import FairbenchError
from . import register_dataset
from .base import ImageDataset
from .bias import BIASED_FROM, above_class_median, biased_subsample
from .idx import SIDE, find_idx_files, layouts, read_idx_dataset

FASHION_CATEGORIES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")
SHADE_VALUES = ("light", "dark")
STROKE_VALUES = ("light", "heavy")
DIGIT_VALUES = tuple(str(d) for d in range(10))
RESOLUTIONS = (7, 14, 28)  # 28x28 averaged over 4x4, 2x2 or 1x1 blocks


def ink_attribute(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1 where an image's mean pixel value is above the median of its class, else 0."""
    return above_class_median(images.reshape(len(images), -1).astype(np.float64).mean(1), labels)


def held_out_val(strata: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """True for the rows put in val: the first ``round(val_fraction n)`` of a seeded permutation
    of each stratum."""
    rng = np.random.default_rng(seed)
    val = np.zeros(len(strata), dtype=bool)
    for stratum in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == stratum))
        val[rows[: int(round(val_fraction * len(rows)))]] = True
    return val


@dataclass(frozen=True)
class IdxBenchmarkSpec:
    """The keys both IDX datasets share (see the module docstring)."""

    root: str | None = None  # the folder of the four IDX files (default: the system package's)
    bias: float = 0.8  # fraction of attribute 1 among training classes >= 5 (1 - bias below 5)
    resolution: int = 28  # 28, or 14 / 7 (2x2 / 4x4 average pooling)
    val_fraction: float = 0.1  # of the training file, stratified
    seed: int = 0

    default_root: ClassVar[str]
    torchvision_folder: ClassVar[str]
    install_hint: ClassVar[str]
    class_values: ClassVar[tuple[str, ...]]
    attribute_values: ClassVar[tuple[str, ...]]

    @property
    def sensitive(self) -> str:
        """The column of the sensitive attribute."""
        return self.attribute

    def validate(self, where: str) -> None:
        if not 0.0 < self.bias < 1.0:
            raise FairbenchError(f"{where}.bias must be in (0, 1) (0.5 = no bias), got {self.bias}")
        if self.resolution not in RESOLUTIONS:
            raise FairbenchError(f"{where}.resolution must be one of {', '.join(map(str, RESOLUTIONS))}, got {self.resolution}")
        if not 0.0 < self.val_fraction < 1.0:
            raise FairbenchError(f"{where}.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.seed < 0:
            raise FairbenchError(f"{where}.seed must be non-negative, got {self.seed}")

    def root_path(self) -> Path:
        if self.root is not None:
            return Path(self.root).expanduser()
        if Path(self.default_root).is_dir():
            return Path(self.default_root)
        raise FairbenchError(
            f"dataset {self.name!r}: no [dataset] root given and {self.default_root} does not exist; "
            f"{self.install_hint}, or set root to {layouts(self.torchvision_folder)}"
        )

    def load(self) -> ImageDataset:
        splits = read_idx_dataset(find_idx_files(self.root_path(), self.torchvision_folder))
        pixels = np.concatenate([splits["train"].images, splits["test"].images])
        labels = np.concatenate([splits["train"].labels, splits["test"].labels])
        attribute = ink_attribute(pixels, labels)
        n_train_file = len(splits["train"].labels)
        split = np.where(np.arange(len(labels)) < n_train_file, "train", "test").astype(object)
        train_file = np.arange(n_train_file)
        val = held_out_val(labels[train_file] * 2 + attribute[train_file], self.val_fraction, self.seed)
        split[train_file[val]] = "val"
        train = train_file[~val]
        kept_train = train[biased_subsample(labels[train], attribute[train], self.bias, self.seed)]
        rows = np.sort(np.concatenate([kept_train, np.flatnonzero(split != "train")]))
        images = torch.from_numpy(pixels[rows].astype(np.float32) / 127.5 - 1.0)[:, None]
        if self.resolution != SIDE:
            images = torch.nn.functional.avg_pool2d(images, SIDE // self.resolution)
        return ImageDataset(
            name=self.name,
            attributes=pd.DataFrame({self.attribute: attribute[rows], self.target: labels[rows]}),
            attribute_values={self.attribute: self.attribute_values, self.target: self.class_values},
            split=np.asarray(split[rows], dtype=str),
            image_shape=(1, self.resolution, self.resolution),
            tensor=images.contiguous(),
            description=(
                f"{self.name} at {self.resolution}x{self.resolution}, {self.attribute} = mean ink above its class's median; "
                f"train split subsampled so that {self.bias:.0%} of classes >= {BIASED_FROM} and "
                f"{1 - self.bias:.0%} of classes < {BIASED_FROM} are {self.attribute_values[1]}"
            ),
        )


@dataclass(frozen=True)
class FashionMNISTSpec(IdxBenchmarkSpec):
    """``[dataset] name = "fashion_mnist"``: garments, sensitive attribute `shade`, target `category`."""

    name: Literal["fashion_mnist"] = "fashion_mnist"
    attribute: Literal["shade"] = "shade"
    target: Literal["category"] = "category"

    default_root: ClassVar[str] = "/usr/share/datasets/fashion-mnist"
    torchvision_folder: ClassVar[str] = "FashionMNIST"
    install_hint: ClassVar[str] = "install it with `apt-get install dataset-fashion-mnist`"
    class_values: ClassVar[tuple[str, ...]] = FASHION_CATEGORIES
    attribute_values: ClassVar[tuple[str, ...]] = SHADE_VALUES


@dataclass(frozen=True)
class MNISTSpec(IdxBenchmarkSpec):
    """``[dataset] name = "mnist"``: handwritten digits at 28x28, sensitive attribute `stroke`, target `digit`."""

    name: Literal["mnist"] = "mnist"
    attribute: Literal["stroke"] = "stroke"
    target: Literal["digit"] = "digit"

    default_root: ClassVar[str] = "/usr/share/datasets/mnist"
    torchvision_folder: ClassVar[str] = "MNIST"
    install_hint: ClassVar[str] = "put MNIST's four IDX files there"
    class_values: ClassVar[tuple[str, ...]] = DIGIT_VALUES
    attribute_values: ClassVar[tuple[str, ...]] = STROKE_VALUES


register_dataset("fashion_mnist", FashionMNISTSpec)
register_dataset("mnist", MNISTSpec)
