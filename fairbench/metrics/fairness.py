"""Fairness of generated data: the epsilon-fairness estimate and its confidence interval."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..errors import FairbenchError


@dataclass(frozen=True)
class EpsilonEstimate:
    value: float
    interval: tuple[float, float]
    pair: tuple[int, int]  # the pair of requested values attaining the maximum


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray, classes: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in classes]))


def _pair_epsilon(features, y, *, folds, confidence, bootstrap, seed):
    classes = np.unique(y)
    counts = np.array([(y == c).sum() for c in classes])
    if counts.min() < folds:
        raise FairbenchError(f"epsilon needs at least {folds} samples per requested value, got {counts.min()}")
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    pred = cross_val_predict(classifier, features, y, cv=splits)
    value = max(0.0, 2.0 * _balanced_accuracy(y, pred, classes) - 1.0)
    # Percentile bootstrap over the held-out predictions, resampled within each group.
    rng = np.random.default_rng(seed)
    correct = [(pred[y == c] == c).astype(float) for c in classes]
    recall = np.stack([rng.choice(hits, size=(bootstrap, len(hits))).mean(1) for hits in correct])
    draws = np.maximum(0.0, 2.0 * recall.mean(0) - 1.0)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return value, (float(low), float(high))


def epsilon_fairness(
    features: np.ndarray,
    requested: np.ndarray,
    *,
    folds: int = 5,
    confidence: float = 0.95,
    bootstrap: int = 1000,
    seed: int = 0,
) -> EpsilonEstimate:
    """Estimate epsilon in ``max_{a,b} TV(q(x | requested=a), q(x | requested=b)) <= epsilon``.

    ``epsilon_hat = max(0, 2 * balanced_accuracy - 1)`` of a logistic-regression classifier
    (standardised features) that predicts `requested` from the sample features, each
    prediction made by a model fitted on the other folds (stratified k-fold cross-fitting),
    so every sample is held out once. For k > 2 it is the largest pairwise value. Since any
    classifier's ``2 BA - 1`` is at most the TV, this is a lower bound on TV (tight when the
    classifier is Bayes-optimal, as logistic regression is for Gaussians of equal covariance).
    Interval: percentile bootstrap (`bootstrap` resamples within each group) of the held-out
    predictions, at the given `confidence`: the ``(1 - confidence)/2`` and
    ``(1 + confidence)/2`` quantiles of ``max(0, 2 * BA* - 1)`` over resampled per-group
    recalls. It does not include refitting variability. For k > 2 it is the interval of the
    pair attaining the maximum (`EpsilonEstimate.pair`). `features` may be any per-sample
    features (raw values, a judge's layer); they are standardised before fitting.
    """
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    requested = np.asarray(requested)
    values = np.unique(requested)
    if len(values) < 2:
        raise FairbenchError("epsilon needs samples requested for at least two attribute values")
    best = None
    for a, b in combinations(values.tolist(), 2):
        mask = (requested == a) | (requested == b)
        value, interval = _pair_epsilon(
            features[mask], requested[mask], folds=folds, confidence=confidence, bootstrap=bootstrap, seed=seed
        )
        if best is None or value > best.value:
            best = EpsilonEstimate(value, interval, (a, b))
    return best
