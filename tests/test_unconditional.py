"""Unconditional generators conditioned by guidance, guided switching and distribution guidance.

Exact limits on the analytic Gaussian model: its exact unconditional prediction guided by the
exact posterior at w = 1 is the conditional model (Bayes' rule), so every condition schedule,
attribute switching at any tau and every tau search give the conditional model's answers.
"""

import dataclasses

import pytest
import torch
from diffusers import UNet2DModel

from fairbench.classifiers import HSpaceClassifier, NoiseAwareClassifier
from fairbench.config import parse_config
from fairbench.errors import FairbenchError
from fairbench.methods import AttributeSwitching, ClassifierGuidance, Conditional, DistributionGuidance, MethodContext, check_method
from fairbench.models import model_spec
from fairbench.models.base import one_hot
from fairbench.models.gaussian import GaussianModel
from fairbench.models.unconditional import GuidedDenoiser, UNetHSpace, check_generator, gaussian_unconditional, unet_unconditional
from fairbench.models.unet import UNetDenoiser
from fairbench.runner import Job
from fairbench.sampling import sample
from fairbench.schedulers import make_scheduler
from fairbench.tau_search import run_search

STEPS = 10


@pytest.fixture(scope="module")
def gaussian():
    return GaussianModel([[-1.0, 0.5], [1.0, -0.5]], 0.4)


def draw(model, method, requested, *, batch_size=16, seed=0, indices=None):
    return sample(model, method, requested, scheduler_name="ddim", steps=STEPS, seed=seed, batch_size=batch_size,
                  indices=indices).samples


def test_bayes_rule_guidance_of_the_exact_unconditional_model_is_the_conditional_model(gaussian):
    guided = gaussian_unconditional(gaussian)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    for t in (0, 10, 250, 640, 999):
        for a in (0, 1):
            weights = one_hot(torch.full((64,), a), 2, torch.float64)
            assert torch.allclose(guided.eps(x, t, weights), gaussian.eps(x, t, weights), atol=1e-12, rtol=0)
    null = one_hot(torch.full((64,), 2), 3, torch.float64)
    assert torch.equal(guided.eps(x, 500, null), gaussian.eps(x, 500, null))  # column k: no guidance


def test_guidance_scale_zero_is_the_unconditional_model_and_other_scales_are_not_bayes_rule(gaussian):
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    weights = one_hot(torch.arange(32) % 2, 2, torch.float64)
    null = one_hot(torch.full((32,), 2), 3, torch.float64)
    assert torch.equal(gaussian_unconditional(gaussian, guidance_scale=0.0).eps(x, 400, weights), gaussian.eps(x, 400, null))
    strong = gaussian_unconditional(gaussian, guidance_scale=3.0).eps(x, 400, weights)
    assert not torch.allclose(strong, gaussian.eps(x, 400, weights), atol=1e-3)


@pytest.mark.parametrize("tau", [-1, 150, 420, 999])
def test_guided_switching_equals_attribute_switching(gaussian, tau):
    guided = gaussian_unconditional(gaussian)
    requested = torch.arange(40) % 2
    method = AttributeSwitching(tau=tau)
    assert torch.allclose(draw(guided, method, requested), draw(gaussian, method, requested), atol=1e-9, rtol=0)


def test_guided_switching_limits_are_guided_conditional_sampling(gaussian):
    guided = gaussian_unconditional(gaussian, guidance_scale=2.0)  # the limits hold at any scale
    requested = torch.arange(24) % 2
    assert torch.equal(draw(guided, AttributeSwitching(tau=-1), requested), draw(guided, Conditional(), requested))
    assert torch.equal(draw(guided, AttributeSwitching(tau=999), requested), draw(guided, Conditional(), 1 - requested))


# The sweep measures epsilon at every candidate (minutes on 2 cores): slow.
@pytest.mark.parametrize("search", ["reference", "direct", pytest.param("sweep", marks=pytest.mark.slow)])
def test_every_tau_search_finds_the_conditional_models_tau(gaussian, search):
    setup = model_spec({"kind": "gaussian", "means": [[-1.0, 0.5], [1.0, -0.5]], "std": 0.4, "n_real": 200}).build()
    guided = dataclasses.replace(setup, model=gaussian_unconditional(setup.model))
    kwargs = dict(scheduler_name="ddim", steps=STEPS, seed=0, batch_size=64)
    on_guided, on_conditional = run_search(search, guided, **kwargs), run_search(search, setup, **kwargs)
    assert on_guided.tau == on_conditional.tau
    assert [t for t, _ in on_guided.curve] == [t for t, _ in on_conditional.curve]
    assert np_close([v for _, v in on_guided.curve], [v for _, v in on_conditional.curve])


def np_close(first, second) -> bool:
    return torch.allclose(torch.tensor(first, dtype=torch.float64), torch.tensor(second, dtype=torch.float64), atol=1e-6)


def test_classifier_guidance_to_unconditional_undoes_the_models_guidance(gaussian):
    # Bayes' rule twice: guidance toward s by the model, away from s by the method, same classifier.
    guided = gaussian_unconditional(gaussian)
    requested = torch.arange(16) % 2
    method = ClassifierGuidance(scale=1.0, classifier=guided.classifier, target="unconditional")
    unconditional = DistributionGuidance(scale=0.0, model=gaussian)
    assert torch.allclose(draw(guided, method, requested), draw(gaussian, unconditional, requested), atol=1e-9, rtol=0)


# ---------------------------------------------------------------------------------------------
# Distribution guidance


def test_distribution_guidance_at_scale_zero_is_unconditional_sampling(gaussian):
    requested = torch.arange(16) % 2
    null = GuidedDenoiser(lambda x, t: gaussian.eps(x, t, one_hot(torch.full((len(x),), 2), 3, torch.float64)),
                          gaussian.guidance_classifier(), guidance_scale=0.0, alphas_cumprod=gaussian.alphas_cumprod,
                          attribute_names=gaussian.attribute_names, sample_shape=gaussian.sample_shape,
                          dtype=gaussian.dtype, schedule=gaussian.scheduler_config())
    assert torch.equal(draw(gaussian, DistributionGuidance(scale=0.0, model=gaussian), requested),
                       draw(null, Conditional(), requested))


def judged(model, samples):
    return torch.softmax(-0.5 * ((samples[:, None, :] - model.means[None]) ** 2).sum(-1) / model.std**2, 1).argmax(1)


def test_distribution_guidance_moves_the_batch_toward_its_target(gaussian):
    requested = torch.zeros(64, dtype=torch.long)
    shares = {}
    for target in ((0.5, 0.5), (0.9, 0.1), (0.1, 0.9)):
        method = DistributionGuidance(scale=1.0, balance_target=target, model=gaussian)
        shares[target] = float((judged(gaussian, draw(gaussian, method, requested, batch_size=64)) == 0).float().mean())
    unguided = float((judged(gaussian, draw(gaussian, DistributionGuidance(scale=0.0, model=gaussian), requested,
                                            batch_size=64)) == 0).float().mean())
    assert shares[(0.9, 0.1)] > unguided + 0.15 and shares[(0.1, 0.9)] < unguided - 0.15, (shares, unguided)
    assert abs(shares[(0.5, 0.5)] - 0.5) <= abs(unguided - 0.5) + 1 / 64, (shares, unguided)


def test_distribution_guidance_depends_on_the_batch_and_only_on_it(gaussian):
    method = DistributionGuidance(scale=1.0, balance_target=(0.8, 0.2), model=gaussian)
    requested = torch.arange(16) % 2
    whole = draw(gaussian, method, requested, batch_size=16)
    halves = draw(gaussian, method, requested, batch_size=8)
    # The same batches give the same samples whatever else is sampled ...
    assert torch.equal(halves[8:], draw(gaussian, method, requested[8:], batch_size=8, indices=range(8, 16)))
    # ... other batches do not (the batch, not the sample, is guided) ...
    assert not torch.allclose(whole, halves, atol=1e-6)
    # ... and the request plays no part.
    assert torch.equal(whole, draw(gaussian, method, 1 - requested, batch_size=16))


def test_the_batch_size_enters_the_spec_of_distribution_guidance_only():
    def table(method, batch_size):
        return {"benchmark": {"name": "b", "n_samples": 20, "batch_size": batch_size},
                "model": {"kind": "gaussian", "means": [[0.0], [1.0]]}, "methods": [method]}

    guided = [Job(parse_config(table({"name": "distribution_guidance"}, b)), 0, 0) for b in (4, 8)]
    assert guided[0].spec()["batch"]["batch_size"] == 4 and guided[0].key != guided[1].key
    plain = [Job(parse_config(table({"name": "conditional"}, b)), 0, 0) for b in (4, 8)]
    assert "batch" not in plain[0].spec() and plain[0].key == plain[1].key


# ---------------------------------------------------------------------------------------------
# Real UNets, tiny


def tiny_unet(classes):
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       num_class_embeds=classes, norm_num_groups=8).eval()


def tiny_guided(unet, condition, guidance_scale=1.0, with_hspace=True):
    torch.manual_seed(1)
    classifier = NoiseAwareClassifier(1, 2, width=8).eval()
    hspace = UNetHSpace(unet, HSpaceClassifier(16 * 4 * 4, 2, hidden=16).eval() if with_hspace else None)
    return GuidedDenoiser(unet_unconditional(unet, condition, 2), classifier, guidance_scale=guidance_scale,
                          alphas_cumprod=make_scheduler("ddim").alphas_cumprod, attribute_names=("a", "b"),
                          sample_shape=(1, 8, 8), dtype=torch.float32,
                          schedule={"num_train_timesteps": 1000, "beta_schedule": "linear"}, hspace=hspace.capability())


def test_a_unet_without_classes_and_a_null_class_unet_are_guided_models():
    for classes, condition in ((None, "none"), (3, "null")):
        model = tiny_guided(tiny_unet(classes), condition)
        requested = torch.arange(4) % 2
        out = sample(model, Conditional(), requested, scheduler_name="ddim", steps=3, seed=0, batch_size=4).samples
        switched = sample(model, AttributeSwitching(tau=999), requested, scheduler_name="ddim", steps=3, seed=0,
                          batch_size=4).samples
        assert torch.isfinite(out).all() and torch.equal(out, sample(model, AttributeSwitching(tau=-1), requested,
                                                                     scheduler_name="ddim", steps=3, seed=0, batch_size=4).samples)
        assert torch.equal(switched, sample(model, Conditional(), 1 - requested, scheduler_name="ddim", steps=3, seed=0,
                                            batch_size=4).samples)
        # distribution guidance at scale 0 edits h by zero: the unconditional model, bitwise
        unguided = sample(model, DistributionGuidance(scale=0.0, model=model), requested, scheduler_name="ddim", steps=3,
                          seed=0, batch_size=4).samples
        nulls = sample(tiny_guided(tiny_unet(classes), condition, guidance_scale=0.0), Conditional(), requested,
                       scheduler_name="ddim", steps=3, seed=0, batch_size=4).samples
        assert torch.equal(unguided, nulls)
        assert not torch.allclose(sample(model, DistributionGuidance(scale=50.0, model=model), requested,
                                         scheduler_name="ddim", steps=3, seed=0, batch_size=4).samples, unguided)


def test_what_a_model_lacks_is_refused_on_one_line():
    with pytest.raises(FairbenchError, match="condition = 'null' needs a UNet with a null class") as err:
        check_generator(tiny_unet(2), "null", 2)
    assert "\n" not in str(err.value)
    with pytest.raises(FairbenchError, match="condition = 'none' needs a UNet without class embeddings"):
        check_generator(tiny_unet(3), "none", 2)
    plain = UNetDenoiser(tiny_unet(3), {"num_train_timesteps": 1000, "beta_schedule": "linear"}, ("a", "b"))
    params = DistributionGuidance.Params()
    with pytest.raises(FairbenchError, match="distribution_guidance needs an h-space attribute classifier") as err:
        check_method(DistributionGuidance, params, MethodContext(model=plain), "methods[0]")
    assert "\n" not in str(err.value) and "model kind 'unconditional'" in str(err.value)
    no_hspace = tiny_guided(tiny_unet(None), "none", with_hspace=False)
    with pytest.raises(FairbenchError, match="h-space"):
        check_method(DistributionGuidance, params, MethodContext(model=no_hspace), "m")
    check_method(DistributionGuidance, params, MethodContext(model=tiny_guided(tiny_unet(None), "none")), "m")
    with pytest.raises(FairbenchError, match=r"balance_target must give 2 probabilities"):
        check_method(DistributionGuidance, DistributionGuidance.Params(balance_target=[0.2, 0.3, 0.5]),
                     MethodContext(model=GaussianModel([[0.0], [1.0]], 0.5)), "m")


@pytest.mark.parametrize("table, message", [
    ({"guidance_scale": -1.0}, "guidance_scale must be a non-negative number"),
    ({"condition": "none"}, "condition = 'none' needs model.path"),
    ({"condition": "nul"}, "condition = 'nul' is not allowed"),
    ({"unet": {"null_class": False}}, r"needs \[model.unet\] null_class = true"),
])
def test_bad_unconditional_model_tables_are_refused(table, message):
    with pytest.raises(FairbenchError, match=message):
        model_spec({"kind": "unconditional", "unet": {"null_class": True}} | table)


def test_a_bad_unconditional_config_is_refused_on_one_line_with_nothing_written(tmp_path, capsys):
    from fairbench.cli import main

    path = tmp_path / "bad.toml"
    path.write_text('[benchmark]\nname = "b"\n[dataset]\nname = "digits"\nattribute = "stroke"\n'
                    '[model]\nkind = "unconditional"\ncondition = "nul"\n[[methods]]\nname = "conditional"\n')
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fairbench: error: ") and "'nul'" in err[0] and "null" in err[0]
    assert not (tmp_path / "out").exists()
