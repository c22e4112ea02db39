"""Bias inheritance: how much the target attribute still depends on the sensitive attribute.

The digits training split ties stroke to digit (heavy strokes over-represented among digits
>= 5). A generator trained on it and asked for "heavy" draws mostly large digits: balancing
the stroke does not remove that dependence. These numbers show it.

For a grouping of samples (by requested value, or by the value each sample ends with) and
target labels (the target judge's argmax for generated samples; the true labels for real
data), ``r_g`` is the target distribution of group g, and

    target_gap = max over pairs of groups (g, h) of TV(r_g, r_h) = 1/2 sum_y |r_g(y) - r_h(y)|.

On generated samples it is the larger of the two groupings (requested, final), with a
bias-corrected percentile bootstrap interval (samples resampled within each group, labels
fixed; the replicates' quantiles shifted by the replicates' mean minus the estimate, because
the plug-in TV of a resample is biased upward again, so the plain percentile interval sits
above the estimate and often excludes it). The same
number on the real biased training split and on the unbiased held-out split (grouped by the
real sensitive attribute) shows what "inherited" and "removed" look like.

The plug-in TV of finite groups is biased upward: two groups of n drawn from one distribution
over m classes give roughly ``sqrt(m / (2 pi n))`` instead of 0. ``target_gap_null`` is that
floor for the record's own groups: the mean gap after shuffling the labels across the groups
(200 permutations). The held-out reference does not carry it: the digits splits are
stratified by (digit, stroke), so their groups match almost exactly by construction.

What it cannot see: the judge's errors on generated samples; and any dependence on the
sensitive attribute that the target labels do not capture (how a "7" is drawn).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def group_distributions(labels, groups, group_names: Sequence[str], m: int) -> dict[str, list[float]]:
    """``{group name: [r(0) .. r(m-1)]}``, the label distribution of each non-empty group."""
    labels, groups = np.asarray(labels).astype(int), np.asarray(groups).astype(int)
    return {
        name: (np.bincount(labels[groups == g], minlength=m) / np.sum(groups == g)).tolist()
        for g, name in enumerate(group_names)
        if np.any(groups == g)
    }


def max_pairwise_tv(distributions) -> float:
    """``max_{g, h} 1/2 || r_g - r_h ||_1`` over the given distributions (0 for fewer than two)."""
    rows = np.asarray(list(distributions.values()) if isinstance(distributions, dict) else distributions, dtype=np.float64)
    if len(rows) < 2:
        return 0.0
    return float(0.5 * np.abs(rows[:, None, :] - rows[None, :, :]).sum(axis=2).max())


def _counts(labels: np.ndarray, groups: np.ndarray, k: int, m: int) -> np.ndarray:
    counts = np.zeros((k, m))
    np.add.at(counts, (groups, labels), 1.0)
    return counts


def _gap_of_counts(counts: np.ndarray) -> float:
    present = counts.sum(axis=1) > 0
    rows = counts[present] / counts[present].sum(axis=1, keepdims=True)
    return max_pairwise_tv(rows)


def target_gap(labels, groupings: Sequence, k: int, m: int, *, bootstrap: int = 1000, confidence: float = 0.95,
               seed: int = 0) -> tuple[float, tuple[float, float]]:
    """The largest `max_pairwise_tv` over `groupings` (arrays of group codes 0..k-1) and its interval.

    Each bootstrap replicate resamples the labels within every group of every grouping
    (multinomial on the group's own label distribution, group sizes kept) and takes the same
    maximum; the interval is the percentile interval of the replicates shifted by their bias
    (mean replicate minus the estimate), clipped to [0, 1].
    """
    labels = np.asarray(labels).astype(int)
    counts = [_counts(labels, np.asarray(g).astype(int), k, m) for g in groupings]
    value = max(_gap_of_counts(c) for c in counts)
    rng = np.random.default_rng(seed)
    replicates = np.empty(bootstrap)
    for b in range(bootstrap):
        gaps = []
        for c in counts:
            n = c.sum(axis=1)
            resampled = np.array([rng.multinomial(int(size), row / size) if size > 0 else row for row, size in zip(c, n)])
            gaps.append(_gap_of_counts(resampled))
        replicates[b] = max(gaps)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha]) - (replicates.mean() - value)
    return value, (float(max(low, 0.0)), float(min(high, 1.0)))


def null_gap(labels, groupings: Sequence, k: int, m: int, *, permutations: int = 200, seed: int = 0) -> float:
    """Mean `target_gap` with the labels shuffled across the groups (group sizes kept): the floor of no dependence."""
    labels = np.asarray(labels).astype(int)
    rng = np.random.default_rng(seed)
    gaps = [
        max(_gap_of_counts(_counts(rng.permutation(labels), np.asarray(g).astype(int), k, m)) for g in groupings)
        for _ in range(permutations)
    ]
    return float(np.mean(gaps))


def inheritance_metrics(target_labels, requested, final, value_names: Sequence[str], target_names: Sequence[str], *,
                        bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """``target_distribution_by_requested``, ``target_distribution_by_final``, ``target_gap``, ``target_gap_ci``,
    ``target_gap_null``."""
    k, m = len(value_names), len(target_names)
    requested = np.asarray(requested).astype(int)
    final = requested if final is None else np.asarray(final).astype(int)
    gap, interval = target_gap(target_labels, [requested, final], k, m, bootstrap=bootstrap, confidence=confidence, seed=seed)
    return {
        "target_distribution_by_requested": group_distributions(target_labels, requested, value_names, m),
        "target_distribution_by_final": group_distributions(target_labels, final, value_names, m),
        "target_gap": gap,
        "target_gap_ci": list(interval),
        "target_gap_null": null_gap(target_labels, [requested, final], k, m, seed=seed),
    }


def real_target_gap(target, sensitive, k: int, m: int) -> float:
    """`target_gap` of real data: true target labels grouped by the real sensitive attribute (no interval)."""
    return _gap_of_counts(_counts(np.asarray(target).astype(int), np.asarray(sensitive).astype(int), k, m))
