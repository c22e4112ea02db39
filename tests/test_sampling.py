"""Exact limits of every method and batch-size invariance of the shared sampling loop."""

import pytest
import torch

from fairbench.methods import AttributeSwitching, ClassifierGuidance, Conditional, EmbeddingMixing, resolve_tau
from fairbench.errors import FairbenchError
from fairbench.models.gaussian import GaussianModel
from fairbench.sampling import sample

SCHEDULERS = ["ddim", "ddpm", "dpm_solver", "euler"]


def run(model, method, requested, scheduler="ddim", steps=20, seed=3, batch_size=64, indices=None):
    return sample(model, method, torch.as_tensor(requested), scheduler_name=scheduler, steps=steps,
                  seed=seed, batch_size=batch_size, indices=indices).samples


@pytest.fixture(scope="module")
def three_way():
    return GaussianModel([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.5]], 0.3)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_tau_minus_one_is_conditional_on_s0_and_tau_last_is_conditional_on_s1(gaussian, scheduler):
    requested = torch.zeros(16, dtype=torch.long)
    never = run(gaussian, AttributeSwitching(-1), requested, scheduler)
    always = run(gaussian, AttributeSwitching(gaussian.num_train_timesteps - 1), requested, scheduler)
    assert torch.equal(never, run(gaussian, Conditional(), requested, scheduler))
    assert torch.equal(always, run(gaussian, Conditional(), torch.ones(16, dtype=torch.long), scheduler))
    # and the switch in between really changes something
    assert not torch.equal(never, run(gaussian, AttributeSwitching(500), requested, scheduler))


def test_switch_targets_next_value_cyclically(three_way):
    requested = torch.tensor([0, 1, 2, 2])
    switched = run(three_way, AttributeSwitching(three_way.num_train_timesteps - 1), requested)
    assert torch.equal(switched, run(three_way, Conditional(), torch.tensor([1, 2, 0, 0])))
    assert AttributeSwitching(10).final(requested, 3).tolist() == [1, 2, 0, 0]
    assert AttributeSwitching(-1).final(requested, 3).tolist() == [0, 1, 2, 2]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_mixing_weight_zero_is_conditional_and_one_is_the_other_value(gaussian, scheduler):
    requested = torch.arange(16) % 2
    assert torch.equal(run(gaussian, EmbeddingMixing(0.0), requested, scheduler),
                       run(gaussian, Conditional(), requested, scheduler))
    assert torch.equal(run(gaussian, EmbeddingMixing(1.0), requested, scheduler),
                       run(gaussian, Conditional(), 1 - requested, scheduler))


def test_mixing_half_ignores_the_request(gaussian):
    """With w = 0.5 and k = 2 both requests get the same condition: fair by construction."""
    a = run(gaussian, EmbeddingMixing(0.5), torch.zeros(8, dtype=torch.long))
    b = run(gaussian, EmbeddingMixing(0.5), torch.ones(8, dtype=torch.long))
    assert torch.equal(a, b)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_guidance_scale_zero_is_unguided(gaussian, scheduler):
    requested = torch.arange(16) % 2
    guided = run(gaussian, ClassifierGuidance(0.0, classifier=gaussian.guidance_classifier()), requested, scheduler)
    assert torch.equal(guided, run(gaussian, Conditional(), requested, scheduler))
    pushed = run(gaussian, ClassifierGuidance(1.0, classifier=gaussian.guidance_classifier()), requested, scheduler)
    assert not torch.equal(pushed, guided)


def test_guidance_moves_each_group_toward_the_decision_boundary(gaussian):
    requested = torch.arange(400) % 2
    plain = run(gaussian, Conditional(), requested, batch_size=400)
    guided = run(gaussian, ClassifierGuidance(1.0, classifier=gaussian.guidance_classifier()), requested, batch_size=400)
    for a in (0, 1):
        assert guided[requested == a, 0].mean().abs() < plain[requested == a, 0].mean().abs()


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_same_seed_same_samples_for_one_batch_of_8_and_two_of_4(gaussian, scheduler):
    requested = torch.arange(8) % 2
    for method in (Conditional(), AttributeSwitching(300), EmbeddingMixing(0.3)):
        whole = run(gaussian, method, requested, scheduler, batch_size=8)
        halves = run(gaussian, method, requested, scheduler, batch_size=4)
        assert torch.equal(whole, halves)


def test_sample_i_gets_the_same_noise_whatever_its_position(gaussian):
    requested = torch.zeros(6, dtype=torch.long)
    full = run(gaussian, Conditional(), requested)
    picked = run(gaussian, Conditional(), requested[:2], indices=[4, 1])
    assert torch.equal(picked, full[[4, 1]])


def test_different_seeds_differ_and_nfe_is_counted(gaussian):
    requested = torch.zeros(6, dtype=torch.long)
    assert not torch.equal(run(gaussian, Conditional(), requested, seed=0), run(gaussian, Conditional(), requested, seed=1))
    out = sample(gaussian, AttributeSwitching(400), requested, scheduler_name="ddim", steps=25, seed=0, batch_size=4)
    assert out.nfe == 6 * 25  # the switch costs no extra evaluation


def test_resolve_tau_accepts_integers_and_fractions_and_refuses_the_rest():
    assert resolve_tau(-1, 1000) == -1
    assert resolve_tau(999, 1000) == 999
    assert resolve_tau(0.64, 1000) == 640
    assert resolve_tau(1.0, 1000) == 999
    for bad in (1000, -2, 1.5, "640", True, float("nan")):
        with pytest.raises(FairbenchError):
            resolve_tau(bad, 1000)


def test_non_finite_model_output_is_reported_with_method_and_step(gaussian):
    class Broken(GaussianModel):
        def eps(self, x, t, weights):
            out = super().eps(x, t, weights)
            return out if t > 500 else out * float("nan")

    broken = Broken([[-0.5, 0.0], [0.5, 0.0]], 0.5)
    with pytest.raises(FairbenchError, match=r"step 9 \(t=500\).*attribute_switching.*'tau': 300"):
        run(broken, AttributeSwitching(300), torch.zeros(4, dtype=torch.long))
