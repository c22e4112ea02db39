"""Statistics of comparisons: paired bootstrap, Holm's correction, compact letter displays, sample sizes.

Generic pieces with no knowledge of records or metrics; `fairbench.compare` applies them to
the per-sample evidence of a run, and `fairbench.planning` to the sample size of a run.

Every method of a run starts sample i from the same noise, so sample i of method A and sample
i of method B are a pair. A paired bootstrap draws one set of sample indices per replicate
and evaluates every method's statistic on that same set: the difference's replicates then
carry the correlation the shared noise gives (usually positive, so the difference is more
precise than two separate intervals suggest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from .errors import FairbenchError


def stratified_indices(groups: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """``[replicates, N]`` resampled sample indices: row b draws, for every group g (value of
    `groups`), ``n_g`` indices with replacement from g's own indices, in g's positions; so each
    replicate keeps every group's size (the requested groups are fixed by the design)."""
    groups = np.asarray(groups)
    out = np.empty((replicates, len(groups)), dtype=np.int64)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        out[:, members] = members[rng.integers(0, len(members), size=(replicates, len(members)))]
    return out


@dataclass(frozen=True)
class Difference:
    """A paired difference ``a - b`` with its interval and two-sided p-value."""

    difference: float
    interval: tuple[float, float]
    p_value: float
    standard_error: float


def paired_difference(
    observed_a: Sequence[float], observed_b: Sequence[float], replicates_a: Sequence[np.ndarray],
    replicates_b: Sequence[np.ndarray], *, confidence: float = 0.95,
) -> Difference:
    """The difference of two statistics over S independent replicates (seeds), each paired.

    Per seed s: the observed values ``a_s, b_s`` and their bootstrap replicates ``A_sr, B_sr``
    (r = 1..R, both computed on the same resampled indices). With ``d = mean_s (a_s - b_s)``
    and ``d*_r = mean_s (A_sr - B_sr)`` (seeds resampled independently, one replicate each),
    ``se = sd_r(d*_r)``, the interval is ``d +- z se`` with ``z = Phi^-1((1 + confidence) / 2)``
    (the normal bootstrap interval) and the p-value of "no difference" is ``2 Phi(-|d| / se)``
    (1 when d = se = 0, 0 when se = 0 < |d|). The interval excludes 0 exactly when the
    p-value is below ``1 - confidence``.
    """
    if not (len(observed_a) == len(observed_b) == len(replicates_a) == len(replicates_b)) or not observed_a:
        raise ValueError("paired_difference needs the same number (at least one) of seeds on both sides")
    d = float(np.mean(np.asarray(observed_a, float) - np.asarray(observed_b, float)))
    star = np.mean([np.asarray(ra, float) - np.asarray(rb, float) for ra, rb in zip(replicates_a, replicates_b)], axis=0)
    se = float(np.std(star, ddof=1)) if len(star) > 1 else 0.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    if se > 0:
        p = 2.0 * NormalDist().cdf(-abs(d) / se)
    else:
        p = 1.0 if d == 0 else 0.0
    return Difference(d, (d - z * se, d + z * se), float(p), se)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979, A simple sequentially rejective multiple
    test procedure, Scand. J. Stat.): with the p-values sorted ascending,
    ``p_holm_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``, m the number of tests. Rejecting
    where ``p_holm < alpha`` controls the family-wise error at alpha. (scipy has no Holm;
    statsmodels' ``multipletests`` gives the same numbers but runs a full garbage collection per
    call, about a second in a process holding torch.)"""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted


def compact_letters(order: Sequence[str], different: set[frozenset[str]]) -> dict[str, str]:
    """A compact letter display: methods that share a letter are not significantly different.

    `order`: the methods, best first; `different`: the pairs declared different. The
    insert-and-absorb algorithm (Piepho 2004, An algorithm for a letter-based representation
    of all-pairwise comparisons, J. Comput. Graph. Stat.): start with one group holding every
    method; for each different pair, split each group holding both into one without the first
    and one without the second; drop groups contained in another. Letters a, b, ... are given
    to the groups in the order of their best member, so the best method carries ``a``.
    """
    names = list(order)
    groups: list[set[str]] = [set(names)]
    for pair in different:
        first, second = sorted(pair)
        changed = []
        for group in groups:
            if first in group and second in group:
                changed += [group - {first}, group - {second}]
            else:
                changed.append(group)
        # absorb: keep only groups not contained in another
        unique = []
        for group in changed:
            if group and group not in unique:
                unique.append(group)
        groups = [g for g in unique if not any(g < other for other in unique)]
    rank = {name: i for i, name in enumerate(names)}
    groups.sort(key=lambda g: sorted(rank[n] for n in g))
    letters = {name: "" for name in names}
    for index, group in enumerate(groups):
        letter = _letter(index)
        for name in group:
            letters[name] += letter
    return letters


def _letter(index: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    return alphabet[index] if index < 26 else alphabet[index // 26 - 1] + alphabet[index % 26]


# ---------------------------------------------------------------------------------------------
# Sample sizes


def z_value(probability: float) -> float:
    return NormalDist().inv_cdf(probability)


def n_for_half_width(half_width: float, *, sd_at_one: float, confidence: float = 0.95) -> int:
    """Smallest n with ``z sd_at_one / sqrt(n) <= half_width``: ``n = ceil((z sd_at_one / h)^2)``,
    ``z = Phi^-1((1 + confidence) / 2)``; `sd_at_one` the statistic's standard deviation at n = 1
    (its sd at n times sqrt(n))."""
    if half_width <= 0:
        raise FairbenchError(f"a half-width must be positive, got {half_width}")
    return max(2, int(np.ceil((z_value(0.5 + confidence / 2.0) * sd_at_one / half_width) ** 2)))


def n_for_power(difference: float, *, sd_at_one: float, power: float = 0.8, alpha: float = 0.05) -> int:
    """Smallest n at which a two-sided z-test at level alpha detects `difference` with `power`:
    ``n = ceil(((z_{1 - alpha/2} + z_power) sd_at_one / |difference|)^2)``, `sd_at_one` the
    paired difference's standard deviation at n = 1."""
    if difference == 0:
        raise FairbenchError("the difference to detect must be non-zero")
    if not (0 < power < 1 and 0 < alpha < 1):
        raise FairbenchError(f"power and alpha must lie in (0, 1), got {power} and {alpha}")
    z = z_value(1.0 - alpha / 2.0) + z_value(power)
    return max(2, int(np.ceil((z * sd_at_one / abs(difference)) ** 2)))


def epsilon_sd_at_one(tv: float) -> float:
    """The standard deviation of ``TPR - FPR`` times sqrt(n), n samples per group, for a classifier
    with ``TPR = (1 + TV) / 2`` and ``FPR = (1 - TV) / 2`` (the Bayes classifier of two symmetric
    groups): ``var = (TPR (1 - TPR) + FPR (1 - FPR)) / n = (1 - TV^2) / (2 n)``. Refitting
    variability is left out (small where the learner is well specified)."""
    if not 0 <= tv <= 1:
        raise FairbenchError(f"an epsilon must lie in [0, 1], got {tv}")
    return float(np.sqrt((1.0 - tv**2) / 2.0))
