"""The biased-training-split rule shared by the class-labelled benchmarks (digits, Fashion-MNIST).

A benchmark of this family has a class label (the target) and a binary sensitive attribute
measured from the pixels: 1 where an image's ink is above the median of its own class, 0
otherwise, so the attribute is about half and half in every class. The training split is then
subsampled so that the attribute correlates with the class (`biased_subsample`); val and test
stay unbiased.
"""

from __future__ import annotations

import numpy as np

BIASED_FROM = 5  # classes >= 5 get the attribute's value 1 over-represented


def above_class_median(ink: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """1 where ``ink > median(ink over the images of the same class)``, else 0."""
    high = np.zeros(len(ink), dtype=np.int64)
    for value in np.unique(classes):
        rows = classes == value
        high[rows] = ink[rows] > np.median(ink[rows])
    return high


def stratified_splits(strata: np.ndarray, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """Split label per row: a seeded permutation of each stratum, cut at the given fractions."""
    rng = np.random.default_rng(seed)
    split = np.empty(len(strata), dtype=object)
    for stratum in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == stratum))
        n_train = int(round(fractions[0] * len(rows)))
        n_val = int(round(fractions[1] * len(rows)))
        split[rows[:n_train]] = "train"
        split[rows[n_train : n_train + n_val]] = "val"
        split[rows[n_train + n_val :]] = "test"
    return split


def biased_subsample(classes: np.ndarray, high: np.ndarray, bias: float, seed: int) -> np.ndarray:
    """Indices of the largest subset whose fraction of ``high == 1`` is `bias` in classes >= 5
    and ``1 - bias`` in classes < 5.

    Per class, with ``f`` the wanted fraction and ``n_h``, ``n_l`` the images with the
    attribute 1 and 0, it keeps ``min(n_h, round(n_l f / (1 - f)))`` of the first and
    ``min(n_l, round(n_h (1 - f) / f))`` of the second (one side whole, the other thinned),
    drawn with a generator seeded by `seed`.
    """
    rng = np.random.default_rng(seed)
    keep = []
    for value in np.unique(classes):
        f = bias if value >= BIASED_FROM else 1.0 - bias
        high_rows = np.flatnonzero((classes == value) & (high == 1))
        low_rows = np.flatnonzero((classes == value) & (high == 0))
        n_high = min(len(high_rows), int(round(len(low_rows) * f / (1.0 - f))))
        n_low = min(len(low_rows), int(round(len(high_rows) * (1.0 - f) / f)))
        keep.append(rng.choice(high_rows, size=n_high, replace=False))
        keep.append(rng.choice(low_rows, size=n_low, replace=False))
    return np.sort(np.concatenate(keep))
