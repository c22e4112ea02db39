"""The embedded default dataset: scikit-learn's bundled handwritten digits, with a measured,
biased sensitive attribute.

Source: ``sklearn.datasets.load_digits()`` (the UCI optical recognition of handwritten digits
test set): 1797 real 8x8 grey images, pixel values 0..16, shipped with scikit-learn, so
nothing is downloaded.

Definitions (all fixed by the spec, so the same spec gives the same dataset on any machine):

- image: ``x = v / 8 - 1`` in ``[-1, 1]`` (v the 0..16 pixel value), 1 channel; at
  ``resolution > 8`` bilinearly upsampled.
- target attribute ``digit``: the label, 10 values ``"0".."9"``.
- sensitive attribute ``stroke``: the ink of an image is ``ink = sum of its 64 pixel values``;
  ``stroke = "heavy"`` when ``ink > median(ink over all 1797 images of the same digit)``, else
  ``"light"``. Measured on the full set before any split or subsampling, so it is about half
  and half within every digit.
- splits: within each (digit, stroke) stratum, a permutation seeded by `seed` puts the first
  ``round(split[0] n)`` images in train, the next ``round(split[1] n)`` in val, the rest in test.
- bias (train split only): among training images of digits >= 5 a fraction `bias` is heavy,
  among training images of digits <= 4 a fraction ``1 - bias`` is heavy. It is injected by
  subsampling each digit's training images to the largest subset with that heavy fraction
  ``f``: with ``n_h`` heavy and ``n_l`` light images it keeps
  ``min(n_h, round(n_l f / (1 - f)))`` heavy and ``min(n_l, round(n_h (1 - f) / f))`` light
  ones (one side whole, the other thinned), drawn with a generator seeded by `seed`
  (`fairbench.datasets.bias`, shared with the Fashion-MNIST benchmark).
  ``bias = 0.5`` balances the strokes in every digit. Val and test stay as drawn (about half
  heavy in every digit): the usual biased-train / unbiased-reference setting (Choi et al.
  2020, "Fair generative modeling via weak supervision").

So a model trained on the train split and asked for "heavy" draws mostly digits >= 5 (at
``bias = 0.8``, about 80%), and for "light" mostly digits <= 4: conditional sampling
inherits the bias in what it draws, beyond the stroke itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_digits

from ..errors import FairbenchError
from . import register_dataset
from .base import ImageDataset
from .bias import BIASED_FROM, above_class_median, biased_subsample, stratified_splits

STROKE_VALUES = ("light", "heavy")
DIGIT_VALUES = tuple(str(d) for d in range(10))


def stroke_labels(images: np.ndarray, digits: np.ndarray) -> np.ndarray:
    """1 (heavy) where ``sum(pixels) > median over the same digit's images``, else 0 (light)."""
    return above_class_median(images.reshape(len(images), -1).sum(1), digits)


@dataclass(frozen=True)
class DigitsSpec:
    """``[dataset] name = "digits"``: the embedded benchmark dataset (see the module docstring)."""

    name: Literal["digits"]
    attribute: Literal["stroke"] = "stroke"  # the sensitive attribute
    target: Literal["digit"] = "digit"  # the target attribute (utility)
    bias: float = 0.8  # fraction of heavy strokes among training digits >= 5 (1 - bias below 5)
    resolution: int = 8
    split: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])  # train, val, test
    seed: int = 0

    @property
    def sensitive(self) -> str:
        """The column of the sensitive attribute."""
        return self.attribute

    def validate(self, where: str) -> None:
        if not 0.0 < self.bias < 1.0:
            raise FairbenchError(f"{where}.bias must be in (0, 1) (0.5 = no bias), got {self.bias}")
        if self.resolution < 8 or self.resolution % 8:
            raise FairbenchError(f"{where}.resolution must be a multiple of 8 (8, 16, 32, ...), got {self.resolution}")
        if len(self.split) != 3 or any(f <= 0 for f in self.split) or abs(sum(self.split) - 1.0) > 1e-9:
            raise FairbenchError(f"{where}.split must be 3 positive fractions (train, val, test) summing to 1, got {self.split}")
        if self.seed < 0:
            raise FairbenchError(f"{where}.seed must be non-negative, got {self.seed}")

    def load(self) -> ImageDataset:
        bunch = load_digits()
        pixels = bunch.images.astype(np.float32)  # [1797, 8, 8], 0..16
        digits = bunch.target.astype(np.int64)
        heavy = stroke_labels(pixels, digits)
        split = stratified_splits(digits * 2 + heavy, tuple(self.split), self.seed)
        train = np.flatnonzero(split == "train")
        kept_train = train[biased_subsample(digits[train], heavy[train], self.bias, self.seed)]
        rows = np.sort(np.concatenate([kept_train, np.flatnonzero(split != "train")]))
        images = torch.from_numpy(pixels[rows] / 8.0 - 1.0)[:, None]
        if self.resolution != 8:
            images = torch.nn.functional.interpolate(images, size=self.resolution, mode="bilinear", align_corners=False)
        return ImageDataset(
            name="digits",
            attributes=pd.DataFrame({"stroke": heavy[rows], "digit": digits[rows]}),
            attribute_values={"stroke": STROKE_VALUES, "digit": DIGIT_VALUES},
            split=np.asarray(split[rows], dtype=str),
            image_shape=(1, self.resolution, self.resolution),
            tensor=images.contiguous(),
            description=(
                f"scikit-learn digits, stroke = ink above its digit's median; train split subsampled so that "
                f"{self.bias:.0%} of digits >= {BIASED_FROM} and {1 - self.bias:.0%} of digits < {BIASED_FROM} are heavy"
            ),
        )


register_dataset("digits", DigitsSpec)
