"""Scaling of the measurements (group "scaling"): the epsilon estimate and a whole measured job at
growing numbers of samples. Run with ``python -m pytest benchmarks/test_scaling.py --benchmark-only``;
the full grid (1k to 64k samples, 2 to 512 dims, before and after) is ``benchmarks/scaling.py``.
These measure and report; they assert only what the measurement must return."""

import pytest
import torch

from fairbench.metrics.fairness import epsilon_fairness
from fairbench.metrics.known_truth import mean_shift
from fairbench.metrics.suite import evaluate
from fairbench.models import GaussianSpec


@pytest.mark.benchmark(group="scaling")
@pytest.mark.parametrize("n", [1000, 4000, 16000])
@pytest.mark.parametrize("dim", [2, 64])
def test_epsilon_scaling(benchmark, n, dim):
    samples, requested = mean_shift(1.0, dim=dim).sample(n // 2, seed=0)
    estimate = benchmark.pedantic(epsilon_fairness, args=(samples, requested), kwargs={"permutations": 1000},
                                  rounds=1, iterations=1)
    assert estimate.heldout.predicted.shape[1] == n


@pytest.mark.benchmark(group="scaling")
@pytest.mark.parametrize("n", [1000, 4000])
@pytest.mark.parametrize("dim", [2, 512])
def test_measured_job_scaling(benchmark, n, dim):
    mean = [0.5] + [0.0] * (dim - 1)
    setup = GaussianSpec(kind="gaussian", means=[[-m for m in mean], mean], std=1.0, n_real=n).build()
    requested = torch.arange(n) % 2
    samples = setup.model.sample_data(requested, torch.Generator().manual_seed(2))
    metrics = benchmark.pedantic(evaluate, args=(samples, requested, setup), kwargs={"seed": 0}, rounds=1, iterations=1)
    assert {"epsilon", "epsilon_lower", "fid", "kid", "fd"} <= set(metrics)
