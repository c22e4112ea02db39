"""epsilon-fairness against the exact TV of the analytic Gaussian model, and for k = 3."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fairbench.errors import FairbenchError
from fairbench.methods import AttributeSwitching
from fairbench.metrics.fairness import epsilon_fairness
from fairbench.models.gaussian import GaussianModel, exact_switching_tv
from fairbench.sampling import sample

STEPS = 20


@pytest.fixture(scope="module")
def model() -> GaussianModel:
    return GaussianModel([[-0.5, 0.0], [0.5, 0.0]], 0.5)


@pytest.mark.parametrize("tau", [-1, 100, 200, 300])
def test_epsilon_interval_contains_exact_switching_tv(model, tau):
    # Four 95% intervals would miss at least once one time in five; at 99.9% the check is a
    # real test of the estimator (and of its interval) rather than of the seed.
    requested = torch.arange(4000) % 2
    out = sample(model, AttributeSwitching(tau=tau), requested, scheduler_name="ddim", steps=STEPS, seed=0, batch_size=1000)
    estimate = epsilon_fairness(out.samples.numpy(), requested.numpy(), confidence=0.999, bootstrap=4000, seed=0)
    exact = exact_switching_tv(model, STEPS, tau)
    low, high = estimate.interval
    assert low <= estimate.value <= high
    assert low <= exact <= high, (tau, exact, estimate)


def _tv_isotropic(mu_a, mu_b, std) -> float:
    """TV of N(mu_a, std^2 I) and N(mu_b, std^2 I) = 2 Phi(||mu_a - mu_b|| / (2 std)) - 1."""
    return math.erf(np.linalg.norm(np.subtract(mu_a, mu_b)) / (2 * std) / math.sqrt(2))


def test_epsilon_with_three_values_is_the_largest_pair():
    means = np.array([[0.0, 0.0], [0.6, 0.0], [0.0, 1.5]])
    rng = np.random.default_rng(3)
    requested = np.arange(3000) % 3
    features = means[requested] + 0.5 * rng.normal(size=(3000, 2))
    estimate = epsilon_fairness(features, requested, confidence=0.999, bootstrap=4000, seed=0)
    tvs = {(a, b): _tv_isotropic(means[a], means[b], 0.5) for a, b in [(0, 1), (0, 2), (1, 2)]}
    assert estimate.pair == max(tvs, key=tvs.get) == (1, 2)
    assert estimate.interval[0] <= tvs[estimate.pair] <= estimate.interval[1]


def test_epsilon_on_identical_groups_is_near_zero_and_on_separated_groups_is_one():
    rng = np.random.default_rng(0)
    requested = np.arange(1000) % 2
    same = epsilon_fairness(rng.normal(size=(1000, 3)), requested, seed=0)
    assert same.interval[0] == 0.0 and same.value <= same.interval[1]
    apart = epsilon_fairness(requested[:, None] * 100.0 + rng.normal(size=(1000, 1)), requested, seed=0)
    assert apart.value == 1.0 and apart.interval == (1.0, 1.0)


def test_epsilon_refuses_too_few_samples_per_value():
    with pytest.raises(FairbenchError, match="at least 5 samples"):
        epsilon_fairness(np.zeros((6, 2)), np.array([0, 0, 0, 1, 1, 1]))
