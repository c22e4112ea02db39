"""Fairness of generated data: the epsilon-fairness estimate, its interval and its p-value.

`epsilon_fairness` is the estimate the leaderboards report: the best held-out ``2 BA - 1`` of
a small panel of classifiers over one or more feature spaces, selected by nested
cross-fitting. `epsilon_linear` is the earlier estimator (one logistic regression, one
feature space), kept so the two can be compared side by side.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from itertools import combinations
from statistics import NormalDist
from typing import Any

import numpy as np
from joblib import effective_n_jobs
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ..errors import FairbenchError, lookup

# Raw sample values join the feature spaces when a sample has at most this many values (the
# 64 pixels of an 8x8 digit do; a Stable Diffusion latent does not).
RAW_FEATURE_MAX_DIM = 256
# Threads fitting the panel's classifiers (joblib's convention: -1 = one per available core).
FIT_THREADS = -1


def _logistic(n_train: int, seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))


def _svm_rbf(n_train: int, seed: int):
    # gamma = 1 / (d var(x)) on standardised features; C = 1 (scikit-learn's defaults).
    return make_pipeline(StandardScaler(), SVC(kernel="rbf", class_weight="balanced"))


def _knn(n_train: int, seed: int):
    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=max(1, round(n_train ** 0.5))))


def _hist_gradient_boosting(n_train: int, seed: int):
    return HistGradientBoostingClassifier(max_iter=100, early_stopping=False, class_weight="balanced", random_state=seed)


# name -> factory(n_train, seed) returning an unfitted scikit-learn classifier
LEARNERS: dict[str, Callable[[int, int], Any]] = {
    "logistic": _logistic,
    "svm_rbf": _svm_rbf,
    "knn": _knn,
    "hist_gradient_boosting": _hist_gradient_boosting,
}
# Logistic regression is Bayes-optimal for Gaussians of equal covariance; an RBF-kernel SVM is
# universal (spread, modes, XOR) and costs about as little at the benchmarks' sizes.
DEFAULT_LEARNERS = ("logistic", "svm_rbf")


@dataclass(frozen=True)
class EpsilonEstimate:
    value: float
    interval: tuple[float, float]
    pair: tuple[int, int]  # the pair of requested values attaining the maximum
    p_value: float | None = None  # permutation p-value of "one distribution" (None: not computed)
    learner: str = "logistic"  # the learner selected most often over (repeat, fold)
    feature_space: str = "features"  # the feature space selected most often
    # share of the (repeat, outer fold) units in which each "learner@space" was selected
    selected: dict[str, float] = field(default_factory=dict)
    # each candidate's own cross-fitted 2 BA - 1 (not nested, so not a lower bound: information only)
    candidates: dict[str, float] = field(default_factory=dict)
    statistic: float | None = None  # the unclipped repeat-averaged 2 BA - 1 the p-value tests
    # Per input sample: the fraction of the repeats' held-out predictions that say pair[1] (NaN
    # outside the pair), so that statistic = mean over pair[1]'s samples - mean over pair[0]'s.
    # What paired comparisons resample (fairbench.compare); not part of the estimate's identity.
    held_out_votes: np.ndarray | None = field(default=None, compare=False, repr=False)


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray, classes: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in classes]))


def _check_requested(requested: np.ndarray) -> np.ndarray:
    values = np.unique(requested)
    if len(values) < 2:
        raise FairbenchError("epsilon needs samples requested for at least two attribute values")
    return values


def _check_counts(y: np.ndarray, folds: int) -> None:
    counts = np.unique(y, return_counts=True)[1]
    if counts.min() < folds:
        raise FairbenchError(f"epsilon needs at least {folds} samples per requested value, got {counts.min()}")


# ---------------------------------------------------------------------------------------------
# The earlier estimator: one logistic regression, intervals without refitting.


def _linear_pair(features, y, *, folds, confidence, bootstrap, seed):
    classes = np.unique(y)
    _check_counts(y, folds)
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


def epsilon_linear(
    features: np.ndarray,
    requested: np.ndarray,
    *,
    folds: int = 5,
    confidence: float = 0.95,
    bootstrap: int = 1000,
    seed: int = 0,
) -> EpsilonEstimate:
    """The single-classifier estimate of epsilon (fairbench's first estimator, kept for comparison).

    ``max(0, 2 * balanced_accuracy - 1)`` of one logistic regression (standardised features)
    predicting `requested`, each prediction made by a model fitted on the other folds
    (stratified k-fold cross-fitting). A lower bound on TV, tight only when the groups differ
    linearly (Gaussians of equal covariance); blind to differences in spread, modes or any
    non-linear feature. Interval: percentile bootstrap of the held-out predictions within each
    group, without refitting variability. For k > 2 the largest pairwise value.
    """
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    requested = np.asarray(requested)
    best = None
    for a, b in combinations(_check_requested(requested).tolist(), 2):
        mask = (requested == a) | (requested == b)
        value, interval = _linear_pair(
            features[mask], requested[mask], folds=folds, confidence=confidence, bootstrap=bootstrap, seed=seed
        )
        if best is None or value > best.value:
            best = EpsilonEstimate(value, interval, (a, b), learner="logistic", feature_space="features")
    return best


# ---------------------------------------------------------------------------------------------
# The panel estimator.


def _fit_predict(learner: str, x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    model = LEARNERS[learner](int(train.sum()), seed)
    model.fit(x[train], y[train])
    return model.predict(x[test])


def _parallel_map(fn, items: list) -> list:
    """``[fn(item) for item in items]`` on this process's cores, in threads (scikit-learn's solvers
    release the GIL for most of a fit); each call is independent, so the results are the same
    whatever the number of threads."""
    workers = min(len(items), effective_n_jobs(FIT_THREADS))
    if workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def _nested_predictions(spaces, y, learners, folds, seed) -> tuple[np.ndarray, list[str], dict[str, float]]:
    """Held-out predictions of one nested cross-fitting (one fold split, from `seed`).

    For each outer fold k, every candidate (learner, space) is scored by its balanced accuracy
    on the two neighbouring folds j = k - 1 and k + 1 (cyclically), each predicted by a model
    fitted on the folds other than j and k; the best candidate (first in panel order on ties) is refitted on all folds
    but k and predicts fold k. So nothing fold k holds, features or labels, takes part in
    choosing or fitting the model that predicts it.
    """
    n = len(y)
    fold_of = np.empty(n, dtype=int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(n), y)):
        fold_of[test] = k
    candidates = [(learner, space) for space in spaces for learner in learners]
    # Every fit is independent of the others: (candidate, held-out folds) -> held-out predictions.
    # Outer fold k is held out alone; inner, neighbouring folds j = k + 1 (cyclically) share one
    # model fitted without both: it predicts fold j for outer fold k's selection and fold k for
    # outer fold j's. Each outer fold is so scored on its two neighbours, 2/folds of the samples.
    tasks = [(c, (k,)) for c in candidates for k in range(folds)]
    if len(candidates) > 1:
        tasks += [(c, (k, (k + 1) % folds)) for c in candidates for k in range(folds)]

    def fit(task):
        (learner, space), held_out = task
        test = np.isin(fold_of, held_out)
        return _fit_predict(learner, spaces[space], y, ~test, test, seed)

    predicted = dict(zip(tasks, _parallel_map(fit, tasks)))
    outer: dict[tuple, np.ndarray] = {}
    inner: dict[tuple, np.ndarray] = {}  # (candidate, k) -> predictions on the samples outside fold k
    for candidate in candidates:
        pred = np.empty(n, dtype=y.dtype)
        for k in range(folds):
            pred[fold_of == k] = predicted[candidate, (k,)]
        outer[candidate] = pred
        if len(candidates) == 1:
            continue
        for k in range(folds):
            inner[candidate, k] = np.empty(n, dtype=y.dtype)  # only the neighbours' entries are read
        for k in range(folds):
            j = (k + 1) % folds
            both = np.isin(fold_of, (k, j))
            pred_pair = predicted[candidate, (k, j)]
            in_j = fold_of[both] == j
            inner[candidate, k][fold_of == j] = pred_pair[in_j]
            inner[candidate, j][fold_of == k] = pred_pair[~in_j]
    classes = np.unique(y)
    final = np.empty(n, dtype=y.dtype)
    winners = []
    for k in range(folds):
        if len(candidates) == 1:
            best = candidates[0]
        else:
            scored = (fold_of == (k + 1) % folds) | (fold_of == (k - 1) % folds)
            scores = [_balanced_accuracy(y[scored], inner[c, k][scored], classes) for c in candidates]
            best = candidates[int(np.argmax(scores))]
        final[fold_of == k] = outer[best][fold_of == k]
        winners.append(f"{best[0]}@{best[1]}")
    own = {f"{c[0]}@{c[1]}": 2.0 * _balanced_accuracy(y, outer[c], classes) - 1.0 for c in candidates}
    return final, winners, own


def _half_sample_sd(spaces, y, positive, *, learners, folds, subsamples, seed) -> float:
    """Standard deviation of the estimate at n, from its spread over stratified half-samples: each
    half-sample (n/2 without replacement; no duplicates, which would leak across folds) gets its own
    nested cross-fitting; sd(n) = sd(n/2) / sqrt(2). 0 when `subsamples` < 2 or a half is too small."""
    halves = [np.flatnonzero(positive), np.flatnonzero(~positive)]
    if subsamples < 2 or min(len(h) // 2 for h in halves) < folds:
        return 0.0
    rng = np.random.default_rng(seed + 104729)
    statistics = []
    for h in range(subsamples):
        index = np.sort(np.concatenate([rng.choice(group, len(group) // 2, replace=False) for group in halves]))
        pred, _, _ = _nested_predictions({name: x[index] for name, x in spaces.items()}, y[index], learners, folds,
                                         seed + 1000 + h)
        said = pred == y[positive][0]
        statistics.append(said[positive[index]].mean() - said[~positive[index]].mean())
    return float(np.std(statistics, ddof=1) / np.sqrt(2.0))


def _pair_estimate(spaces, y, *, learners, folds, repeats, subsamples, permutations, confidence, bootstrap, seed):
    _check_counts(y, folds)
    classes = np.unique(y)
    positive = y == classes[1]
    n1, n0 = int(positive.sum()), int((~positive).sum())
    predictions, winners, own = [], [], []
    for r in range(repeats):
        pred, won, scores = _nested_predictions(spaces, y, learners, folds, seed + r)
        predictions.append(pred == classes[1])
        winners += won
        own.append(scores)
    said_positive = np.stack(predictions).astype(float)  # [repeats, n]
    # 2 BA - 1 = TPR - FPR, per repeat
    per_repeat = said_positive[:, positive].mean(1) - said_positive[:, ~positive].mean(1)
    raw = float(per_repeat.mean())
    value = min(1.0, max(0.0, raw))

    # Interval. (a) test-sample variability: percentile bootstrap of the repeat-averaged
    # statistic, samples resampled within each group, widened in quadrature by the spread over
    # fold splits; (b) refitting variability: the standard deviation of the whole estimate over
    # `subsamples` stratified half-samples, each refitted, divided by sqrt(2) (a variance that
    # falls as 1/n). Each side takes the wider of the two. The interval contains the estimate.
    rng = np.random.default_rng(seed)
    mean_positive = said_positive.mean(0)
    tpr = rng.choice(mean_positive[positive], size=(bootstrap, n1)).mean(1)
    fpr = rng.choice(mean_positive[~positive], size=(bootstrap, n0)).mean(1)
    alpha = (1.0 - confidence) / 2.0
    z = NormalDist().inv_cdf(1.0 - alpha)
    q_low, q_high = np.quantile(tpr - fpr, [alpha, 1.0 - alpha])
    split = z * (float(per_repeat.std(ddof=1)) if repeats > 1 else 0.0)
    refit = z * _half_sample_sd(spaces, y, positive, learners=learners, folds=folds, subsamples=subsamples, seed=seed)
    low = raw - max(float(np.hypot(max(raw - q_low, 0.0), split)), refit)
    high = raw + max(float(np.hypot(max(q_high - raw, 0.0), split)), refit)
    interval = (min(max(low, 0.0), value), max(min(high, 1.0), value))

    # Permutation p-value of "the groups have one distribution": the labels permuted against
    # the fixed held-out predictions (no refitting), the same permutation for every repeat.
    p_value = None
    if permutations > 0:
        labels = np.stack([rng.permutation(positive) for _ in range(permutations)]).astype(float)  # [P, n]
        null = (labels @ said_positive.T / n1 - (1.0 - labels) @ said_positive.T / n0).mean(1)
        p_value = float((1 + np.sum(null >= raw - 1e-12)) / (permutations + 1))

    counts = Counter(winners)
    learner, space = counts.most_common(1)[0][0].split("@", 1)
    selected = {name: counts[name] / len(winners) for name in sorted(counts)}
    candidates = {name: float(np.mean([scores[name] for scores in own])) for name in own[0]}
    return value, interval, p_value, learner, space, selected, candidates, raw, mean_positive


def _as_spaces(features, n: int | None = None) -> dict[str, np.ndarray]:
    if isinstance(features, Mapping):
        spaces = {str(name): np.asarray(x, dtype=np.float64).reshape(len(x), -1) for name, x in features.items()}
    else:
        spaces = {"features": np.asarray(features, dtype=np.float64).reshape(len(features), -1)}
    if not spaces:
        raise FairbenchError("epsilon needs at least one feature space")
    lengths = {name: len(x) for name, x in spaces.items()}
    expected = n if n is not None else next(iter(lengths.values()))
    if any(length != expected for length in lengths.values()):
        raise FairbenchError(f"epsilon feature spaces must hold one row per sample ({expected}); got {lengths}")
    return spaces


def raw_space_helps(feature_name: str, sample_shape: tuple[int, ...]) -> bool:
    """Whether epsilon should also search the raw sample values: they are not already the
    features and a sample has at most `RAW_FEATURE_MAX_DIM` values."""
    return feature_name != "raw" and int(np.prod(sample_shape)) <= RAW_FEATURE_MAX_DIM


def epsilon_fairness(
    features: np.ndarray | Mapping[str, np.ndarray],
    requested: np.ndarray,
    *,
    learners: tuple[str, ...] | list[str] = DEFAULT_LEARNERS,
    folds: int = 5,
    repeats: int = 3,
    subsamples: int = 8,
    permutations: int = 1000,
    confidence: float = 0.95,
    bootstrap: int = 1000,
    seed: int = 0,
) -> EpsilonEstimate:
    """Estimate epsilon in ``max_{a,b} TV(q(x | requested=a), q(x | requested=b)) <= epsilon``.

    `features`: one array ``[N, ...]`` or named feature spaces ``{name: [N, ...]}`` (a judge's
    features, the raw values where `raw_space_helps`). The panel is every (learner,
    space) pair, learners from `LEARNERS`.

    For a pair of requested values, each of `repeats` stratified `folds`-fold splits gives
    held-out predictions by nested cross-fitting (`_nested_predictions`: the candidate that
    predicts fold k is chosen and fitted without fold k). With ``TPR_r - FPR_r = 2 BA_r - 1``
    of repeat r, ``epsilon_hat = clip(mean_r (2 BA_r - 1), 0, 1)``. For any fixed classifier
    g, ``2 BA(g) - 1 = P_a(g = a) - P_b(g = a) <= TV``; each held-out prediction comes from a
    classifier fixed before its fold is seen, so the estimate is a lower bound on TV up to
    sampling noise. It is tight only where a candidate is near Bayes-optimal on a space
    that carries the difference; a difference no space carries, or too fine for n samples,
    stays invisible. For k > 2 the largest pairwise value.

    Interval at `confidence` (level ``c``, ``alpha = (1 - c)/2``, ``z = Phi^-1(1 - alpha)``):
    with ``q_alpha``, ``q_{1-alpha}`` the percentile-bootstrap quantiles (`bootstrap` resamples
    within each group of the repeat-averaged held-out predictions), ``s`` the standard deviation
    of ``2 BA_r - 1`` over repeats and ``sd`` the standard deviation of the whole estimate over
    `subsamples` refitted stratified half-samples divided by sqrt(2) (`_half_sample_sd`):
    ``low = e - max(sqrt((e - q_alpha)^2 + (z s)^2), z sd)``, ``high = e + max(sqrt((q_{1-alpha}
    - e)^2 + (z s)^2), z sd)``, clipped to [0, 1]. The first term is the test-sample
    variability, the second includes refitting.

    p-value (`permutations` > 0): ``(1 + #{pi: T(pi) >= T}) / (1 + P)``, T the unclipped
    repeat-averaged ``2 BA - 1``, T(pi) the same with the requested labels randomly permuted
    against the fixed held-out predictions. Not refitting keeps it cheap; it is slightly
    conservative (pooling the folds' models adds variance to the null). For k > 2 the
    p-value of the maximising pair times the number of pairs (Bonferroni), at most 1.
    """
    requested = np.asarray(requested)
    spaces = _as_spaces(features, len(requested))
    learners = tuple(lookup({name: name for name in LEARNERS}, name, "epsilon learner") for name in learners)
    if not learners:
        raise FairbenchError("epsilon needs at least one learner")
    if folds < 3 or repeats < 1 or subsamples < 0 or permutations < 0 or bootstrap < 1:
        raise FairbenchError(
            f"epsilon needs folds >= 3, repeats >= 1, subsamples >= 0, permutations >= 0, bootstrap >= 1; "
            f"got {folds}, {repeats}, {subsamples}, {permutations}, {bootstrap}"
        )
    pairs = list(combinations(_check_requested(requested).tolist(), 2))
    best = None
    for a, b in pairs:
        mask = (requested == a) | (requested == b)
        value, interval, p_value, learner, space, selected, candidates, raw, votes = _pair_estimate(
            {name: x[mask] for name, x in spaces.items()}, requested[mask], learners=learners, folds=folds,
            repeats=repeats, subsamples=subsamples, permutations=permutations, confidence=confidence,
            bootstrap=bootstrap, seed=seed,
        )
        if best is None or value > best.value:
            held_out_votes = np.full(len(requested), np.nan)
            held_out_votes[mask] = votes
            best = EpsilonEstimate(value, interval, (a, b), p_value, learner, space, selected, candidates, raw,
                                   held_out_votes)
    if best.p_value is not None and len(pairs) > 1:
        best = replace(best, p_value=min(1.0, best.p_value * len(pairs)))
    return best
