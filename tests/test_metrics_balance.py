"""Attribute balance: judged distribution, FD and KL to uniform against numpy/scipy oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import log_softmax, softmax
from scipy.stats import entropy

from fairbench.metrics.balance import (
    attribute_distribution,
    balance_metrics,
    fairness_discrepancy,
    judged_distribution,
    kl_to_uniform,
)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_fd_and_kl_match_numpy_and_scipy(k):
    rng = np.random.default_rng(k)
    log_probs = log_softmax(rng.normal(size=(500, k)) + np.linspace(0, 1.5, k), axis=1)
    labels = np.argmax(log_probs, axis=1)
    p = np.eye(k)[labels].mean(axis=0)
    np.testing.assert_allclose(attribute_distribution(log_probs), p, rtol=0, atol=1e-15)
    metrics = balance_metrics(log_probs, np.arange(500) % k, [f"v{a}" for a in range(k)])
    assert metrics["fd"] == pytest.approx(math.sqrt(np.sum((p - 1 / k) ** 2)), rel=1e-12)
    assert metrics["kl_uniform"] == pytest.approx(entropy(p, np.full(k, 1 / k)), rel=1e-12)


@pytest.mark.parametrize("k", [2, 4])
def test_limits_uniform_and_one_value(k):
    assert fairness_discrepancy(np.full(k, 1 / k)) == pytest.approx(0.0, abs=1e-15)
    assert kl_to_uniform(np.full(k, 1 / k)) == pytest.approx(0.0, abs=1e-15)
    one = np.eye(k)[0]
    assert fairness_discrepancy(one) == pytest.approx(math.sqrt((k - 1) / k), rel=1e-12)
    assert kl_to_uniform(one) == pytest.approx(math.log(k), rel=1e-12)  # 0 log 0 = 0


def test_judged_distribution_per_requested_group_and_soft_probabilities():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 3))
    requested = rng.integers(0, 2, size=300)  # value 2 never requested: left out
    names = ["a", "b", "c"]
    hard = judged_distribution(log_softmax(logits, axis=1), requested, names)
    assert list(hard) == ["a", "b"]
    for code, name in enumerate(names[:2]):
        mine = requested == code
        np.testing.assert_allclose(hard[name], np.bincount(logits[mine].argmax(1), minlength=3) / mine.sum(), atol=1e-15)
    # Soft: the mean of the judge's probabilities (unnormalised logits are softmaxed).
    soft = judged_distribution(logits, requested, names, soft=True)
    np.testing.assert_allclose(soft["b"], softmax(logits[requested == 1], axis=1).mean(0), rtol=1e-12)
    assert sum(soft["a"]) == pytest.approx(1.0)


def test_judge_output_of_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"\[N, k >= 2\]"):
        attribute_distribution(np.zeros(5))
