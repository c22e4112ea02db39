"""The analytic Gaussian model: the sampler, the switch, the estimator and the searches vs closed forms."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal, norm

from fairbench.methods import AttributeSwitching, Conditional, EmbeddingMixing
from fairbench.metrics.fairness import epsilon_fairness
from fairbench.models.gaussian import (
    GaussianModel,
    ddim_coefficients,
    ddim_output,
    exact_optimal_tau,
    exact_switching_tv,
    exact_tv_curve,
    switching_schedule,
)
from fairbench.noise import initial_noise
from fairbench.sampling import sample
from fairbench.tau_search import direct_mean_search, reference_search


def test_exact_noise_prediction_is_the_posterior_mean_of_the_noise(gaussian):
    """Monte Carlo: E[eps | x_t] over the forward process matches eps*(x_t, t, a)."""
    g = torch.Generator().manual_seed(0)
    t, a = 300, 1
    abar = float(gaussian.alphas_cumprod[t])
    x0 = gaussian.sample_data(torch.full((200_000,), a), g)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    xt = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * eps
    # regress eps on x_t (the posterior mean is linear for Gaussians)
    design = torch.cat([xt, torch.ones(len(xt), 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(design, eps).solution
    probe = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    predicted = torch.cat([probe, torch.ones(1, 1, dtype=torch.float64)], 1) @ coef
    exact = gaussian.eps(probe, t, torch.eye(2, dtype=torch.float64)[[a]])
    assert torch.allclose(predicted, exact, atol=5e-3)


def test_guidance_classifier_is_the_exact_posterior(gaussian):
    x = torch.tensor([[0.2, 0.1], [-1.0, 0.5]], dtype=torch.float64)
    t = 250
    abar = float(gaussian.alphas_cumprod[t])
    var = abar * gaussian.std**2 + 1 - abar
    dens = np.stack([multivariate_normal(math.sqrt(abar) * gaussian.means[a].numpy(), var).pdf(x.numpy()) for a in (0, 1)], 1)
    expected = np.log(dens / dens.sum(1, keepdims=True))
    assert np.allclose(gaussian.guidance_classifier().log_prob(x, t).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("method", [Conditional(), AttributeSwitching(224), AttributeSwitching(700), EmbeddingMixing(0.3)])
def test_each_ddim_sample_is_the_closed_form_affine_map_of_its_noise(gaussian, steps, method):
    requested = torch.arange(32) % 2
    out = sample(gaussian, method, requested, scheduler_name="ddim", steps=steps, seed=5, batch_size=32)
    noise = initial_noise(5, range(32), (2,), dtype=torch.float64)
    timesteps, _, _ = ddim_coefficients(gaussian, steps)
    for a in (0, 1):
        schedule = [method.weights(t, torch.tensor([a]), 2)[0].double() for t in timesteps]
        law = ddim_output(gaussian, steps, schedule)
        rows = requested == a
        # diffusers keeps abar_t in float32, so the sampler's coefficients carry ~1e-8 rounding
        assert torch.allclose(out.samples[rows], law.scale * noise[rows] + law.mean, atol=1e-6, rtol=0)


def test_sampled_mean_and_variance_match_the_closed_form_statistically():
    model = GaussianModel([[-1.0, 0.5, 0.0], [1.0, -0.5, 0.2]], 0.4, beta_schedule="squaredcos_cap_v2")
    out = sample(model, AttributeSwitching(400), torch.zeros(20000, dtype=torch.long),
                 scheduler_name="ddim", steps=25, seed=1, batch_size=5000)
    timesteps, _, _ = ddim_coefficients(model, 25)
    law = ddim_output(model, 25, switching_schedule(timesteps, 400, 0, 1, 2))
    x = out.samples
    se = law.scale / math.sqrt(len(x))
    assert torch.all((x.mean(0) - law.mean).abs() < 4 * se)
    # sample variance of N(., A^2): relative s.e. sqrt(2/n)
    assert torch.all((x.var(0) / law.scale**2 - 1).abs() < 4 * math.sqrt(2 / len(x)))


def test_closed_form_tv_limits(gaussian):
    """tau = -1 gives the TV of conditional sampling; tau = T-1 the same (groups swapped)."""
    conditional_gap = float(torch.linalg.vector_norm(gaussian.means[0] - gaussian.means[1]))
    _, _, scale = ddim_coefficients(gaussian, 50)
    timesteps, _, _ = ddim_coefficients(gaussian, 50)
    pure = [ddim_output(gaussian, 50, switching_schedule(timesteps, -1, a, a, 2)) for a in (0, 1)]
    expected = 2 * norm.cdf(float(torch.linalg.vector_norm(pure[0].mean - pure[1].mean)) / (2 * abs(scale))) - 1
    assert exact_switching_tv(gaussian, 50, -1) == pytest.approx(expected, abs=1e-12)
    assert exact_switching_tv(gaussian, 50, 999) == pytest.approx(expected, abs=1e-12)
    assert 0 < expected < 1 and conditional_gap > 0
    curve = dict(exact_tv_curve(gaussian, 50))
    for tau in (-1, 0, 220, 600, 980):
        assert curve[tau] == pytest.approx(exact_switching_tv(gaussian, 50, tau), abs=1e-12)
    # a tau between visited timesteps means the same as the visited timestep below it
    assert exact_switching_tv(gaussian, 50, 239) == pytest.approx(curve[220], abs=1e-12)


@pytest.mark.parametrize("tau", [-1, 140, "optimum", 400])
def test_epsilon_interval_brackets_the_exact_tv(gaussian, tau):
    if tau == "optimum":
        tau = exact_optimal_tau(gaussian, 50)[0]
    requested = torch.arange(4000) % 2
    out = sample(gaussian, AttributeSwitching(tau), requested, scheduler_name="ddim", steps=50, seed=11, batch_size=4000)
    estimate = epsilon_fairness(out.samples.numpy(), requested.numpy(), seed=11)
    exact = exact_switching_tv(gaussian, 50, tau)
    low, high = estimate.interval
    assert low <= exact <= high
    assert low <= estimate.value <= high


CASES = [
    (0.5, "linear", 50), (0.1, "linear", 50), (0.5, "squaredcos_cap_v2", 50),
    (0.1, "squaredcos_cap_v2", 50), (0.5, "linear", 200),
]


@pytest.mark.parametrize("std,schedule,steps", CASES)
def test_direct_mean_search_lands_within_one_visited_timestep_of_the_exact_optimum(std, schedule, steps):
    model = GaussianModel([[-0.5, 0.0], [0.5, 0.0]], std, beta_schedule=schedule)
    result = direct_mean_search(model, scheduler_name="ddim", steps=steps, seed=0, batch_size=64)
    curve = exact_tv_curve(model, steps)
    taus = [tau for tau, _ in curve]
    best = exact_optimal_tau(model, steps)[0]
    assert abs(taus.index(result.tau) - taus.index(best)) <= 1
    assert result.curve[0] == (-1, pytest.approx(1.0)) and result.curve[-1][1] == pytest.approx(-1.0)
    assert len(result.curve) <= math.ceil(math.log2(len(taus))) + 2


def test_reference_search_is_algorithm_2(gaussian):
    """Recompute D(tau) independently from two separately sampled trajectories."""
    steps, batch = 20, 16
    result = reference_search(gaussian, scheduler_name="ddim", steps=steps, seed=2, batch_size=batch)
    from fairbench.schedulers import make_scheduler

    sched = [make_scheduler("ddim") for _ in range(2)]
    noise = initial_noise(2, range(batch), (2,), dtype=torch.float64)
    xs, deltas = [noise.clone(), noise.clone()], []
    for s in sched:
        s.set_timesteps(steps)
    timesteps = [int(t) for t in sched[0].timesteps]
    abar = sched[0].alphas_cumprod.double()
    for i, t in enumerate(timesteps):
        eps = [gaussian.eps(xs[a], t, torch.eye(2, dtype=torch.float64)[[a]].expand(batch, 2)) for a in (0, 1)]
        prev = float(abar[timesteps[i + 1]]) if i + 1 < steps else 1.0
        deltas.append((1 - float(abar[t]) / prev) * (eps[0] - eps[1]))
        xs = [sched[a].step(eps[a], t, xs[a], eta=0.0).prev_sample for a in (0, 1)]
    expected = {}
    for tau in [-1] + sorted(timesteps):
        low = sum((d for t, d in zip(timesteps, deltas) if t <= tau), torch.zeros(batch, 2, dtype=torch.float64))
        high = sum((d for t, d in zip(timesteps, deltas) if t > tau), torch.zeros(batch, 2, dtype=torch.float64))
        expected[tau] = float(torch.linalg.vector_norm(low - high, dim=0).mean())
    assert [tau for tau, _ in result.curve] == sorted(expected)
    for tau, value in result.curve:
        assert value == pytest.approx(expected[tau], rel=1e-9, abs=1e-12)
    assert result.tau == min(expected, key=expected.get)
    assert result.nfe == 2 * batch * steps
