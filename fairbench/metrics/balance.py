"""Attribute balance of what was generated: the judged distribution, FD and KL to uniform.

A judge (a classifier trained on real data, never the guidance classifier) gives each
sample log-probabilities over the k sensitive values. The judged distribution ``p`` is the
mean of the one-hot argmax labels (``soft=True``: the mean of the probabilities instead).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_log_probs(log_probs) -> np.ndarray:
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if log_probs.ndim != 2 or log_probs.shape[1] < 2:
        raise ValueError(f"a judge must return log-probabilities of shape [N, k >= 2], got {log_probs.shape}")
    return log_probs


def attribute_distribution(log_probs, *, soft: bool = False) -> np.ndarray:
    """``p_j = (1/N) sum_i 1[argmax_c l_ic = j]`` (hard) or ``(1/N) sum_i exp(l_ij)`` (soft).

    `log_probs` is ``[N, k]``; the soft form renormalises each row, so a judge returning
    unnormalised logits gives its softmax.
    """
    log_probs = _as_log_probs(log_probs)
    k = log_probs.shape[1]
    if len(log_probs) == 0:
        return np.full(k, np.nan)
    if soft:
        shifted = np.exp(log_probs - log_probs.max(axis=1, keepdims=True))
        return (shifted / shifted.sum(axis=1, keepdims=True)).mean(axis=0)
    return np.bincount(log_probs.argmax(axis=1), minlength=k) / len(log_probs)


def fairness_discrepancy(p) -> float:
    """Fairness discrepancy of Choi et al. 2020: ``FD = || p - u ||_2``, ``u_j = 1/k``."""
    p = np.asarray(p, dtype=np.float64)
    return float(np.linalg.norm(p - 1.0 / len(p)))


def kl_to_uniform(p) -> float:
    """``KL(p || u) = sum_j p_j log(p_j / (1/k)) = sum_j p_j log(k p_j)``, with ``0 log 0 = 0``.

    As used by ITI-GEN (Zhang et al. 2023) to score attribute balance; 0 iff p is uniform,
    at most ``log k``.
    """
    p = np.asarray(p, dtype=np.float64)
    nonzero = p > 0
    return float(np.sum(p[nonzero] * np.log(len(p) * p[nonzero])))


def judged_distribution(
    log_probs, requested, value_names: Sequence[str], *, soft: bool = False
) -> dict[str, list[float]]:
    """``{requested value name: [p_1..p_k]}``: the judged distribution of each requested group.

    Groups with no samples are left out.
    """
    log_probs = _as_log_probs(log_probs)
    requested = np.asarray(requested)
    return {
        name: attribute_distribution(log_probs[requested == a], soft=soft).tolist()
        for a, name in enumerate(value_names)
        if np.any(requested == a)
    }


def balance_metrics(log_probs, requested, value_names: Sequence[str], *, soft: bool = False) -> dict:
    """``fd``, ``kl_uniform`` over all samples and ``judged_distribution`` per requested group."""
    p = attribute_distribution(log_probs, soft=soft)
    return {
        "fd": fairness_discrepancy(p),
        "kl_uniform": kl_to_uniform(p),
        "judged_distribution": judged_distribution(log_probs, requested, value_names, soft=soft),
    }
