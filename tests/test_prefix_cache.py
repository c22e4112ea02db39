"""Reuse of conditional steps across methods (`fairbench.sampling.PrefixCache`).

Attribute switching at tau samples conditionally while t > tau; with a cache, it continues
from the trajectory a conditional run kept instead of recomputing those steps. The samples and
the evaluation counts must be exactly those of sampling from x_T, and the model must be
called fewer times.
"""

import pytest
import torch

from fairbench.methods import AttributeSwitching, Conditional, EmbeddingMixing, NullPrefixSwitching
from fairbench.models.base import one_hot
from fairbench.models.gaussian import GaussianModel
from fairbench.models.unet import UNetDenoiser
from fairbench.sampling import PrefixCache, sample
from fairbench.schedulers import build_scheduler


from test_unet import tiny_unet


class Counting:
    """A denoiser that counts the samples it evaluates (the wrapped model does the work)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def eps(self, x, t, weights):
        self.calls += len(x)
        return self.model.eps(x, t, weights)


def gaussian():
    return Counting(GaussianModel([[1.5, 0.0, -1.0], [-1.5, 0.5, 1.0]], 0.7))


REQUESTED = torch.tensor([0, 1] * 12)


def run(model, method, cache=None, scheduler="ddim", seed=5, requested=REQUESTED, steps=20):
    return sample(model, method, requested, scheduler_name=scheduler, steps=steps, seed=seed, batch_size=10,
                  prefix_cache=cache)


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm", "dpm_solver", "euler"])
@pytest.mark.parametrize("tau", [-1, 0, 333, 620, 999])
def test_switching_from_a_kept_conditional_trajectory_equals_sampling_from_noise(scheduler, tau):
    model = gaussian()
    scratch = run(model, AttributeSwitching(tau), scheduler=scheduler)
    cache = PrefixCache()
    conditional = run(model, Conditional(), cache, scheduler=scheduler)
    assert torch.equal(conditional.samples, run(model, Conditional(), scheduler=scheduler).samples)
    model.calls = 0
    reused = run(model, AttributeSwitching(tau), cache, scheduler=scheduler)
    assert torch.equal(reused.samples, scratch.samples)
    assert torch.equal(reused.final, scratch.final)
    assert reused.nfe == scratch.nfe and reused.classifier_evals == scratch.classifier_evals
    visited = [int(t) for t in build_scheduler(scheduler, model, 20).timesteps]
    prefix = next((i for i, t in enumerate(visited) if t <= tau), len(visited))
    reusable = 0 < prefix < len(visited)
    assert model.calls == scratch.nfe - (prefix * len(REQUESTED) if reusable else 0)


def test_the_unet_path_is_reused_exactly():
    unet = UNetDenoiser(tiny_unet(num_class_embeds=3), {"num_train_timesteps": 1000, "beta_schedule": "linear"},
                        ("a", "b"))
    model = Counting(unet)
    requested = torch.tensor([0, 1, 1, 0, 1, 0])
    scratch = run(model, AttributeSwitching(400), requested=requested, steps=10)
    cache = PrefixCache()
    run(model, Conditional(), cache, requested=requested, steps=10)
    model.calls = 0
    reused = run(model, AttributeSwitching(400), cache, requested=requested, steps=10)
    assert torch.equal(reused.samples, scratch.samples)
    assert 0 < model.calls < scratch.nfe


def test_nothing_is_reused_across_seeds_requests_or_methods_that_differ():
    model = gaussian()
    cache = PrefixCache()
    run(model, Conditional(), cache, seed=5)
    for method, kwargs in [
        (AttributeSwitching(300), {"seed": 6}),  # another seed: other noise
        (AttributeSwitching(300), {"requested": REQUESTED.flip(0)}),  # other requests
        (EmbeddingMixing(0.5), {}),  # never conditional sampling
        (NullPrefixSwitching(300), {}),  # the null condition first
    ]:
        model.calls = 0
        out = run(model, method, cache, **kwargs)
        assert model.calls == out.nfe
        assert torch.equal(out.samples, run(model, method, **kwargs).samples)


def test_a_subclass_that_picks_other_conditions_is_not_taken_for_conditional_sampling():
    class Flipped(Conditional):
        def weights(self, t, requested, k):
            return one_hot(1 - requested, k)

    model = gaussian()
    cache = PrefixCache()
    run(model, Flipped(), cache)
    model.calls = 0
    out = run(model, AttributeSwitching(300), cache)
    assert model.calls == out.nfe  # nothing kept from the flipped run was used
    assert torch.equal(out.samples, run(model, AttributeSwitching(300)).samples)


def test_a_trajectory_over_the_memory_budget_is_not_kept():
    model = gaussian()
    cache = PrefixCache(max_bytes=1000)  # below one trajectory: 20 steps x 10 samples x 3 values x 8 bytes
    run(model, Conditional(), cache)
    model.calls = 0
    out = run(model, AttributeSwitching(300), cache)
    assert model.calls == out.nfe


def test_the_memory_the_cache_reports_is_what_its_kept_states_hold():
    model = gaussian()
    cache = PrefixCache()
    run(model, Conditional(), cache)
    states = [state for _, kept, _ in cache._entries.values() for state in kept]
    assert len(states) == 20 * len(cache._entries)  # one state per step and batch
    samples = sum(state.x.numel() * state.x.element_size() for state in states)
    schedules = sum(t.numel() * t.element_size() for state in states for t in vars(state.scheduler).values()
                    if isinstance(t, torch.Tensor))
    assert samples > 0 and schedules > 0
    assert cache.bytes == samples + schedules
