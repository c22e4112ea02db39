"""Training-free fair-sampling methods beyond the paper: exact limits and known answers.

Null-prefix switching, classifier guidance toward the unconditional model (Bayes' rule) and
semantic guidance toward a drawn value (Fair Diffusion), on the analytic Gaussian model
(whose null condition is the exact unconditional model) and on tiny class-conditional UNets.
"""

import math

import pytest
import torch

from fairbench.errors import FairbenchError
from fairbench.methods import (
    check_method,
    ClassifierGuidance,
    Conditional,
    MethodContext,
    NullPrefixSwitching,
    RandomCondition,
    SemanticGuidance,
    assigned,
)
from fairbench.models.base import one_hot
from fairbench.models.gaussian import GaussianModel, exact_run_metrics
from fairbench.models.unet import UNetDenoiser
from fairbench.sampling import sample

from test_unet import tiny_unet

SCHEDULERS = ["ddim", "ddpm", "dpm_solver", "euler"]
SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "linear"}


def run(model, method, requested, scheduler="ddim", steps=20, seed=3, batch_size=64):
    requested = torch.as_tensor(requested)
    conditions = assigned(method, requested, model.num_attributes, seed=seed, indices=range(len(requested)))
    return sample(model, method, conditions, scheduler_name=scheduler, steps=steps, seed=seed, batch_size=batch_size)


class NullThroughout(Conditional):
    """Unconditional sampling: the null condition (column k) at every step."""

    def weights(self, t, requested, k):
        return one_hot(torch.full_like(requested, k), k + 1)


def mixture_eps(model: GaussianModel, x: torch.Tensor, t: int) -> torch.Tensor:
    """Oracle: ``-sqrt(1 - abar_t) grad log p(x_t)`` of the equal-weight mixture, by autograd."""
    abar = float(model.alphas_cumprod[t])
    var = abar * model.std**2 + 1.0 - abar
    x = x.detach().requires_grad_(True)
    sq = ((x[:, None, :] - math.sqrt(abar) * model.means[None]) ** 2).sum(-1)
    (grad,) = torch.autograd.grad(torch.logsumexp(-0.5 * sq / var, dim=1).sum(), x)
    return -math.sqrt(1.0 - abar) * grad


# ---------------------------------------------------------------------------------------------
# Null-prefix switching


def test_the_gaussian_null_condition_is_the_exact_unconditional_model(gaussian):
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.5
    null = one_hot(torch.full((32,), 2), 3, torch.float64)
    for t in (5, 300, 700, 999):
        assert torch.allclose(gaussian.eps(x, t, null), mixture_eps(gaussian, x, t), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_null_prefix_at_the_ends_is_unconditional_and_conditional_bitwise(gaussian, scheduler):
    requested = torch.arange(16) % 2
    T = gaussian.num_train_timesteps
    assert torch.equal(run(gaussian, NullPrefixSwitching(T - 1), requested, scheduler).samples,
                       run(gaussian, Conditional(), requested, scheduler).samples)
    never = run(gaussian, NullPrefixSwitching(-1), requested, scheduler).samples
    assert torch.equal(never, run(gaussian, NullThroughout(), requested, scheduler).samples)
    # Unconditional sampling ignores the request: the same noise gives the same sample.
    assert torch.equal(never, run(gaussian, NullPrefixSwitching(-1), 1 - requested, scheduler).samples)


def test_a_later_switch_to_the_request_leaves_the_groups_closer(gaussian):
    # Deterministic DDIM: the gap between the requested groups' means shrinks as the request
    # conditions fewer (later) steps, and is sampling noise only at tau = -1 (the groups use
    # different noises: sd of the gap about 0.7 sqrt(2 / 1000) = 0.03).
    requested = torch.arange(2000) % 2

    def gap(tau):
        x = run(gaussian, NullPrefixSwitching(tau), requested, batch_size=2000).samples[:, 0]
        return float(x[requested == 1].mean() - x[requested == 0].mean())

    gaps = [gap(tau) for tau in (999, 600, 300, 100, -1)]
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] > 0.15 > abs(gaps[4]), gaps
    assert gaps[0] > 0.8  # conditional: about the distance of the means (1.0)


def test_the_closed_form_tv_is_given_exactly_when_the_null_condition_is_unused(gaussian):
    # The unconditional prediction is not affine in x, so any step on it loses the closed form.
    assert exact_run_metrics(gaussian, method=NullPrefixSwitching(500), scheduler_name="ddim", steps=10) == {}
    conditional = exact_run_metrics(gaussian, method=Conditional(), scheduler_name="ddim", steps=10)
    assert exact_run_metrics(gaussian, method=NullPrefixSwitching(999), scheduler_name="ddim", steps=10) == conditional
    assert conditional["tv_exact"] > 0.5


def test_null_prefix_on_a_unet_with_a_null_class():
    model = UNetDenoiser(tiny_unet(num_class_embeds=3), SCHEDULE, ("light", "heavy"))
    assert model.capabilities.null_condition
    requested = torch.tensor([0, 1, 1, 0])
    kw = dict(steps=4, batch_size=4)
    method = NullPrefixSwitching.build(NullPrefixSwitching.Params(tau=999), MethodContext(model=model))
    assert torch.equal(run(model, method, requested, **kw).samples, run(model, Conditional(), requested, **kw).samples)
    never = run(model, NullPrefixSwitching(-1), requested, **kw).samples
    assert torch.equal(never, run(model, NullThroughout(), requested, **kw).samples)
    assert not torch.equal(never, run(model, NullPrefixSwitching(500), requested, **kw).samples)


def test_a_model_without_a_null_condition_is_refused_with_one_line():
    model = UNetDenoiser(tiny_unet(num_class_embeds=2), SCHEDULE, ("light", "heavy"))
    assert not model.capabilities.null_condition
    with pytest.raises(FairbenchError) as caught:
        check_method(NullPrefixSwitching, NullPrefixSwitching.Params(tau=500), MethodContext(model=model), "methods[2]")
    message = str(caught.value)
    assert message.startswith("methods[2]: null_prefix_switching needs a null condition")
    assert "\n" not in message and "null_class = true" in message and "neutral_prompt" in message


def test_null_prefix_tau_is_checked_against_the_model(gaussian):
    with pytest.raises(FairbenchError, match="out of range"):
        NullPrefixSwitching.build(NullPrefixSwitching.Params(tau=1000), MethodContext(model=gaussian))
    assert NullPrefixSwitching.build(NullPrefixSwitching.Params(tau=0.5), MethodContext(model=gaussian)).tau == 500


# ---------------------------------------------------------------------------------------------
# Classifier guidance toward the unconditional model (Bayes' rule)


def test_bayes_rule_correction_with_the_exact_posterior_is_the_unconditional_model(gaussian):
    guidance = ClassifierGuidance(1.0, classifier=gaussian.guidance_classifier(), target="unconditional")
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1.5
    requested = torch.arange(32) % 2
    for t in (5, 300, 700, 999):
        eps = gaussian.eps(x, t, one_hot(requested, 2, torch.float64))
        corrected = guidance.correct(eps, x, t, float(gaussian.alphas_cumprod[t]), requested)
        assert torch.allclose(corrected, mixture_eps(gaussian, x, t), atol=1e-12, rtol=1e-10)


def test_bayes_rule_guidance_samples_the_unconditional_model(gaussian):
    requested = torch.arange(64) % 2
    guided = run(gaussian, ClassifierGuidance(1.0, classifier=gaussian.guidance_classifier(), target="unconditional"), requested)
    unconditional = run(gaussian, NullPrefixSwitching(-1), requested)
    assert torch.allclose(guided.samples, unconditional.samples, atol=1e-10)
    assert guided.classifier_evals == guided.nfe == 64 * 20


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_bayes_rule_guidance_at_scale_zero_is_conditional_bitwise(gaussian, scheduler):
    requested = torch.arange(16) % 2
    zero = ClassifierGuidance(0.0, classifier=gaussian.guidance_classifier(), target="unconditional")
    assert torch.equal(run(gaussian, zero, requested, scheduler).samples,
                       run(gaussian, Conditional(), requested, scheduler).samples)


def test_bayes_rule_guidance_is_the_request_log_probability_at_negative_scale(gaussian):
    # eps + w c grad log p(s|x) against the definition written out with autograd.
    classifier = gaussian.guidance_classifier()
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    requested = torch.tensor([0, 1] * 4)
    t, abar = 400, float(gaussian.alphas_cumprod[400])
    x_in = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(classifier.log_prob(x_in, t).gather(1, requested[:, None]).sum(), x_in)
    eps = gaussian.eps(x, t, one_hot(requested, 2, torch.float64))
    expected = eps + 0.7 * math.sqrt(1.0 - abar) * grad
    got = ClassifierGuidance(0.7, classifier=classifier, target="unconditional").correct(eps, x, t, abar, requested)
    assert torch.allclose(got, expected, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# Semantic guidance toward a drawn value (Fair Diffusion)


def semantic(model, **params):
    return SemanticGuidance.build(SemanticGuidance.Params(**params), MethodContext(model=model))


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_semantic_guidance_at_edit_scale_zero_is_conditional_bitwise(gaussian, scheduler):
    requested = torch.arange(16) % 2
    out = run(gaussian, semantic(gaussian, edit_scale=0.0, warmup_steps=0), requested, scheduler)
    assert torch.equal(out.samples, run(gaussian, Conditional(), requested, scheduler).samples)
    assert torch.equal(out.final, requested)
    assert out.nfe == 2 * 16 * 20  # the edit direction's model evaluation is made (and counted) anyway


def test_semantic_guidance_that_never_leaves_its_warm_up_is_conditional_bitwise(gaussian):
    requested = torch.arange(16) % 2
    method = semantic(gaussian, edit_scale=5.0, warmup_steps=20, momentum_scale=0.5)
    assert torch.equal(run(gaussian, method, requested).samples, run(gaussian, Conditional(), requested).samples)
    assert not torch.equal(run(gaussian, semantic(gaussian, edit_scale=5.0, warmup_steps=19), requested).samples,
                           run(gaussian, Conditional(), requested).samples)


def test_unit_edit_without_threshold_or_momentum_is_conditional_on_the_drawn_value(gaussian):
    # eps_a + 1 * (eps_b - eps_a) = eps_b at every step: sampling conditioned on the drawn
    # value b, which is the value random_condition draws for the same sample.
    requested = torch.arange(64) % 2
    method = semantic(gaussian, edit_scale=1.0, warmup_steps=0, threshold=0.0, momentum_scale=0.0)
    out = run(gaussian, method, requested)
    drawn = run(gaussian, RandomCondition(), requested)
    assert torch.allclose(out.samples, drawn.samples, atol=1e-12)
    assert torch.equal(out.final, drawn.final)
    assert (out.final != requested).any() and (out.final == requested).any()


def test_the_edit_keeps_the_top_entries_and_carries_momentum():
    # The edit direction is proportional to mu_b - mu_a: distinct magnitudes, so the 0.8-quantile
    # of 10 entries keeps exactly the 2 largest.
    model = GaussianModel([[0.0] * 10, [(-1) ** i * (i + 1) / 5 for i in range(10)]], 0.5)
    k, t1, t2 = 2, 600, 400
    method = semantic(model, edit_scale=2.0, warmup_steps=0, threshold=0.8, momentum_scale=0.5, momentum_beta=0.6)
    requested = torch.tensor([0, 1, 0, 1])
    drawn = torch.tensor([1, 0, 0, 1])  # samples 0, 1 are edited; 2, 3 drew their own value
    codes = requested + k * drawn
    x1 = torch.randn(4, 10, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x2 = torch.randn(4, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    def psi(x, t):
        return 2.0 * (model.eps(x, t, one_hot(drawn, k, torch.float64)) - model.eps(x, t, one_hot(requested, k, torch.float64)))

    def kept(p):  # entries at or above the 0.8-quantile of |p| per sample
        return torch.where(p.abs() >= torch.quantile(p.abs(), 0.8, dim=1, keepdim=True), p, 0.0)

    eps1 = model.eps(x1, t1, one_hot(requested, k, torch.float64))
    gamma1 = method.correct(eps1, x1, t1, 0.0, codes) - eps1
    expected1 = kept(psi(x1, t1)) * (drawn != requested)[:, None]
    assert torch.allclose(gamma1, expected1, atol=1e-12)
    assert (gamma1[:2] != 0).sum(dim=1).tolist() == [2, 2] and not gamma1[2:].any()
    eps2 = model.eps(x2, t2, one_hot(requested, k, torch.float64))
    gamma2 = method.correct(eps2, x2, t2, 0.0, codes) - eps2
    momentum = (1.0 - 0.6) * expected1  # nu_1 = beta nu_0 + (1 - beta) gamma_1, nu_0 = 0
    assert torch.allclose(gamma2, kept(psi(x2, t2)) * (drawn != requested)[:, None] + 0.5 * momentum, atol=1e-12)
    # A new trajectory (t back at the top) starts without momentum.
    again = method.correct(eps1, x1, t1, 0.0, codes) - eps1
    assert torch.allclose(again, expected1, atol=1e-12)


def test_semantic_guidance_draws_the_random_condition_value_and_records_it_as_final(gaussian):
    method = semantic(gaussian)
    requested = torch.arange(1000) % 2
    codes = assigned(method, requested, 2, seed=7, indices=range(1000))
    assert torch.equal(codes % 2, requested)
    assert torch.equal(method.final(codes, 2), assigned(RandomCondition(), requested, 2, seed=7, indices=range(1000)))
    assert torch.equal(method.weights(500, codes, 2), one_hot(requested, 2))


def test_a_run_asking_for_a_null_condition_the_model_lacks_stops_before_writing(tmp_path, capsys):
    from fairbench.cli import main

    tiny_unet(num_class_embeds=2).save_pretrained(tmp_path / "unet")
    config = tmp_path / "c.toml"
    config.write_text(
        '[benchmark]\nname = "u"\nn_samples = 12\n[model]\nkind = "unet"\n'
        f'path = "{tmp_path / "unet"}"\nattribute_names = ["a", "b"]\n[sampler]\nsteps = 3\n'
        '[[methods]]\nname = "conditional"\n[[methods]]\nname = "null_prefix_switching"\ntau = 500\n'
    )
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fairbench: error: methods[1]: null_prefix_switching needs a null condition")
    assert not (tmp_path / "out").exists()
