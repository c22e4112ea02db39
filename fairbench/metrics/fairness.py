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
from scipy.stats import beta as beta_distribution
from scipy.stats import t as t_distribution
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from ..errors import FairbenchError, lookup

# Raw sample values join the feature spaces when a sample has at most this many values (the
# 64 pixels of an 8x8 digit do; a Stable Diffusion latent does not).
RAW_FEATURE_MAX_DIM = 256
# Threads fitting the panel's classifiers (joblib's convention: -1 = one per available core).
FIT_THREADS = -1
# Landmarks of the kernel learner's Nystroem approximation: its fit costs O(n m^2 + n m d) and
# its prediction O(n m d), linear in the number of samples n (an exact kernel SVM is O(n^2) to
# O(n^3)). 100 landmarks match the exact RBF SVM on every known-truth case (docs/metrics.md).
KERNEL_COMPONENTS = 100
# The most training samples one fit of the panel sees (a stratified random subset above it);
# every sample is still held out and predicted. Fits then cost O(1) in n and the estimate O(n).
MAX_TRAIN = 10_000


def _logistic(n_train: int, seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))


def _svm_rbf(n_train: int, seed: int):
    # gamma = 1 / (d var(x)) on standardised features; C = 1 (scikit-learn's defaults).
    return make_pipeline(StandardScaler(), SVC(kernel="rbf", class_weight="balanced"))


def _kernel_rbf(n_train: int, seed: int):
    # The RBF kernel of `_svm_rbf` (gamma = 1 / d on standardised features), approximated by
    # Nystroem features on KERNEL_COMPONENTS random landmarks, with a logistic regression on them.
    return make_pipeline(StandardScaler(), Nystroem(kernel="rbf", n_components=min(KERNEL_COMPONENTS, n_train),
                                                    random_state=seed),
                         LogisticRegression(max_iter=2000, class_weight="balanced"))


def _knn(n_train: int, seed: int):
    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=max(1, round(n_train ** 0.5))))


def _hist_gradient_boosting(n_train: int, seed: int):
    return HistGradientBoostingClassifier(max_iter=100, early_stopping=False, class_weight="balanced", random_state=seed)


# name -> factory(n_train, seed) returning an unfitted scikit-learn classifier
LEARNERS: dict[str, Callable[[int, int], Any]] = {
    "logistic": _logistic,
    "kernel_rbf": _kernel_rbf,
    "svm_rbf": _svm_rbf,
    "knn": _knn,
    "hist_gradient_boosting": _hist_gradient_boosting,
}
# Logistic regression is Bayes-optimal for Gaussians of equal covariance; the RBF kernel is
# universal (spread, modes, XOR); its Nystroem approximation keeps the cost linear in n.
DEFAULT_LEARNERS = ("logistic", "kernel_rbf")


@dataclass(frozen=True)
class HeldOutPredictions:
    """The held-out predictions behind an estimate, for the pair of requested values it reports.

    ``predicted[r, j]`` is the requested value that the panel member selected for sample j's
    fold (in fold split r) predicts for sample ``indices[j]`` of the arrays given to
    `epsilon_fairness`, from a model chosen and fitted without that fold. ``requested[j]`` is
    that sample's requested value (``pair[0]`` or ``pair[1]``). Resampling positions j and
    calling `statistic` gives the estimate on the resample without refitting (a paired
    bootstrap between methods resamples the same positions for both).
    """

    pair: tuple[int, int]
    indices: np.ndarray  # [n] int: positions in the arrays passed to epsilon_fairness
    requested: np.ndarray  # [n]: the requested value of each sample (pair[0] or pair[1])
    predicted: np.ndarray  # [repeats, n]: out-of-fold predicted requested value

    def statistic(self, positions: np.ndarray | None = None) -> float:
        """Unclipped ``mean_r (TPR_r - FPR_r)``, ``TPR_r = P(predicted_r = b | requested = b)``,
        ``FPR_r = P(predicted_r = b | requested = a)``, (a, b) = `pair`, over `positions` (indices
        into these arrays, repeats allowed; default: all). `epsilon_fairness` reports it clipped."""
        positions = np.arange(len(self.indices)) if positions is None else np.asarray(positions)
        positive = self.requested[positions] == self.pair[1]
        said = (self.predicted[:, positions] == self.pair[1]).mean(0)
        return float(said[positive].mean() - said[~positive].mean())


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
    # the out-of-fold predictions of the selected learners for `pair` (see HeldOutPredictions)
    heldout: HeldOutPredictions | None = field(default=None, compare=False, repr=False)


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
    # (the mean of n resampled 0/1 values is Binomial(n, mean) / n: drawn so, memory O(bootstrap))
    rng = np.random.default_rng(seed)
    correct = [(pred[y == c] == c).astype(float) for c in classes]
    recall = np.stack([rng.binomial(len(hits), hits.mean(), size=bootstrap) / len(hits) for hits in correct])
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


def _training_subset(y: np.ndarray, train: np.ndarray, max_train: int, seed: int) -> np.ndarray:
    """`train` (a mask) itself, or a stratified random subset of `max_train` of its samples."""
    if train.sum() <= max_train:
        return train
    rng = np.random.default_rng(seed + 7919)
    chosen = np.zeros_like(train)
    members = np.flatnonzero(train)
    classes, counts = np.unique(y[members], return_counts=True)
    for c, count in zip(classes, counts):
        keep = max(1, int(round(max_train * count / len(members))))
        chosen[rng.choice(members[y[members] == c], keep, replace=False)] = True
    return chosen


def _fit_predict(learner: str, x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int,
                 max_train: int = MAX_TRAIN) -> np.ndarray:
    train = _training_subset(y, train, max_train, seed)
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
    # One BLAS thread per fit while the fits run side by side: nested thread pools on a few
    # cores spend their time waiting on each other.
    with threadpool_limits(1), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def _nested_predictions(spaces, y, learners, folds, seed, max_train=MAX_TRAIN) -> tuple[np.ndarray, list[str], dict[str, float]]:
    """Held-out predictions of one nested cross-fitting (one fold split, from `seed`).

    For each outer fold k, every candidate (learner, space) is scored by its balanced accuracy
    on the two neighbouring folds j = k - 1 and k + 1 (cyclically), each predicted by a model
    fitted on the folds other than j and k; the best candidate (first in panel order on ties) is refitted on all folds
    but k and predicts fold k. So nothing fold k holds, features or labels, takes part in
    choosing or fitting the model that predicts it. Each fit sees at most `max_train` samples
    (`_training_subset`); every sample is still predicted.
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
        return _fit_predict(learner, spaces[space], y, ~test, test, seed, max_train)

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


def _half_sample_sd(spaces, y, positive, *, learners, folds, subsamples, seed, max_train=MAX_TRAIN) -> float:
    """Standard deviation of the estimate at n, from its spread over stratified half-samples: each
    half-sample (n/2 of the n samples without replacement; no duplicates, which would leak across
    folds) gets its own nested cross-fitting (one fold split), and the standard deviation of their
    estimates is returned as it is. Half of a finite sample drawn without replacement varies about
    the whole as an independent sample of size n would (the variance of a size-m subsample's mean
    is ``sigma^2 / m (1 - m / n)``, which is ``sigma^2 / n`` at ``m = n / 2``: half-sampling,
    McCarthy 1969). 0 when `subsamples` < 2 or a half is too small."""
    halves = [np.flatnonzero(positive), np.flatnonzero(~positive)]
    if subsamples < 2 or min(len(h) // 2 for h in halves) < folds:
        return 0.0
    rng = np.random.default_rng(seed + 104729)
    statistics = []
    for h in range(subsamples):
        index = np.sort(np.concatenate([rng.choice(group, len(group) // 2, replace=False) for group in halves]))
        pred, _, _ = _nested_predictions({name: x[index] for name, x in spaces.items()}, y[index], learners, folds,
                                         seed + 1000 + h, max_train)
        said = pred == y[positive][0]
        statistics.append(said[positive[index]].mean() - said[~positive[index]].mean())
    return float(np.std(statistics, ddof=1))


PERMUTATION_CHUNK = 64  # permutations drawn at once: memory O(PERMUTATION_CHUNK n), flat in their number


def _permutation_p_value(said: np.ndarray, positive: np.ndarray, raw: float, permutations: int,
                         rng: np.random.Generator) -> float:
    """``(1 + #{pi: T(pi) >= T}) / (1 + P)``: T(pi) = ``mean(said | l_pi) - mean(said | not l_pi)``
    with the group labels `positive` permuted, `said` each sample's repeat-averaged prediction."""
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    exceed = 0
    for start in range(0, permutations, PERMUTATION_CHUNK):
        chunk = min(PERMUTATION_CHUNK, permutations - start)
        labels = rng.permuted(np.broadcast_to(positive, (chunk, len(positive))), axis=1)
        inside = labels @ said
        null = inside / n1 - (said.sum() - inside) / n0
        exceed += int(np.sum(null >= raw - 1e-12))
    return float((1 + exceed) / (permutations + 1))


def _pair_estimate(spaces, y, *, learners, folds, repeats, subsamples, permutations, confidence, seed,
                   max_train=MAX_TRAIN):
    _check_counts(y, folds)
    classes = np.unique(y)
    positive = y == classes[1]
    n1, n0 = int(positive.sum()), int((~positive).sum())
    predictions, winners, own = [], [], []
    for r in range(repeats):
        pred, won, scores = _nested_predictions(spaces, y, learners, folds, seed + r, max_train)
        predictions.append(pred)
        winners += won
        own.append(scores)
    predicted = np.stack(predictions)  # [repeats, n]
    said_positive = (predicted == classes[1]).astype(float)
    # 2 BA - 1 = TPR - FPR, per repeat
    per_repeat = said_positive[:, positive].mean(1) - said_positive[:, ~positive].mean(1)
    raw = float(per_repeat.mean())
    value = min(1.0, max(0.0, raw))

    # Interval (see epsilon_fairness): the refitted half-samples' standard deviation with Student's t
    # quantile where computed; otherwise the test-sample and fold-split variances, normal.
    said = said_positive.mean(0)
    refit = _half_sample_sd(spaces, y, positive, learners=learners, folds=folds, subsamples=subsamples, seed=seed,
                            max_train=max_train)
    if refit > 0.0:
        half = float(t_distribution.ppf(1.0 - (1.0 - confidence) / 2.0, subsamples - 1)) * refit
    else:
        test_var = said[positive].var(ddof=1) / n1 + said[~positive].var(ddof=1) / n0
        split_var = float(per_repeat.var(ddof=1)) / repeats if repeats > 1 else 0.0
        half = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0) * float(np.sqrt(test_var + split_var))
    interval = (min(max(raw - half, 0.0), value), max(min(raw + half, 1.0), value))

    p_value = None
    if permutations > 0:
        p_value = _permutation_p_value(said, positive, raw, permutations, np.random.default_rng(seed))

    counts = Counter(winners)
    learner, space = counts.most_common(1)[0][0].split("@", 1)
    selected = {name: counts[name] / len(winners) for name in sorted(counts)}
    candidates = {name: float(np.mean([scores[name] for scores in own])) for name in own[0]}
    return value, interval, p_value, learner, space, selected, candidates, raw, predicted


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


def _checked_learners(learners) -> tuple[str, ...]:
    learners = tuple(lookup({name: name for name in LEARNERS}, name, "epsilon learner") for name in learners)
    if not learners:
        raise FairbenchError("epsilon needs at least one learner")
    return learners


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
    max_train: int = MAX_TRAIN,
) -> EpsilonEstimate:
    """Estimate epsilon in ``max_{a,b} TV(q(x | requested=a), q(x | requested=b)) <= epsilon``.

    `features`: one array ``[N, ...]`` or named feature spaces ``{name: [N, ...]}`` (a judge's
    features, the raw values where `raw_space_helps`). The panel is every (learner,
    space) pair, learners from `LEARNERS`.

    For a pair of requested values, each of `repeats` stratified `folds`-fold splits gives
    held-out predictions by nested cross-fitting (`_nested_predictions`: the candidate that
    predicts fold k is chosen and fitted without fold k; each fit sees at most `max_train`
    samples). With ``TPR_r - FPR_r = 2 BA_r - 1`` of repeat r,
    ``epsilon_hat = clip(mean_r (2 BA_r - 1), 0, 1)``. For any fixed classifier g,
    ``2 BA(g) - 1 = P_a(g = a) - P_b(g = a) <= TV``; each held-out prediction comes from a
    classifier fixed before its fold is seen, so the estimate is a lower bound on TV up to
    sampling noise. It is tight only where a candidate is near Bayes-optimal on a space
    that carries the difference; a difference no space carries, or too fine for n samples,
    stays invisible. For k > 2 the largest pairwise value. The held-out predictions of the
    reported pair are in ``EpsilonEstimate.heldout``.

    Interval at `confidence` c, around the unclipped mean ``e``: with `subsamples` = S >= 2,
    ``e -+ t_{S-1}((1 + c)/2) sd``, ``sd`` the standard deviation of the estimate over S
    stratified half-samples, each refitted by the whole nested procedure (`_half_sample_sd`:
    half-samples of a finite sample vary as whole samples do, so no rescaling). It includes
    test-sample, fold-split and refitting (selection included) variability. With S < 2 (cheaper,
    and conservative for learners that adapt to the sample): ``e -+ z sqrt(v + w)``,
    ``z = Phi^-1((1 + c)/2)``, ``s_i`` sample i's prediction "b" averaged over the repeats,
    ``v = var(s | b) / n_b + var(s | a) / n_a`` (test samples), ``w = var_r(2 BA_r - 1) / repeats``
    (fold splits). Clipped to [0, 1] and widened to contain the estimate. It covers the expected
    held-out ``2 BA - 1`` of the procedure at this n; this is TV where a panel learner is
    Bayes-optimal (up to its O(1/n) excess error) and below TV by the learner's excess error
    otherwise (`epsilon_lower` is the bound valid for any learner). `bootstrap` is accepted for
    compatibility and unused.

    p-value (`permutations` > 0): ``(1 + #{pi: T(pi) >= T}) / (1 + P)``, T the unclipped
    repeat-averaged ``2 BA - 1``, T(pi) the same with the requested labels randomly permuted
    against the fixed held-out predictions. Not refitting keeps it cheap, but the null then
    leaves out how the folds' classifiers vary with their training labels, and the test is
    anti-conservative: on identical groups it rejects at 5% in 8-14% of draws at 500-2000 per
    group (`tools/permutation_size.py`). `epsilon_lower` > 0 is the exact test. For k > 2 the
    p-value of the maximising pair times the number of pairs (Bonferroni), at most 1.
    """
    requested = np.asarray(requested)
    spaces = _as_spaces(features, len(requested))
    learners = _checked_learners(learners)
    if folds < 3 or repeats < 1 or subsamples < 0 or permutations < 0 or bootstrap < 1 or max_train < 2 * folds:
        raise FairbenchError(
            f"epsilon needs folds >= 3, repeats >= 1, subsamples >= 0, permutations >= 0, bootstrap >= 1, "
            f"max_train >= 2 folds; got {folds}, {repeats}, {subsamples}, {permutations}, {bootstrap}, {max_train}"
        )
    pairs = list(combinations(_check_requested(requested).tolist(), 2))
    best = None
    for a, b in pairs:
        mask = (requested == a) | (requested == b)
        value, interval, p_value, learner, space, selected, candidates, raw, predicted = _pair_estimate(
            {name: x[mask] for name, x in spaces.items()}, requested[mask], learners=learners, folds=folds,
            repeats=repeats, subsamples=subsamples, permutations=permutations, confidence=confidence,
            seed=seed, max_train=max_train,
        )
        if best is None or value > best.value:
            heldout = HeldOutPredictions((a, b), np.flatnonzero(mask), requested[mask], predicted)
            best = EpsilonEstimate(value, interval, (a, b), p_value, learner, space, selected, candidates, raw, heldout)
    if best.p_value is not None and len(pairs) > 1:
        best = replace(best, p_value=min(1.0, best.p_value * len(pairs)))
    return best


# ---------------------------------------------------------------------------------------------
# A lower confidence bound on TV, valid whatever the learner.


@dataclass(frozen=True)
class EpsilonLowerBound:
    value: float  # one-sided lower confidence bound on max_ab TV(q(x|a), q(x|b))
    confidence: float
    pair: tuple[int, int]  # the pair whose bound is largest
    learner: str  # the (learner, space) chosen on the training half of that pair
    feature_space: str
    tpr: float  # held-out P(g = b | b) and P(g = b | a) of that classifier on the test half
    fpr: float
    n_test: tuple[int, int]  # test-half sizes of (a, b)


def clopper_pearson_difference_bound(hits_b: int, n_b: int, hits_a: int, n_a: int, alpha: float) -> float:
    """One-sided ``1 - alpha`` lower bound on ``p_b - p_a`` from ``hits_b ~ Bin(n_b, p_b)`` and
    independent ``hits_a ~ Bin(n_a, p_a)``: the exact Clopper-Pearson lower bound of ``p_b`` at
    ``1 - alpha/2`` minus the upper bound of ``p_a`` at ``1 - alpha/2`` (Bonferroni),
    ``L_b = Beta^-1(alpha/2; hits_b, n_b - hits_b + 1)`` (0 if hits_b = 0),
    ``U_a = Beta^-1(1 - alpha/2; hits_a + 1, n_a - hits_a)`` (1 if hits_a = n_a)."""
    low = 0.0 if hits_b == 0 else float(beta_distribution.ppf(alpha / 2.0, hits_b, n_b - hits_b + 1))
    high = 1.0 if hits_a == n_a else float(beta_distribution.ppf(1.0 - alpha / 2.0, hits_a + 1, n_a - hits_a))
    return low - high


def epsilon_lower(
    features: np.ndarray | Mapping[str, np.ndarray],
    requested: np.ndarray,
    *,
    learners: tuple[str, ...] | list[str] = DEFAULT_LEARNERS,
    folds: int = 3,
    confidence: float = 0.95,
    seed: int = 0,
    max_train: int = MAX_TRAIN,
) -> EpsilonLowerBound:
    """One-sided `confidence` lower confidence bound on ``max_{a,b} TV(q(x | a), q(x | b))``, valid
    for any learner and any distributions.

    For each pair (a, b): a stratified random half of its samples (the training half) chooses
    the (learner, space) of the panel with the best `folds`-fold cross-fitted balanced accuracy
    and fits it (at most `max_train` samples); the fitted classifier g predicts the other half.
    Given the training half, g is fixed, so on the test half ``hits_b = #{g = b | b} ~ Bin(n_b,
    TPR)`` and ``hits_a = #{g = b | a} ~ Bin(n_a, FPR)``, independent, and ``TPR - FPR = 2 BA(g) - 1
    <= TV(q_a, q_b)``. The pair's bound is `clopper_pearson_difference_bound` at ``alpha / P``
    (``alpha = 1 - confidence``, P the number of pairs); with probability at least
    ``1 - alpha`` every pair's bound is below its TV (union bound), so their maximum, clipped at 0,
    is below the maximal TV. Exact, not asymptotic: coverage is at least `confidence` at any n.
    It is looser than `epsilon_fairness` (half the samples score, half train, and the binomial
    bounds are conservative); a weak learner makes it low, never invalid.
    """
    requested = np.asarray(requested)
    spaces = _as_spaces(features, len(requested))
    learners = _checked_learners(learners)
    if not 0.0 < confidence < 1.0 or folds < 2:
        raise FairbenchError(f"epsilon_lower needs 0 < confidence < 1 and folds >= 2; got {confidence}, {folds}")
    pairs = list(combinations(_check_requested(requested).tolist(), 2))
    alpha = (1.0 - confidence) / len(pairs)
    best = None
    for a, b in pairs:
        index = np.flatnonzero((requested == a) | (requested == b))
        y = requested[index]
        _check_counts(y, 2 * folds)
        train_mask = np.zeros(len(index), dtype=bool)
        rng = np.random.default_rng(seed + 15485863)
        for c in (a, b):
            members = np.flatnonzero(y == c)
            train_mask[rng.choice(members, len(members) // 2, replace=False)] = True
        train_index = np.flatnonzero(train_mask)
        y_train = y[train_mask]
        candidates = [(learner, space) for space in spaces for learner in learners]
        chosen = candidates[0]
        if len(candidates) > 1:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            fold_of = np.empty(len(y_train), dtype=int)
            for k, (_, test) in enumerate(splitter.split(np.zeros(len(y_train)), y_train)):
                fold_of[test] = k
            classes = np.unique(y_train)

            def cross_fitted(candidate):
                learner, space = candidate
                x = spaces[space][index[train_index]]
                pred = np.empty(len(y_train), dtype=y.dtype)
                for k in range(folds):
                    pred[fold_of == k] = _fit_predict(learner, x, y_train, fold_of != k, fold_of == k, seed, max_train)
                return _balanced_accuracy(y_train, pred, classes)

            scores = _parallel_map(cross_fitted, candidates)
            chosen = candidates[int(np.argmax(scores))]
        learner, space = chosen
        said_b = _fit_predict(learner, spaces[space][index], y, train_mask, ~train_mask, seed, max_train) == b
        test_b = y[~train_mask] == b
        hits_b, n_b = int(said_b[test_b].sum()), int(test_b.sum())
        hits_a, n_a = int(said_b[~test_b].sum()), int((~test_b).sum())
        bound = max(0.0, clopper_pearson_difference_bound(hits_b, n_b, hits_a, n_a, alpha))
        if best is None or bound > best.value:
            best = EpsilonLowerBound(bound, confidence, (a, b), learner, space, hits_b / n_b, hits_a / n_a, (n_a, n_b))
    return best
