"""Attribute balance of what was generated, per requested group, raw and corrected for the judge.

A judge (a classifier trained on real data, never the guidance classifier) gives each
sample log-probabilities over the k sensitive values. The judged distribution ``p`` of a set
of samples is the mean of the one-hot argmax labels (``soft=True``: the mean of the
probabilities instead).

The headline numbers are per requested group: each group's judged distribution is compared
with the target distribution (uniform unless configured), and the worst group is reported.
Pooled over a balanced request every method looks balanced (the unfair reference, which
gives each group exactly what it asked for, pools to a uniform distribution), so the pooled
values are kept under their own names (``fd_pooled``, ``kl_uniform_pooled``) and never
stand for balance.

A judge errs. Its confusion matrix on held-out real data, ``C[i, j] = P(judge says j | true
value i)``, links the judged and the true distribution of any set of samples the judge errs
on as it does on real data: ``p_judged = C^T p_true``. `corrected_distribution` inverts that
system (the point estimate of CLEAM, Teo et al. 2023, for k = 2, and black-box shift
estimation, Lipton et al. 2018, for any k) and projects the result onto the simplex.
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


def _target(k: int, target=None) -> np.ndarray:
    if target is None:
        return np.full(k, 1.0 / k)
    target = np.asarray(target, dtype=np.float64)
    if target.shape != (k,) or np.any(target < 0) or not np.isclose(target.sum(), 1.0):
        raise ValueError(f"a balance target must be {k} non-negative proportions summing to 1, got {target.tolist()}")
    return target


def fairness_discrepancy(p, target=None) -> float:
    """Fairness discrepancy, the L2 form of Choi et al. 2020: ``FD = || p - u ||_2``.

    ``u`` is the target distribution, uniform (``u_j = 1/k``) unless given. Other papers use
    other norms of the same difference: L1 (twice the total variation), squared L2, or L2
    divided by k; values are only comparable with papers that use this form. For one-hot
    ``p`` it is ``sqrt((k - 1) / k)``.
    """
    p = np.asarray(p, dtype=np.float64)
    return float(np.linalg.norm(p - _target(len(p), target)))


def kl_to_uniform(p, target=None) -> float:
    """``KL(p || u) = sum_j p_j log(p_j / u_j)`` with ``0 log 0 = 0``; ``u`` uniform unless given.

    As used by ITI-GEN (Zhang et al. 2023) to score attribute balance; 0 iff ``p = u``; at
    most ``log k`` for uniform ``u``; infinite where ``p`` puts mass on a value ``u`` excludes.
    """
    p = np.asarray(p, dtype=np.float64)
    u = _target(len(p), target)
    nonzero = p > 0
    if np.any(u[nonzero] == 0):
        return float("inf")
    return float(np.sum(p[nonzero] * np.log(p[nonzero] / u[nonzero])))


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


# ---------------------------------------------------------------------------------------------
# The judge's error and the correction for it


def confusion_matrix(log_probs, labels, k: int | None = None) -> np.ndarray:
    """``C[i, j] = P(argmax judge = j | true value i)`` on labelled data; rows with no data are NaN."""
    log_probs = _as_log_probs(log_probs)
    k = k or log_probs.shape[1]
    labels = np.asarray(labels).astype(int)
    counts = np.zeros((k, k))
    np.add.at(counts, (labels, log_probs.argmax(axis=1)), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / counts.sum(axis=1, keepdims=True)


def project_to_simplex(v) -> np.ndarray:
    """The Euclidean projection of `v` onto ``{p : p_j >= 0, sum_j p_j = 1}`` (sort-based, exact)."""
    v = np.asarray(v, dtype=np.float64)
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1.0
    rho = np.flatnonzero(u - cumulative / np.arange(1, len(v) + 1) > 0)[-1]
    return np.maximum(v - cumulative[rho] / (rho + 1.0), 0.0)


def corrected_distribution(p_judged, confusion) -> np.ndarray:
    """The true distribution q that the judge's `confusion` maps to `p_judged`, on the simplex.

    Solves ``C^T q = p_judged`` (least squares when C is singular) and projects q onto the
    simplex. For k = 2 with per-class accuracies ``a_0, a_1`` this is
    ``q_1 = (p_1 - (1 - a_0)) / (a_0 + a_1 - 1)``, clipped to [0, 1]: the point estimate of
    CLEAM (Teo et al. 2023). It assumes the judge errs on generated samples as on real ones;
    a judge no better than chance (``a_0 + a_1 <= 1``) carries no information to invert.
    """
    p = np.asarray(p_judged, dtype=np.float64)
    confusion = np.asarray(confusion, dtype=np.float64)
    if not np.all(np.isfinite(confusion)):
        return np.full(len(p), np.nan)
    q = np.linalg.lstsq(confusion.T, p, rcond=None)[0]
    return project_to_simplex(q)


def per_class_accuracy(confusion, value_names: Sequence[str]) -> dict[str, float | None]:
    """``{value: C[i, i]}``: the judge's accuracy on real data of each value (None where absent)."""
    diagonal = np.diag(np.asarray(confusion, dtype=np.float64))
    return {name: (float(a) if np.isfinite(a) else None) for name, a in zip(value_names, diagonal)}


# ---------------------------------------------------------------------------------------------
# The reported numbers


def _worst(distributions: dict[str, list[float]], target) -> tuple[float, float, str]:
    fds = {name: fairness_discrepancy(p, target) for name, p in distributions.items()}
    kls = {name: kl_to_uniform(p, target) for name, p in distributions.items()}
    worst = max(fds, key=fds.get)
    return fds[worst], max(kls.values()), worst


def balance_metrics(
    log_probs, requested, value_names: Sequence[str], *, soft: bool = False, target=None, confusion=None
) -> dict:
    """Balance per requested group (the worst one), pooled, and corrected for the judge's error.

    - ``fd``, ``kl_uniform``: the largest FD and the largest KL to `target` (uniform by
      default) over the requested groups' judged distributions; ``fd_worst_group`` names the
      group with the largest FD;
    - ``fd_pooled``, ``kl_uniform_pooled``: the same over all samples pooled;
    - ``judged_distribution``: the raw judged distribution of each requested group;
    - with `confusion` (the judge's confusion matrix on held-out real data):
      ``judged_distribution_corrected`` (`corrected_distribution` of each group) and
      ``fd_corrected``, the worst group's FD after correction.
    """
    groups = judged_distribution(log_probs, requested, value_names, soft=soft)
    pooled = attribute_distribution(log_probs, soft=soft)
    fd, kl, worst = _worst(groups, target)
    metrics = {
        "fd": fd,
        "kl_uniform": kl,
        "fd_worst_group": worst,
        "fd_pooled": fairness_discrepancy(pooled, target),
        "kl_uniform_pooled": kl_to_uniform(pooled, target),
        "judged_distribution": groups,
    }
    if confusion is not None:
        corrected = {name: corrected_distribution(p, confusion).tolist() for name, p in groups.items()}
        metrics["judged_distribution_corrected"] = corrected
        metrics["fd_corrected"] = _worst(corrected, target)[0]
    return metrics
