"""Utility (train on synthetic, test on real) against a direct sklearn + fairlearn computation,
and on sklearn's real digits: real-vs-real gives ~1 of the real reference, degraded samples
score lower, noise lowest, and noise with sample-independent labels gets chance accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
from scipy.ndimage import uniform_filter
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.neighbors import KNeighborsClassifier

from fairbench.metrics.utility import fairness_of_predictions, sample_values, train_synthetic_test_real


def _data(rng, n: int, k: int, shift: float):
    """Features that carry the target (k classes) and, more weakly, the sensitive attribute."""
    target = rng.integers(0, k, size=n)
    sensitive = rng.integers(0, 2, size=n)
    x = np.c_[target + 0.8 * rng.normal(size=n), sensitive * shift + rng.normal(size=n), rng.normal(size=n)]
    return x, target, sensitive


def test_binary_target_matches_sklearn_and_fairlearn_directly():
    rng = np.random.default_rng(0)
    x_syn, y_syn, _ = _data(rng, 600, 2, 0.0)
    x_real, y_real, s_real = _data(rng, 800, 2, 1.5)
    result = train_synthetic_test_real(x_syn, y_syn, x_real, y_real, s_real, sensitive_names=["m", "f"])
    pred = KNeighborsClassifier(5).fit(x_syn, y_syn).predict(x_real)
    frame = MetricFrame(metrics=accuracy_score, y_true=y_real, y_pred=pred, sensitive_features=s_real)
    assert result.accuracy == pytest.approx(float(frame.overall), abs=1e-12)
    assert result.accuracy_by_group == pytest.approx({"m": frame.by_group[0], "f": frame.by_group[1]}, abs=1e-12)
    assert result.dp_difference == pytest.approx(demographic_parity_difference(y_real, pred, sensitive_features=s_real), abs=1e-12)
    assert result.eo_difference == pytest.approx(equalized_odds_difference(y_real, pred, sensitive_features=s_real), abs=1e-12)
    assert result.dp_difference > 0  # the real sensitive attribute leaks into the features


def test_multiclass_target_is_one_vs_rest_max_recomputed_with_numpy():
    rng = np.random.default_rng(1)
    x_syn, y_syn, _ = _data(rng, 900, 3, 0.0)
    x_real, y_real, s_real = _data(rng, 900, 3, 2.0)
    result = train_synthetic_test_real(x_syn, y_syn, x_real, y_real, s_real)
    pred = KNeighborsClassifier(5).fit(x_syn, y_syn).predict(x_real)
    groups = [s_real == g for g in (0, 1)]
    dp = max(
        max(np.mean(pred[g] == c) for g in groups) - min(np.mean(pred[g] == c) for g in groups) for c in range(3)
    )
    def rates(c, g):
        positive = y_real[g] == c
        return np.mean(pred[g][positive] == c), np.mean(pred[g][~positive] == c)  # TPR, FPR
    eo = max(
        max(abs(rates(c, groups[0])[i] - rates(c, groups[1])[i]) for i in (0, 1)) for c in range(3)
    )
    assert result.accuracy == pytest.approx(np.mean(pred == y_real), abs=1e-12)
    assert set(result.accuracy_by_group) == {"0", "1"}
    assert result.dp_difference == pytest.approx(dp, abs=1e-12)
    assert result.eo_difference == pytest.approx(eo, abs=1e-12)


def test_one_class_of_generated_labels_gives_a_constant_predictor():
    rng = np.random.default_rng(2)
    x_real, y_real, s_real = _data(rng, 200, 2, 1.0)
    result = train_synthetic_test_real(rng.normal(size=(50, 3)), np.ones(50, dtype=int), x_real, y_real, s_real)
    assert result.accuracy == pytest.approx(np.mean(y_real == 1))
    assert result.dp_difference == 0.0  # everyone gets the same prediction


def test_perfect_predictions_have_no_gaps():
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    s = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    result = fairness_of_predictions(y, y, s)
    assert result.accuracy == 1.0 and result.eo_difference == 0.0
    assert result.dp_difference == pytest.approx(max(abs(np.mean(y[s == 0] == c) - np.mean(y[s == 1] == c)) for c in range(3)))


@pytest.fixture(scope="module")
def digits():
    """sklearn's 1797 real digits in [-1, 1] as [N, 1, 8, 8], cut into two training halves and a test part."""
    data = load_digits()
    images = data.images[:, None] / 8.0 - 1.0
    order = np.random.default_rng(0).permutation(len(images))
    parts = order[:700], order[700:1400], order[1400:]
    return images, data.target, (images.reshape(len(images), -1).sum(1) > 0).astype(int), parts


def _utility(digits, train_images, train_labels):
    images, target, ink, (_, reference, test) = digits
    flat = lambda x: sample_values(x)  # noqa: E731
    return train_synthetic_test_real(
        flat(train_images), train_labels, flat(images[test]), target[test], ink[test],
        real_train=(flat(images[reference]), target[reference]),
    ).as_metrics()


def test_real_samples_give_about_the_real_reference(digits):
    images, target, _, (half, _, _) = digits
    metrics = _utility(digits, images[half], target[half])
    assert metrics["utility_accuracy_real"] > 0.9
    assert metrics["utility_fraction"] == pytest.approx(1.0, abs=0.03)


def test_degraded_samples_score_lower_and_judge_labelled_noise_lowest(digits):
    images, target, _, (half, reference, _) = digits
    rng = np.random.default_rng(1)
    flat = images.reshape(len(images), -1)
    judge = LogisticRegression(max_iter=2000).fit(flat[reference], target[reference])
    clean = _utility(digits, images[half], target[half])["utility_accuracy"]
    blurred = np.stack([uniform_filter(im, size=(1, 3, 3), mode="constant", cval=-1.0) for im in images[half]])
    blur = _utility(digits, blurred, target[half])["utility_accuracy"]
    noised = _utility(digits, np.clip(images[half] + rng.normal(0, 1.0, images[half].shape), -1, 1), target[half])["utility_accuracy"]
    noise = rng.uniform(-1, 1, size=(1000, 1, 8, 8))
    labelled_noise = _utility(digits, noise, judge.predict(noise.reshape(1000, -1)))["utility_accuracy"]
    assert clean - 0.03 > max(blur, noised) and min(blur, noised) - 0.2 > labelled_noise
    # The reason the downstream model is a neighbour vote, not a fitted model: a logistic
    # regression fitted to judge-labelled noise re-learns the judge and scores like real data.
    _, _, ink, (_, _, test) = digits
    fitted = LogisticRegression(max_iter=2000).fit(noise.reshape(1000, -1), judge.predict(noise.reshape(1000, -1)))
    assert accuracy_score(target[test], fitted.predict(flat[test])) > clean - 0.1


def test_noise_with_labels_that_ignore_the_samples_gets_chance_accuracy(digits):
    images, target, _, (_, _, test) = digits
    rng = np.random.default_rng(2)
    accuracies = [
        _utility(digits, rng.uniform(-1, 1, size=(700, 1, 8, 8)), rng.integers(0, 10, size=700))["utility_accuracy"]
        for _ in range(5)
    ]
    chance = max(np.bincount(target[test]) / len(test))  # at most the largest class share
    assert np.mean(accuracies) == pytest.approx(0.1, abs=0.03) and max(accuracies) < chance + 0.06


def test_large_images_are_area_averaged_to_at_most_16_per_side():
    x = np.random.default_rng(3).normal(size=(2, 3, 64, 32))
    values = sample_values(x)
    assert values.shape == (2, 3 * 16 * 16)
    np.testing.assert_allclose(values[0, 0], x[0, 0, :4, :2].mean(), rtol=1e-12)
    assert sample_values(np.zeros((4, 1, 8, 8))).shape == (4, 64) and sample_values(np.zeros((5, 2))).shape == (5, 2)


def test_a_capped_test_set_scores_a_uniform_subset_of_the_real_test_samples():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(400, 2))
    labels = (train[:, 0] > 0).astype(int)
    test = rng.normal(size=(3000, 2))
    test_labels = (test[:, 0] > 0).astype(int)
    sensitive = np.arange(3000) % 2
    full = train_synthetic_test_real(train, labels, test, test_labels, sensitive)
    capped = train_synthetic_test_real(train, labels, test, test_labels, sensitive, max_test=1000, seed=1)
    keep = np.sort(np.random.default_rng(1).choice(3000, 1000, replace=False))
    oracle = train_synthetic_test_real(train, labels, test[keep], test_labels[keep], sensitive[keep])
    assert capped == oracle and abs(capped.accuracy - full.accuracy) < 0.03
