"""Epsilon and balance per axis of a product sensitive attribute (gender x age).

A model whose attribute is the product of m axes (`fairbench.models.base.AttributeAxes`) is
requested the flat index of a tuple ``(a_1, ..., a_m)``. The flat metrics of
`fairbench.metrics.suite.evaluate` group samples by the whole tuple: they are the *joint*
values. Per axis j, the samples are grouped by the requested value of that axis alone, the
other axes pooled (each axis group is the equal mixture of the tuples that share ``a_j``,
since requests cycle over the product):

- ``epsilon_by_attribute[j]``: the epsilon estimator (`fairness.epsilon_fairness`, same panel
  and settings) between those groups, a lower bound on
  ``max_{v, w} TV(q(x | a_j = v), q(x | a_j = w))``. TV is jointly convex, so the true
  per-axis value is at most the true joint one (max over pairs of tuples); the estimates
  need not keep that order exactly.
- ``epsilon_max_by_attribute``: the largest of them (a leaderboard column).
- ``fd_by_attribute[j]`` and the rest of `balance.balance_metrics` per axis: the judge's
  label for axis j is axis j of its joint label (the argmax over the tuples), so each axis
  group's judged distribution is exactly the marginal, over the other axes, of the joint
  judged distributions of the tuples in that group, averaged. The balance target of an axis
  is the marginal of the configured target (uniform when none). ``fd_max_by_attribute``: the
  largest per-axis ``fd``.

What it cannot see: a per-axis value pools the other axes, so a method that shifts axis A
one way for one value of B and the other way for another value of B can look fair on A
while the joint value shows the difference; read the joint value beside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .balance import balance_metrics, confusion_matrix
from .fairness import epsilon_fairness


def epsilon_by_attribute(axes, spaces: Mapping[str, np.ndarray], requested, *, options, seed: int) -> dict[str, Any]:
    """``epsilon_by_attribute``, ``epsilon_ci_by_attribute``, ``epsilon_p_value_by_attribute``: {axis: value}."""
    codes = axes.decode(requested)
    out: dict[str, dict[str, Any]] = {"epsilon_by_attribute": {}, "epsilon_ci_by_attribute": {},
                                      "epsilon_p_value_by_attribute": {}}
    for j, name in enumerate(axes.names):
        estimate = epsilon_fairness(
            spaces, codes[:, j],
            learners=tuple(options.epsilon_learners), folds=options.epsilon_folds, repeats=options.epsilon_repeats,
            subsamples=options.epsilon_subsamples, permutations=options.epsilon_permutations,
            confidence=options.confidence, bootstrap=options.bootstrap, seed=seed,
            max_train=options.epsilon_max_train,
        )
        out["epsilon_by_attribute"][name] = estimate.value
        out["epsilon_ci_by_attribute"][name] = list(estimate.interval)
        out["epsilon_p_value_by_attribute"][name] = estimate.p_value
    return out | {"epsilon_max_by_attribute": max(out["epsilon_by_attribute"].values())}


def _axis_log_probs(axes, log_probs, axis: int) -> np.ndarray:
    """Log-probabilities whose argmax is axis `axis` of the joint argmax (0 there, -inf elsewhere)."""
    labels = axes.decode(np.asarray(log_probs).argmax(axis=1))[:, axis]
    one_hot = np.eye(axes.sizes[axis])[labels]
    with np.errstate(divide="ignore"):
        return np.log(one_hot)


def balance_by_attribute(axes, log_probs, requested, *, target=None, real_log_probs=None, real_labels=None) -> dict:
    """`balance.balance_metrics` per axis, as ``{metric}_by_attribute = {axis: value}``.

    With the judge's log-probabilities on labelled real data (`real_log_probs`, `real_labels`
    flat), each axis's confusion matrix is measured there with the same labelling rule and the
    corrected values follow.
    """
    requested_codes = axes.decode(requested)
    real_codes = None if real_labels is None else axes.decode(np.asarray(real_labels))
    out: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(axes.names):
        confusion = None
        if real_log_probs is not None:
            confusion = confusion_matrix(_axis_log_probs(axes, real_log_probs, j), real_codes[:, j], axes.sizes[j])
        axis_target = None if target is None else axes.marginal(target, j)
        metrics = balance_metrics(_axis_log_probs(axes, log_probs, j), requested_codes[:, j], axes.values[j],
                                  target=axis_target, confusion=confusion)
        for key, value in metrics.items():
            out.setdefault(f"{key}_by_attribute", {})[name] = value
    return out | {"fd_max_by_attribute": max(out["fd_by_attribute"].values())}
