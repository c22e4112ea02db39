"""Utility (train on synthetic, test on real) against a direct sklearn + fairlearn computation."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fairbench.metrics.utility import fairness_of_predictions, train_synthetic_test_real


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
    pred = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_syn, y_syn).predict(x_real)
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
    pred = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_syn, y_syn).predict(x_real)
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
