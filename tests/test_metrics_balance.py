"""Attribute balance: judged distribution, FD and KL per requested group against numpy/scipy
oracles, the ranking of planted controls, and the correction for a judge's error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import log_softmax, softmax
from scipy.stats import entropy

from fairbench.metrics.balance import (
    attribute_distribution,
    balance_metrics,
    confusion_matrix,
    corrected_distribution,
    fairness_discrepancy,
    judged_distribution,
    kl_to_uniform,
    per_class_accuracy,
    project_to_simplex,
)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_fd_and_kl_match_numpy_and_scipy(k):
    rng = np.random.default_rng(k)
    log_probs = log_softmax(rng.normal(size=(500, k)) + np.linspace(0, 1.5, k), axis=1)
    labels = np.argmax(log_probs, axis=1)
    p = np.eye(k)[labels].mean(axis=0)
    np.testing.assert_allclose(attribute_distribution(log_probs), p, rtol=0, atol=1e-15)
    requested = np.arange(500) % k
    metrics = balance_metrics(log_probs, requested, [f"v{a}" for a in range(k)])
    assert metrics["fd_pooled"] == pytest.approx(math.sqrt(np.sum((p - 1 / k) ** 2)), rel=1e-12)
    assert metrics["kl_uniform_pooled"] == pytest.approx(entropy(p, np.full(k, 1 / k)), rel=1e-12)
    # The headline numbers: the worst requested group.
    groups = [np.eye(k)[labels[requested == a]].mean(axis=0) for a in range(k)]
    fds = [math.sqrt(np.sum((g - 1 / k) ** 2)) for g in groups]
    assert metrics["fd"] == pytest.approx(max(fds), rel=1e-12)
    assert metrics["fd_worst_group"] == f"v{int(np.argmax(fds))}"
    assert metrics["kl_uniform"] == pytest.approx(max(entropy(g, np.full(k, 1 / k)) for g in groups), rel=1e-12)


def _planted_judgements(kind: str, n: int, k: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Judge log-probabilities of n samples requested in turn: `unfair` gives every sample the value
    it asked for; `fair` draws each value uniformly, whatever was asked."""
    requested = np.arange(n) % k
    values = requested if kind == "unfair" else rng.integers(0, k, size=n)
    return np.log(np.eye(k)[values] * 0.98 + 0.02 / k), requested


@pytest.mark.parametrize("k", [2, 3])
def test_per_group_balance_ranks_the_unfair_control_worst_where_pooled_cannot(k):
    rng = np.random.default_rng(1)
    names = [f"v{a}" for a in range(k)]
    unfair = balance_metrics(*_planted_judgements("unfair", 3000, k, rng), names)
    fair = balance_metrics(*_planted_judgements("fair", 3000, k, rng), names)
    # Every group of the unfair control holds one value: FD = sqrt((k - 1) / k), KL = log k, exactly.
    assert unfair["fd"] == pytest.approx(math.sqrt((k - 1) / k), rel=1e-12)
    assert unfair["kl_uniform"] == pytest.approx(math.log(k), rel=1e-12)
    # The fair control is within sampling noise of uniform (group size 3000 / k).
    assert fair["fd"] < 4 * math.sqrt((k - 1) / 3000)
    assert unfair["fd"] > 10 * fair["fd"] and unfair["kl_uniform"] > 10 * fair["kl_uniform"]
    # Pooled over the balanced request, the unfair control looks perfectly balanced.
    assert unfair["fd_pooled"] == pytest.approx(0.0, abs=1e-12)


def test_a_configured_target_replaces_uniform():
    p = np.array([0.7, 0.3])
    assert fairness_discrepancy(p, [0.7, 0.3]) == pytest.approx(0.0, abs=1e-15)
    assert kl_to_uniform(p, [0.7, 0.3]) == pytest.approx(0.0, abs=1e-15)
    assert kl_to_uniform(p, [0.5, 0.5]) == pytest.approx(entropy(p, [0.5, 0.5]), rel=1e-12)
    assert kl_to_uniform(p, [1.0, 0.0]) == math.inf
    with pytest.raises(ValueError, match="balance target"):
        fairness_discrepancy(p, [0.5, 0.6])


def test_simplex_projection_is_the_nearest_point_of_the_simplex():
    rng = np.random.default_rng(2)
    for _ in range(50):
        v = rng.normal(size=4)
        q = project_to_simplex(v)
        assert q.min() >= 0 and q.sum() == pytest.approx(1.0, abs=1e-12)
        # No simplex point is nearer: compare with many random points of the simplex.
        others = rng.dirichlet(np.ones(4), size=2000)
        assert np.linalg.norm(v - q) <= np.linalg.norm(v - others, axis=1).min() + 1e-12
    np.testing.assert_allclose(project_to_simplex([0.2, 0.3, 0.5]), [0.2, 0.3, 0.5], atol=1e-15)


@pytest.mark.parametrize("confusion, truth", [
    ([[0.9, 0.1], [0.25, 0.75]], [0.9, 0.1]),
    ([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.05, 0.05, 0.9]], [0.2, 0.5, 0.3]),
])
def test_a_planted_judge_confusion_is_measured_on_real_data_and_its_correction_recovers_the_truth(confusion, truth):
    rng = np.random.default_rng(3)
    confusion, truth = np.asarray(confusion), np.asarray(truth)
    k = len(truth)

    def judge(values):  # the judge labels a sample of true value i as j with probability C[i, j]
        said = np.array([rng.choice(k, p=confusion[v]) for v in values])
        return np.log(np.eye(k)[said] * 0.98 + 0.02 / k)

    real = np.arange(6000) % k  # held-out real data with its true labels
    measured = confusion_matrix(judge(real), real, k)
    np.testing.assert_allclose(measured, confusion, atol=0.03)
    assert per_class_accuracy(measured, ["a", "b", "c"][:k]) == pytest.approx(dict(zip("abc", np.diag(measured))))
    generated = rng.choice(k, p=truth, size=20000)
    log_probs = judge(generated)
    raw = np.bincount(log_probs.argmax(1), minlength=k) / len(generated)
    assert np.abs(raw - truth).max() > 0.05  # the judge's error is visible in the raw proportions
    corrected = corrected_distribution(raw, measured)
    np.testing.assert_allclose(corrected, truth, atol=0.03)
    # The suite's numbers: requested all for value 0, corrected per group.
    metrics = balance_metrics(log_probs, np.zeros(len(generated), int), [f"v{a}" for a in range(k)], confusion=measured)
    np.testing.assert_allclose(metrics["judged_distribution_corrected"]["v0"], corrected, atol=1e-12)
    assert metrics["fd_corrected"] == pytest.approx(fairness_discrepancy(corrected), rel=1e-12)


def test_corrected_proportions_stay_on_the_simplex():
    # A judged share below the judge's false-positive rate would invert to a negative proportion.
    corrected = corrected_distribution([0.95, 0.05], [[0.9, 0.1], [0.2, 0.8]])
    np.testing.assert_allclose(corrected, [1.0, 0.0], atol=1e-12)


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
