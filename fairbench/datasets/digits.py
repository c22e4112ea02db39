"""The embedded default dataset: scikit-learn's bundled handwritten digits, with a measured,
biased sensitive attribute.

Source: ``sklearn.datasets.load_digits()`` (the UCI optical recognition of handwritten digits
test set): 1797 real 8x8 grey images, pixel values 0..16, shipped with scikit-learn, so
nothing is downloaded.

Definitions (all fixed by the spec, so the same spec gives the same dataset on any machine):

- image: ``x = v / 8 - 1`` in ``[-1, 1]`` (v the 0..16 pixel value), 1 channel; at
  ``resolution > 8`` bilinearly upsampled.
- target attribute ``digit``: the label, 10 values ``"0".."9"``.
- sensitive attribute ``stroke`` in ``k = levels`` ordered values (``levels = 2``: light, heavy;
  ``levels = 3``: light, medium, heavy): the ink of an image is
  ``ink = sum of its 64 pixel values``, and its level is the number of the digit's k-quantiles
  it exceeds, ``level = #{j in 1..k-1 : ink > quantile_{j/k}(ink over all 1797 images of the
  same digit)}`` (k = 2: heavy when ``ink > median``, else light; k = 3: the digit's terciles).
  Measured on the full set before any split or subsampling, so every digit holds about ``1/k``
  of each level.
- splits: within each (digit, stroke) stratum, a permutation seeded by `seed` puts the first
  ``round(split[0] n)`` images in train, the next ``round(split[1] n)`` in val, the rest in test.
- bias (train split only): among training images of digits >= 5 a fraction `bias` has the
  heaviest level, among training images of digits <= 4 a fraction `bias` has the lightest level;
  the other ``k - 1`` levels share the rest equally, ``(1 - bias) / (k - 1)`` each. For k = 2
  this is: a fraction `bias` of digits >= 5 and ``1 - bias`` of digits <= 4 is heavy. It is
  injected by subsampling each digit's training images to the largest subset with those level
  fractions ``f_j``: with ``n_j`` images of level j it keeps ``min(n_j, round(s f_j))`` of each,
  ``s = min_j n_j / f_j`` (the scarcest level whole, the others thinned), drawn with a generator
  seeded by `seed`, heaviest level first (for two levels the rule of `fairbench.datasets.bias`,
  shared with the Fashion-MNIST benchmark, bitwise). ``bias = 1 / k`` balances the strokes in every digit
  (0.5 for two levels). Val and test stay as drawn (about ``1/k`` of each level in every digit):
  the usual biased-train / unbiased-reference setting (Choi et al. 2020, "Fair generative
  modeling via weak supervision").

So a model trained on the train split and asked for "heavy" draws mostly digits >= 5 (at
``bias = 0.8``, about 80%), and for "light" mostly digits <= 4: conditional sampling
inherits the bias in what it draws, beyond the stroke itself. With three levels "medium" is
drawn from both halves alike: the bias separates the extremes.
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
from .bias import BIASED_FROM, stratified_splits

STROKE_VALUES = ("light", "heavy")
STROKE_LEVELS = {2: STROKE_VALUES, 3: ("light", "medium", "heavy")}
DIGIT_VALUES = tuple(str(d) for d in range(10))


def stroke_labels(images: np.ndarray, digits: np.ndarray, levels: int = 2) -> np.ndarray:
    """Stroke level ``#{j in 1..levels-1 : sum(pixels) > quantile_{j/levels}(ink of the same digit's images)}``.

    With two levels: 1 (heavy) where the ink exceeds its digit's median, else 0 (light).
    """
    ink = images.reshape(len(images), -1).sum(1)
    level = np.zeros(len(images), dtype=np.int64)
    for digit in np.unique(digits):
        rows = digits == digit
        cuts = np.quantile(ink[rows], np.arange(1, levels) / levels)
        level[rows] = (ink[rows][:, None] > cuts[None, :]).sum(1)
    return level


def level_fractions(digit: int, bias: float, levels: int) -> np.ndarray:
    """Wanted training fraction of each level: `bias` on the heaviest (digits >= 5) or the lightest
    (digits <= 4) level, ``(1 - bias) / (levels - 1)`` on each other one."""
    fractions = np.full(levels, (1.0 - bias) / (levels - 1))
    fractions[levels - 1 if digit >= BIASED_FROM else 0] = bias
    return fractions


def biased_subsample(digits: np.ndarray, level: np.ndarray, bias: float, seed: int, levels: int = 2) -> np.ndarray:
    """Indices of the largest subset with each digit's level fractions ``f_j`` (`level_fractions`).

    Keeps ``min(n_j, round(s f_j))`` images of level j, ``s = min_j n_j / f_j``; for two levels
    that is ``min(n_h, round(n_l f / (1 - f)))`` heavy and ``min(n_l, round(n_h (1 - f) / f))``
    light ones with ``f`` the heavy fraction.
    """
    rng = np.random.default_rng(seed)
    keep = []
    for digit in np.unique(digits):
        fractions = level_fractions(int(digit), bias, levels)
        rows = [np.flatnonzero((digits == digit) & (level == j)) for j in range(levels)]
        scale = min(len(r) / f for r, f in zip(rows, fractions))
        for j in reversed(range(levels)):  # heaviest first
            keep.append(rng.choice(rows[j], size=min(len(rows[j]), int(round(scale * fractions[j]))), replace=False))
    return np.sort(np.concatenate(keep))


@dataclass(frozen=True)
class DigitsSpec:
    """``[dataset] name = "digits"``: the embedded benchmark dataset (see the module docstring)."""

    name: Literal["digits"]
    attribute: Literal["stroke"] = "stroke"  # the sensitive attribute
    target: Literal["digit"] = "digit"  # the target attribute (utility)
    bias: float = 0.8  # fraction of the heaviest level among training digits >= 5 (of the lightest below 5)
    levels: int = 2  # stroke levels: 2 (light, heavy: the digit's median) or 3 (light, medium, heavy: its terciles)
    resolution: int = 8
    split: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])  # train, val, test
    seed: int = 0

    @property
    def sensitive(self) -> str:
        """The column of the sensitive attribute."""
        return self.attribute

    def validate(self, where: str) -> None:
        if self.levels not in STROKE_LEVELS:
            raise FairbenchError(f"{where}.levels must be one of {sorted(STROKE_LEVELS)}, got {self.levels}")
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
        k = self.levels
        level = stroke_labels(pixels, digits, k)
        split = stratified_splits(digits * k + level, tuple(self.split), self.seed)
        train = np.flatnonzero(split == "train")
        kept_train = train[biased_subsample(digits[train], level[train], self.bias, self.seed, k)]
        rows = np.sort(np.concatenate([kept_train, np.flatnonzero(split != "train")]))
        images = torch.from_numpy(pixels[rows] / 8.0 - 1.0)[:, None]
        if self.resolution != 8:
            images = torch.nn.functional.interpolate(images, size=self.resolution, mode="bilinear", align_corners=False)
        return ImageDataset(
            name="digits",
            attributes=pd.DataFrame({"stroke": level[rows], "digit": digits[rows]}),
            attribute_values={"stroke": STROKE_LEVELS[k], "digit": DIGIT_VALUES},
            split=np.asarray(split[rows], dtype=str),
            image_shape=(1, self.resolution, self.resolution),
            tensor=images.contiguous(),
            description=(
                f"scikit-learn digits, stroke = ink above its digit's median; train split subsampled so that "
                f"{self.bias:.0%} of digits >= {BIASED_FROM} and {1 - self.bias:.0%} of digits < {BIASED_FROM} are heavy"
                if k == 2 else
                f"scikit-learn digits, stroke = {k} levels of ink (its digit's {k}-quantiles); train split subsampled so that "
                f"{self.bias:.0%} of digits >= {BIASED_FROM} have the heaviest and {self.bias:.0%} of digits < {BIASED_FROM} "
                f"the lightest level"
            ),
        )


register_dataset("digits", DigitsSpec)
