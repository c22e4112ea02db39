"""The counter-based noise: Philox known answers, purity, statistics, and the guarantees it buys."""

import math
import random

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from scipy import stats

from fairbench.methods import AttributeSwitching, Conditional
from fairbench.noise import (
    INITIAL,
    SCHEME,
    STEPS,
    StepNoise,
    _mulhilo,
    initial_noise,
    philox4x32,
    standard_normal,
    step_noise,
)
from fairbench.sampling import sample
from fairbench.schedulers import make_scheduler

M = 0xFFFFFFFF

# Random123's published known-answer vectors for Philox4x32-10 (tests/kat_vectors):
# (counter, key, output).
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((M, M, M, M), (M, M), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_philox_matches_the_published_known_answers(counter, key, expected):
    assert philox4x32(torch.tensor([counter]), key)[0].tolist() == list(expected)


def test_mulhilo_is_the_exact_64_bit_product():
    rng = random.Random(0)
    values = [0, 1, 0xFFFF, 0x10000, M, M - 1] + [rng.getrandbits(32) for _ in range(2000)]
    for multiplier in (0xD2511F53, 0xCD9E8D57, M):
        low, high = _mulhilo(torch.tensor(multiplier), torch.tensor(values))
        products = [multiplier * v for v in values]
        assert low.tolist() == [p & M for p in products]
        assert high.tolist() == [p >> 32 for p in products]


def test_each_variate_depends_only_on_seed_stream_index_step_and_element():
    whole = standard_normal(3, range(10), (2, 5), stream=STEPS, step=7)
    # any subset, in any order, gives the same rows
    assert torch.equal(standard_normal(3, [9, 2, 4], (2, 5), stream=STEPS, step=7), whole[[9, 2, 4]])
    # the shape only arranges elements: row-major element e is the same variate
    assert torch.equal(standard_normal(3, range(10), (10,), stream=STEPS, step=7), whole.reshape(10, 10))
    assert torch.equal(standard_normal(3, range(10), (7,), stream=STEPS, step=7), whole.reshape(10, 10)[:, :7])
    # indices beyond 32 bits use the high counter word
    far = standard_normal(3, [2**40 + 5, 5], (4,), stream=STEPS, step=7)
    assert not torch.equal(far[0], far[1])
    # each coordinate of the address changes the variates
    for other in (
        standard_normal(4, range(10), (2, 5), stream=STEPS, step=7),
        standard_normal(3, range(10), (2, 5), stream=INITIAL, step=7),
        standard_normal(3, range(10), (2, 5), stream=STEPS, step=8),
        standard_normal(3, range(1, 11), (2, 5), stream=STEPS, step=7),
    ):
        assert not torch.isclose(other, whole).any()


def test_dtypes_round_the_same_float64_variates():
    wide = standard_normal(0, range(50), (8,), stream=INITIAL, dtype=torch.float64)
    assert torch.equal(standard_normal(0, range(50), (8,), stream=INITIAL, dtype=torch.float32), wide.float())
    assert initial_noise(0, range(50), (8,)).device.type == "cpu"


def test_bad_addresses_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        standard_normal(0, [-1], (2,), stream=STEPS)
    with pytest.raises(ValueError, match="step"):
        standard_normal(0, [0], (2,), stream=STEPS, step=2**32)


@pytest.fixture(scope="module")
def draws() -> torch.Tensor:
    """[samples 2000, steps 4, elements 64] from seed 0: 512,000 variates."""
    return torch.stack([step_noise(0, range(2000), s, (64,), dtype=torch.float64) for s in range(4)], dim=1)


def test_moments_are_those_of_a_standard_normal(draws):
    z = draws.flatten().numpy()
    n = len(z)
    # tolerances: 5 standard errors of each moment under N(0, 1)
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n)
    assert np.abs(z).max() < math.sqrt(2 * math.log(2**32)) + 1e-9  # the documented bound


def test_goodness_of_fit_against_the_normal_law(draws):
    z = draws.flatten().numpy()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # tails: the count beyond 3 sigma is binomial around n * P(|Z| > 3)
    n, p = len(z), 2 * stats.norm.sf(3)
    assert abs((np.abs(z) > 3).sum() - n * p) < 5 * math.sqrt(n * p * (1 - p))


def _correlations(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    a, b = a.flatten().numpy(), b.flatten().numpy()
    return float(np.corrcoef(a, b)[0, 1]), float(np.corrcoef(a**2, b**2)[0, 1])


@pytest.mark.parametrize("neighbour", ["sample", "step", "element in a pair", "element across blocks", "seed"])
def test_neighbouring_counters_are_uncorrelated(draws, neighbour):
    if neighbour == "sample":
        a, b = draws[:-1], draws[1:]
    elif neighbour == "step":
        a, b = draws[:, :-1], draws[:, 1:]
    elif neighbour == "element in a pair":  # elements 2j, 2j+1 share one Box-Muller radius
        a, b = draws[..., 0::2], draws[..., 1::2]
    elif neighbour == "element across blocks":  # element 4b+3 and 4b+4: consecutive counters
        a, b = draws[..., 3:-1:4], draws[..., 4::4]
    else:
        a, b = draws[:, 0], step_noise(1, range(2000), 0, (64,), dtype=torch.float64)
    bound = 5 / math.sqrt(a.numel())
    linear, of_squares = _correlations(a, b)
    assert abs(linear) < bound and abs(of_squares) < bound, (linear, of_squares)


def test_the_ancestral_step_is_diffusers_ddpm_step(gaussian):
    """`ddpm` runs DDIM with eta = 1; it takes the same steps as diffusers' DDPMScheduler."""
    for steps in (20, 1000):
        ours = make_scheduler("ddpm", **gaussian.scheduler_config())
        reference = DDPMScheduler(**gaussian.scheduler_config(), clip_sample=False, variance_type="fixed_small")
        # Both in float64: diffusers keeps abar in float32, where 1 - abar_t / abar_prev cancels
        # near t = 0 and the two formulas would round differently (up to 2e-4 at t = 2).
        ours.alphas_cumprod = ours.alphas_cumprod.double()
        reference.alphas_cumprod = reference.alphas_cumprod.double()
        ours.set_timesteps(steps)
        reference.set_timesteps(steps)
        assert torch.equal(ours.timesteps, reference.timesteps)
        x = initial_noise(0, range(64), gaussian.sample_shape, dtype=gaussian.dtype)
        requested = torch.nn.functional.one_hot(torch.arange(64) % 2, 2).to(gaussian.dtype)
        worst = noise_scale = 0.0
        for index, t in enumerate(ours.timesteps):
            eps = gaussian.eps(x, int(t), requested)
            z = step_noise(0, range(64), index, gaussian.sample_shape, dtype=gaussian.dtype)
            generator = torch.Generator().manual_seed(index)
            drawn = torch.randn(x.shape, generator=torch.Generator().manual_seed(index), dtype=x.dtype)
            expected = reference.step(eps, t, x, generator=generator).prev_sample
            got = ours.step(eps, t, x, variance_noise=drawn).prev_sample
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
            worst = max(worst, float((got - expected).abs().max()))
            noise_scale = max(noise_scale, float((got - ours.step(eps, t, x, variance_noise=0 * drawn).prev_sample).abs().max()))
            x = ours.step(eps, t, x, variance_noise=z).prev_sample
        assert noise_scale > 1e8 * worst  # the noise term is compared, not only a deterministic part


def test_ddpm_samples_do_not_depend_on_batch_size_or_split(gaussian):
    requested = torch.arange(30) % 2
    method = AttributeSwitching(400)

    def run(batch_size, indices=None, wanted=requested):
        return sample(gaussian, method, wanted, scheduler_name="ddpm", steps=25, seed=5,
                      batch_size=batch_size, indices=indices).samples

    whole = run(30)
    assert torch.equal(run(7), whole)
    assert torch.equal(torch.cat([run(4, range(0, 13), requested[:13]), run(9, range(13, 30), requested[13:])]), whole)
    # and the per-step noise matters: DDPM differs from deterministic DDIM from the same x_T
    ddim = sample(gaussian, method, requested, scheduler_name="ddim", steps=25, seed=5, batch_size=30).samples
    assert (whole - ddim).abs().max() > 0.1


def test_ddpm_noise_is_shared_by_methods_for_paired_comparisons(gaussian):
    """Mixing weight 0 is conditional sampling under DDPM too: both see sample i's noise."""
    from fairbench.methods import EmbeddingMixing

    requested = torch.arange(12) % 2
    kw = dict(scheduler_name="ddpm", steps=20, seed=2, batch_size=5)
    assert torch.equal(sample(gaussian, EmbeddingMixing(0.0), requested, **kw).samples,
                       sample(gaussian, Conditional(), requested, **kw).samples)


def test_step_noise_follows_the_batch_it_is_given():
    noise = StepNoise(1, [3, 3, 8])
    like = torch.zeros(3, 2, 2, dtype=torch.float64)
    z = noise(4, like)
    assert z.shape == like.shape and z.dtype == torch.float64
    assert torch.equal(z[0], z[1]) and not torch.equal(z[0], z[2])
    assert torch.equal(z, step_noise(1, [3, 3, 8], 4, (2, 2), dtype=torch.float64))


def test_job_specs_name_the_noise_scheme(tmp_path):
    from fairbench.config import parse_config
    from fairbench.records import spec_hash
    from fairbench.runner import Job

    config = parse_config({
        "benchmark": {"name": "noise", "n_samples": 8},
        "model": {"kind": "gaussian", "means": [[-0.5, 0.0], [0.5, 0.0]], "std": 0.5},
        "sampler": {"scheduler": "ddpm", "steps": 10},
        "methods": [{"name": "conditional"}],
    })
    job = Job(config, 0, 0)
    assert job.spec()["noise"] == SCHEME
    # a record made before the scheme was named (per-sample torch generators) never matches
    old = {k: v for k, v in job.spec().items() if k != "noise"}
    assert spec_hash(old) != job.key


@pytest.mark.gpu
def test_samples_on_cuda_start_from_the_cpu_noise(gaussian):
    requested = torch.arange(16) % 2
    kw = dict(scheduler_name="ddpm", steps=20, seed=0, batch_size=16)
    on_cpu = sample(gaussian, Conditional(), requested, **kw).samples
    on_gpu = sample(gaussian, Conditional(), requested, device="cuda", **kw).samples
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-10, atol=1e-10)


DDPM_GRID = """
[benchmark]
name = "ddpm-grid"
n_samples = 300
seeds = [0]
batch_size = {batch_size}
shard_size = {shard_size}
[[models]]
label = "overlap"
kind = "gaussian"
means = [[-0.5, 0.0], [0.5, 0.0]]
std = 0.5
[sampler]
scheduler = "ddpm"
steps = 20
[[methods]]
name = "conditional"
[[methods]]
name = "attribute_switching"
tau = 400
[metrics]
bootstrap = 50
"""


def _ddpm_records(tmp_path, name, *, batch_size, shard_size, executor="local"):
    from fairbench.config import load_grid
    from fairbench.records import comparable, read_records
    from fairbench.runner import run_benchmark

    grid = tmp_path / f"{name}.toml"
    grid.write_text(DDPM_GRID.format(batch_size=batch_size, shard_size=shard_size))
    run_benchmark(load_grid(grid), tmp_path / name, executor=executor, log=lambda m: None)
    return {r["job_key"]: comparable(r) for r in read_records(tmp_path / name)}


def test_ddpm_records_do_not_depend_on_batch_size_or_shards(tmp_path):
    a = _ddpm_records(tmp_path, "a", batch_size=100, shard_size=200)
    b = _ddpm_records(tmp_path, "b", batch_size=32, shard_size=90)
    assert len(a) == 2 and a == b


@pytest.mark.slow  # starting Ray dominates; tests/test_harness.py runs the DDIM grid under Ray by default
def test_ddpm_records_are_the_same_under_ray(tmp_path):
    pytest.importorskip("ray")
    import ray

    local = _ddpm_records(tmp_path, "local", batch_size=100, shard_size=150)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        distributed = _ddpm_records(tmp_path, "ray", batch_size=100, shard_size=150, executor="ray")
    finally:
        ray.shutdown()
    assert len(local) == 2 and distributed == local
