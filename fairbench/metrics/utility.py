"""Utility of generated data: train on synthetic, test on real.

A downstream classifier for the target attribute is trained from scratch on the generated
samples themselves and tested on held-out real data. Its inputs are the samples' raw values
(`sample_values`: images larger than 16 x 16 are area-averaged down to at most 16 x 16 per
channel), never the features of a network, so labels may come from the target judge without
the model re-reading the judge's features.

The classifier is a 5-nearest-neighbour vote (Euclidean, on the raw values): a real test
image takes the majority label of the 5 generated samples nearest to it. It scores well only
when generated samples lie near the real images of each class. A fitted model such as a
logistic regression does not: labels a judge puts on *any* inputs describe the judge's
decision function, and a model fitted to them re-learns it: on sklearn's digits, a logistic
regression trained on uniform noise labelled by a logistic-regression judge scores about as
well on real test digits as one trained on real digits, while the 5-NN vote on that noise
falls far below its score on blurred digits, itself below real digits
(tests/test_metrics_utility.py measures both). With labels that do not depend on the samples
(the generator's own condition, ``utility_target = "sensitive"``), noise gets chance accuracy.

The same classifier on the real training split gives the reference ``utility_accuracy_real``;
``utility_fraction = utility_accuracy / utility_accuracy_real`` reads as the share of real
data's utility the samples give. What it cannot see: utility a stronger model would extract;
samples that copy the training set (they score like real data); label noise of the judge on
generated samples (it lowers the score as poor samples would); and judge-labelled noise still
scores above chance by the judge's own knowledge (see above), so read it against the controls.

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

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
from sklearn.dummy import DummyClassifier
from sklearn.metrics import accuracy_score
from sklearn.neighbors import KNeighborsClassifier


MAX_SIDE = 16  # images are area-averaged to at most MAX_SIDE x MAX_SIDE per channel


@dataclass(frozen=True)
class UtilityResult:
    accuracy: float
    accuracy_by_group: dict[str, float]
    dp_difference: float
    eo_difference: float
    accuracy_real: float | None = None  # the same classifier trained on real training data
    # Per real test sample: whether the classifier trained on the samples (and, with a real
    # reference, the one trained on real data) predicts it right; what comparisons resample.
    correct: np.ndarray | None = field(default=None, compare=False, repr=False)
    correct_real: np.ndarray | None = field(default=None, compare=False, repr=False)

    def as_metrics(self) -> dict:
        metrics = {
            "utility_accuracy": self.accuracy,
            "utility_accuracy_by_group": self.accuracy_by_group,
            "utility_dp_difference": self.dp_difference,
            "utility_eo_difference": self.eo_difference,
        }
        if self.accuracy_real is not None:
            metrics["utility_accuracy_real"] = self.accuracy_real
            metrics["utility_fraction"] = self.accuracy / self.accuracy_real if self.accuracy_real > 0 else None
        return metrics


def sample_values(samples) -> np.ndarray:
    """The samples' raw values as ``[N, D]`` float64: images ``[N, C, H, W]`` with a side above
    `MAX_SIDE` are area-averaged to at most ``MAX_SIDE x MAX_SIDE`` first; anything else is flattened."""

    x = torch.as_tensor(samples).detach().to("cpu", torch.float64)
    if x.ndim == 4 and max(x.shape[2:]) > MAX_SIDE:
        x = torch.nn.functional.adaptive_avg_pool2d(x, (min(x.shape[2], MAX_SIDE), min(x.shape[3], MAX_SIDE)))
    return x.reshape(len(x), -1).numpy()


NEIGHBOURS = 5
# Real test images scored at most (a uniform random subset above it, drawn from `seed`): the
# neighbour search costs O(n_test n_train d), so the cost stays linear in the generated samples.
# 10,000 test images measure an accuracy with a standard error below 0.005.
MAX_TEST = 10_000


def downstream_classifier(labels: np.ndarray):
    """The 5-nearest-neighbour vote on raw values (fewer with fewer samples); a constant predictor for one class."""
    if len(np.unique(labels)) < 2:
        return DummyClassifier(strategy="most_frequent")
    return KNeighborsClassifier(n_neighbors=min(NEIGHBOURS, len(labels)))


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
    real_train: tuple | None = None,
    max_test: int = MAX_TEST,
    seed: int = 0,
) -> UtilityResult:
    """Fit `downstream_classifier` on generated (values, labels); score it on real data.

    `real_train` = ``(values, labels)`` of real training data: the same classifier fitted on
    it gives ``accuracy_real``, the reference of ``utility_fraction``. Above `max_test` real
    test samples, a uniform random subset of `max_test` of them (from `seed`) is scored.
    """
    if len(test_labels) > max_test:
        keep = np.sort(np.random.default_rng(seed).choice(len(test_labels), max_test, replace=False))
        test_features, test_labels, test_sensitive = (np.asarray(v)[keep] for v in (test_features, test_labels,
                                                                                     test_sensitive))
    def fitted_predictions(features, labels) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        labels = np.asarray(labels)
        return downstream_classifier(labels).fit(features, labels).predict(test_features)

    test_features = np.asarray(test_features, dtype=np.float64).reshape(len(test_features), -1)
    test_labels = np.asarray(test_labels)
    predictions = fitted_predictions(train_features, train_labels)
    result = fairness_of_predictions(
        test_labels, predictions, np.asarray(test_sensitive), sensitive_names=sensitive_names,
    )
    result = dataclasses.replace(result, correct=predictions == test_labels)
    if real_train is None:
        return result
    real_predictions = fitted_predictions(*real_train)
    reference = float(accuracy_score(test_labels, real_predictions))
    return dataclasses.replace(result, accuracy_real=reference, correct_real=real_predictions == test_labels)
