"""Utility of generated data: train on synthetic, test on real.

A downstream classifier for the target attribute is fitted on generated samples (features
from the setup's feature map, labels from the target judge) and tested on held-out real
data. The classifier is scikit-learn's logistic regression on standardised features (a
linear probe: the same for every method, cheap, deterministic); when the generated labels
hold a single class it predicts that class.

On the real test set, with respect to the *real* sensitive attribute (fairlearn):

- ``utility_accuracy``: accuracy, and ``utility_accuracy_by_group`` per sensitive value
  (`MetricFrame`);
- ``utility_dp_difference``: ``max_c [max_g P(yhat = c | s = g) - min_g P(yhat = c | s = g)]``;
- ``utility_eo_difference``: ``max_c max(TPR gap, FPR gap)`` of the indicators
  ``1[y = c]``, ``1[yhat = c]``.

For a multi-class target both are one-vs-rest, the largest over the classes ``c`` seen in
the labels or the predictions (fairlearn's `demographic_parity_difference` /
`equalized_odds_difference` on each indicator). For a binary target every indicator gives
the same value, so this is exactly fairlearn's binary metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class UtilityResult:
    accuracy: float
    accuracy_by_group: dict[str, float]
    dp_difference: float
    eo_difference: float

    def as_metrics(self) -> dict:
        return {
            "utility_accuracy": self.accuracy,
            "utility_accuracy_by_group": self.accuracy_by_group,
            "utility_dp_difference": self.dp_difference,
            "utility_eo_difference": self.eo_difference,
        }


def downstream_classifier(labels: np.ndarray):
    """Logistic regression on standardised features; a constant predictor for one class."""
    if len(np.unique(labels)) < 2:
        return DummyClassifier(strategy="most_frequent")
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def one_vs_rest_max(metric, y_true: np.ndarray, y_pred: np.ndarray, sensitive: np.ndarray) -> float:
    """``max_c metric(1[y = c], 1[yhat = c], sensitive)`` over every class c seen.

    A 0/1 target gets fairlearn's binary metric itself: the two indicators agree unless a
    group lacks one class, where a rate is undefined (scikit-learn reads it as 0) and the
    c = 0 indicator would report a different gap than the binary metric.
    """
    classes = np.union1d(y_true, y_pred)
    if set(classes.tolist()) <= {0, 1}:
        return float(metric(y_true, y_pred, sensitive_features=sensitive))
    return float(max(
        metric((y_true == c).astype(int), (y_pred == c).astype(int), sensitive_features=sensitive) for c in classes
    ))


def fairness_of_predictions(
    y_true, y_pred, sensitive, *, sensitive_names: Sequence[str] | None = None
) -> UtilityResult:
    """Accuracy (overall and per sensitive group, `MetricFrame`), DP and EO differences."""
    y_true, y_pred, sensitive = (np.asarray(v) for v in (y_true, y_pred, sensitive))
    frame = MetricFrame(metrics=accuracy_score, y_true=y_true, y_pred=y_pred, sensitive_features=sensitive)
    name = (lambda g: sensitive_names[int(g)]) if sensitive_names is not None else str
    return UtilityResult(
        accuracy=float(frame.overall),
        accuracy_by_group={name(g): float(v) for g, v in frame.by_group.items()},
        dp_difference=one_vs_rest_max(demographic_parity_difference, y_true, y_pred, sensitive),
        eo_difference=one_vs_rest_max(equalized_odds_difference, y_true, y_pred, sensitive),
    )


def train_synthetic_test_real(
    train_features,
    train_labels,
    test_features,
    test_labels,
    test_sensitive,
    *,
    sensitive_names: Sequence[str] | None = None,
) -> UtilityResult:
    """Fit `downstream_classifier` on generated (features, labels); score it on real data."""
    train_features = np.asarray(train_features, dtype=np.float64).reshape(len(train_features), -1)
    test_features = np.asarray(test_features, dtype=np.float64).reshape(len(test_features), -1)
    train_labels = np.asarray(train_labels)
    classifier = downstream_classifier(train_labels).fit(train_features, train_labels)
    return fairness_of_predictions(
        np.asarray(test_labels), classifier.predict(test_features), np.asarray(test_sensitive),
        sensitive_names=sensitive_names,
    )
