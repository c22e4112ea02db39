"""The digits dataset: its definition (recomputed from scikit-learn's data), splits and bias."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from fairbench.datasets import DATASETS, dataset_spec, load_dataset
from fairbench.errors import FairbenchError


@pytest.fixture(scope="module")
def source():
    bunch = load_digits()
    return bunch.images.astype(np.float64), bunch.target


@pytest.fixture(scope="module")
def dataset():
    return load_dataset({"name": "digits", "bias": 0.8, "seed": 0})


def test_registered_and_shaped(dataset):
    assert "digits" in DATASETS
    assert dataset.image_shape == (1, 8, 8)
    assert dataset.tensor.shape == (len(dataset), 1, 8, 8) and dataset.tensor.dtype == torch.float32
    assert float(dataset.tensor.min()) == -1.0 and float(dataset.tensor.max()) == 1.0
    assert dataset.attribute_values == {"stroke": ("light", "heavy"), "digit": tuple("0123456789")}


def test_images_are_the_real_digits_rescaled(dataset, source):
    images, _ = source
    originals = {image.tobytes() for image in images.astype(np.float32)}
    pixels = ((dataset.tensor[:, 0].numpy().astype(np.float64) + 1.0) * 8.0).astype(np.float32)
    assert all(p.tobytes() in originals for p in pixels)


def test_stroke_is_ink_above_the_median_of_its_digit(dataset, source):
    """Oracle: recompute each image's stroke from its pixels and the per-digit medians of all 1797."""
    images, digits = source
    ink = images.reshape(len(images), -1).sum(1)
    medians = {d: np.median(ink[digits == d]) for d in range(10)}
    ours_ink = ((dataset.tensor.numpy().astype(np.float64) + 1.0) * 8.0).reshape(len(dataset), -1).sum(1)
    ours_digit = dataset.labels("digit").numpy()
    expected = np.array([i > medians[d] for i, d in zip(ours_ink, ours_digit)], dtype=np.int64)
    np.testing.assert_array_equal(dataset.labels("stroke").numpy(), expected)
    # Same label pairs: each (image, digit) is the original's.
    lookup = {(img.astype(np.float32).tobytes()): d for img, d in zip(images, digits)}
    pixels = ((dataset.tensor[:, 0].numpy().astype(np.float64) + 1.0) * 8.0).astype(np.float32)
    assert all(lookup[p.tobytes()] == d for p, d in zip(pixels, ours_digit))


def heavy_fraction(dataset, split: str, high: bool) -> float:
    part = dataset.subset(split).attributes
    rows = part["digit"] >= 5 if high else part["digit"] < 5
    return float(part.loc[rows, "stroke"].mean())


@pytest.mark.parametrize("bias", [0.8, 0.65, 0.3])
def test_bias_is_injected_in_the_train_split_only(bias):
    data = load_dataset({"name": "digits", "bias": bias})
    train = data.subset("train").attributes
    for digit in range(10):
        strokes = train.loc[train["digit"] == digit, "stroke"]
        wanted = bias if digit >= 5 else 1 - bias
        # Rounding one image: the kept minority is round(n_major (1 - f) / f).
        assert abs(strokes.mean() - wanted) <= 1.0 / len(strokes), digit
    for split in ("val", "test"):
        for high in (True, False):
            assert abs(heavy_fraction(data, split, high) - 0.5) < 0.05


def test_half_bias_balances_strokes_in_every_digit_and_keeps_held_out_splits_whole(source):
    data = load_dataset({"name": "digits", "bias": 0.5})
    train = data.subset("train").attributes
    for digit in range(10):
        counts = train.loc[train["digit"] == digit, "stroke"].value_counts()
        assert counts[0] == counts[1], digit
    held_out = int((data.split != "train").sum())
    biased = load_dataset({"name": "digits", "bias": 0.8})
    assert held_out == int((biased.split != "train").sum())  # the bias never touches val and test
    assert abs(held_out - 0.3 * len(source[0])) <= 20  # two rounded cuts per (digit, stroke) stratum


def test_splits_are_deterministic_and_seeded():
    first, again = load_dataset({"name": "digits"}), load_dataset({"name": "digits"})
    assert torch.equal(first.tensor, again.tensor) and (first.split == again.split).all()
    other = load_dataset({"name": "digits", "seed": 1})
    test_first = {t.numpy().tobytes() for t in first.subset("test").tensor}
    test_other = {t.numpy().tobytes() for t in other.subset("test").tensor}
    assert test_first != test_other
    # Splits never share an image.
    train = {t.numpy().tobytes() for t in first.subset("train").tensor}
    assert not train & test_first


def test_upsampled_resolution_is_bilinear(dataset):
    """2x bilinear (half-pixel centres) then 2x2 averaging is the separable filter
    [1/8, 3/4, 1/8] with edge replication: recompute it with numpy."""
    big = load_dataset({"name": "digits", "resolution": 16})
    assert big.image_shape == (1, 16, 16) and big.tensor.shape[1:] == (1, 16, 16)
    assert torch.equal(big.labels("stroke"), dataset.labels("stroke"))
    small = dataset.tensor[:, 0].numpy().astype(np.float64)
    padded = np.pad(small, ((0, 0), (1, 1), (1, 1)), mode="edge")
    rows = padded[:, :-2] / 8 + 3 * padded[:, 1:-1] / 4 + padded[:, 2:] / 8
    expected = rows[:, :, :-2] / 8 + 3 * rows[:, :, 1:-1] / 4 + rows[:, :, 2:] / 8
    pooled = torch.nn.functional.avg_pool2d(big.tensor, 2)[:, 0].numpy()
    np.testing.assert_allclose(pooled, expected, atol=1e-6)


@pytest.mark.parametrize(
    "table, message",
    [
        ({"bias": 1.0}, "bias must be in"),
        ({"resolution": 12}, "multiple of 8"),
        ({"split": [0.5, 0.5]}, "3 positive fractions"),
        ({"attribute": "ink"}, "Valid: stroke"),
        ({"biass": 0.7}, "Did you mean: bias"),
    ],
)
def test_bad_values_are_one_clear_error(table, message):
    with pytest.raises(FairbenchError, match=message):
        dataset_spec({"name": "digits"} | table)


def test_two_levels_is_the_default_dataset_bitwise():
    default, two = load_dataset({"name": "digits", "bias": 0.8}), load_dataset({"name": "digits", "bias": 0.8, "levels": 2})
    assert torch.equal(default.tensor, two.tensor) and default.attributes.equals(two.attributes)
    assert (default.split == two.split).all()


def test_three_levels_are_the_terciles_of_each_digits_ink(source):
    """Oracle: each image's level recomputed from its pixels and its digit's terciles over all 1797."""
    images, digits = source
    ink = images.reshape(len(images), -1).sum(1)
    cuts = {d: np.quantile(ink[digits == d], [1 / 3, 2 / 3]) for d in range(10)}
    data = load_dataset({"name": "digits", "bias": 0.6, "levels": 3})
    assert data.attribute_values["stroke"] == ("light", "medium", "heavy")
    ours_ink = ((data.tensor.numpy().astype(np.float64) + 1.0) * 8.0).reshape(len(data), -1).sum(1)
    expected = [int((i > cuts[d]).sum()) for i, d in zip(ours_ink, data.labels("digit").numpy())]
    np.testing.assert_array_equal(data.labels("stroke").numpy(), expected)
    held_out = data.attributes[data.split != "train"]
    for level in range(3):  # about a third of each level where no bias is injected
        assert abs((held_out["stroke"] == level).mean() - 1 / 3) < 0.03


@pytest.mark.parametrize("bias", [0.6, 0.8, 1 / 3])
def test_three_level_bias_favours_the_heaviest_above_five_and_the_lightest_below(bias):
    data = load_dataset({"name": "digits", "bias": bias, "levels": 3})
    train = data.subset("train").attributes
    for digit in range(10):
        strokes = train.loc[train["digit"] == digit, "stroke"]
        favoured = 2 if digit >= 5 else 0
        wanted = np.full(3, (1 - bias) / 2)
        wanted[favoured] = bias
        share = np.bincount(strokes, minlength=3) / len(strokes)
        assert np.abs(share - wanted).max() <= 1.5 / len(strokes), digit  # rounding one image per level


def test_levels_other_than_two_or_three_are_refused():
    with pytest.raises(FairbenchError, match="levels must be one of"):
        load_dataset({"name": "digits", "levels": 4})
