"""Speed of the sampling loop, the switch, the tau searches and the quality metrics.

Run with ``tox -e bench`` (or ``python -m pytest benchmarks --benchmark-only``). These
measure and report; they assert only that the compared computations agree.
"""

import numpy as np
import pytest
import torch

from fairbench.methods import AttributeSwitching, Conditional
from fairbench.metrics.features import raw_features
from fairbench.metrics.quality import quality_metrics
from fairbench.noise import initial_noise
from fairbench.sampling import sample
from fairbench.schedulers import make_scheduler
from fairbench.tau_search import direct_search, reference_search

N, STEPS = 64, 50


def _run(model, method, n=N, steps=STEPS):
    return sample(model, method, torch.arange(n) % 2, scheduler_name="ddim", steps=steps, seed=0, batch_size=n).samples


@pytest.mark.benchmark(group="switch-unet")
def test_unet_conditional(benchmark, denoiser):
    benchmark(_run, denoiser, Conditional())


@pytest.mark.benchmark(group="switch-unet")
def test_unet_attribute_switching(benchmark, denoiser):
    benchmark(_run, denoiser, AttributeSwitching(500))


@pytest.mark.benchmark(group="switch-gaussian")
def test_gaussian_conditional(benchmark, gaussian):
    benchmark(_run, gaussian, Conditional(), 4096)


@pytest.mark.benchmark(group="switch-gaussian")
def test_gaussian_attribute_switching(benchmark, gaussian):
    benchmark(_run, gaussian, AttributeSwitching(500), 4096)


def _plain_diffusers_loop(unet, labels):
    """The loop a user writes by hand with diffusers: same noise, scheduler and steps."""
    scheduler = make_scheduler("ddim")
    scheduler.set_timesteps(STEPS)
    x = initial_noise(0, range(len(labels)), (1, 16, 16))
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = unet(x, t, class_labels=labels).sample
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
    return x


@pytest.mark.benchmark(group="loop")
def test_plain_diffusers_loop(benchmark, unet, denoiser):
    labels = torch.arange(N) % 2
    out = benchmark(_plain_diffusers_loop, unet, labels)
    assert torch.allclose(out, _run(denoiser, Conditional()), atol=1e-5)


@pytest.mark.benchmark(group="loop")
def test_fairbench_loop(benchmark, denoiser):
    benchmark(_run, denoiser, Conditional())


@pytest.mark.benchmark(group="tau-search")
def test_reference_search(benchmark, denoiser):
    benchmark.pedantic(reference_search, args=(denoiser,), kwargs=dict(scheduler_name="ddim", steps=STEPS, seed=0, batch_size=32), rounds=3)


@pytest.mark.benchmark(group="tau-search")
def test_direct_search(benchmark, denoiser):
    benchmark.pedantic(direct_search, args=(denoiser,), kwargs=dict(scheduler_name="ddim", steps=STEPS, seed=0, batch_size=32), rounds=1)


@pytest.fixture(scope="module")
def feature_sets():
    g = torch.Generator().manual_seed(0)
    return torch.randn(5000, 64, generator=g, dtype=torch.float64), torch.randn(5000, 64, generator=g, dtype=torch.float64) + 0.1


@pytest.mark.benchmark(group="fid")
@pytest.mark.parametrize("backend", ["clean-fid", "torchmetrics"])
def test_fid_and_kid(benchmark, feature_sets, backend):
    generated, real = feature_sets
    requested = np.arange(len(generated)) % 2
    result = benchmark.pedantic(quality_metrics, args=(generated, requested, real, raw_features(batch_size=1000)),
                                kwargs=dict(value_names=["a", "b"], backend=backend, kid_subsets=100, kid_subset_size=1000), rounds=2)
    assert result["fid"] > 0


@pytest.mark.benchmark(group="features")
def test_judge_feature_extraction(benchmark):
    from fairbench.metrics.features import module_features

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.SiLU(), torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
    images = torch.randn(4096, 1, 16, 16)
    benchmark(module_features(net, "conv", batch_size=512), images)


# DDPM's per-step noise: 20,000 two-dimensional samples on the analytic model, where the
# network costs next to nothing, so the noise is the whole difference to DDIM at equal steps.
NOISE_N = 20_000


def _gaussian_run(model, scheduler, steps):
    return sample(model, Conditional(), torch.arange(NOISE_N) % 2, scheduler_name=scheduler, steps=steps, seed=0,
                  batch_size=NOISE_N).samples


@pytest.mark.benchmark(group="stochastic-sampler")
@pytest.mark.parametrize("scheduler,steps", [("ddim", 50), ("ddim", 100), ("ddpm", 100)])
def test_gaussian_sampler_cost(benchmark, gaussian, scheduler, steps):
    benchmark.pedantic(_gaussian_run, args=(gaussian, scheduler, steps), rounds=3)


@pytest.mark.benchmark(group="stochastic-sampler")
def test_noise_alone_for_100_steps(benchmark):
    from fairbench.noise import step_noise

    def draw():
        initial_noise(0, range(NOISE_N), (2,), dtype=torch.float64)
        for step in range(100):
            step_noise(0, range(NOISE_N), step, (2,), dtype=torch.float64)

    benchmark.pedantic(draw, rounds=3)
