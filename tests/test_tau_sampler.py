"""The switching sampler against a straight re-implementation of the authors' DDIM loop, and clip_sample."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import UNet2DModel

from fairbench.config import parse_config
from fairbench.errors import FairbenchError
from fairbench.methods import AttributeSwitching
from fairbench.models.unet import UNetDenoiser
from fairbench.noise import initial_noise
from fairbench.runner import Job
from fairbench.sampling import sample

T = 1000


def tiny_unet() -> UNet2DModel:
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=2, norm_num_groups=4,
    )
    with torch.no_grad():
        unet.class_embedding.weight.mul_(3.0)
    return unet.eval()


def cosine_alphas_cumprod() -> torch.Tensor:
    """Nichol & Dhariwal (2021): abar(t) = f(t) / f(0), f(t) = cos((t/T + s) / (1 + s) * pi/2)^2, s = 0.008,
    through betas clipped at 0.999 (diffusers computes the betas in float64, stores them in float32)."""
    f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    betas = torch.tensor([min(1 - f(t + 1) / f(t), 0.999) for t in range(T)], dtype=torch.float32)
    return torch.cumprod(1.0 - betas, 0), betas


def reference_ddim(unet, noise: torch.Tensor, source: torch.Tensor, target: torch.Tensor, tau: int) -> torch.Tensor:
    """The authors' DDIM (eta = 0) over all T steps, switching the class at t <= tau.

    x0 = clamp((x - sqrt(1 - abar_t) eps) / sqrt(abar_t), -1, 1); for t > 0,
    x_{t-1} = sqrt(abar_{t-1}) x0 + sqrt(1 - abar_{t-1}) eps with the raw eps; at t = 0 the
    posterior mean beta_0 sqrt(abar_prev) / (1 - abar_0) x0 + (1 - abar_prev) sqrt(alpha_0) / (1 - abar_0) x
    with abar_prev = 1 (coefficients in float64: 1 - abar_0 cancels badly in float32).
    """
    abar, betas = cosine_alphas_cumprod()
    x = noise
    reference_ddim.clamped_steps = 0
    for t in reversed(range(T)):
        labels = target if t <= tau else source
        with torch.no_grad():
            eps = unet(x, torch.full((len(x),), t), class_labels=labels).sample
        x0 = (x - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()
        reference_ddim.clamped_steps += int(x0.abs().max() > 1)
        x0 = x0.clamp(-1, 1)
        if t > 0:
            x = abar[t - 1].sqrt() * x0 + (1 - abar[t - 1]).sqrt() * eps
        else:
            beta, abar0, abar_prev = float(betas[0]), 1.0 - float(betas[0]), 1.0
            x = (beta * abar_prev**0.5 / (1 - abar0)) * x0 + ((1 - abar_prev) * (1 - beta) ** 0.5 / (1 - abar0)) * x
    return x


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def test_switching_sampler_equals_the_reference_ddim_loop_with_clipping(unet, tau=640):
    model = UNetDenoiser(unet, {"num_train_timesteps": T, "beta_schedule": "squaredcos_cap_v2"}, ("a", "b"))
    requested = torch.tensor([0, 1, 0, 1])
    noise = initial_noise(5, range(4), model.sample_shape)
    ours = sample(model, AttributeSwitching(tau), requested, scheduler_name="ddim", steps=T, seed=5, batch_size=4,
                  clip_sample=True).samples
    expected = reference_ddim(unet, noise, requested, 1 - requested, tau)
    # Not vacuous: the clamp acted on many steps (this untrained network's x0 leaves [-1, 1]).
    assert reference_ddim.clamped_steps > 100
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


CONFIG = {
    "benchmark": {"name": "b", "n_samples": 8},
    "sampler": {"scheduler": "ddim", "steps": 5},
    "methods": [{"name": "attribute_switching", "tau": "sweep"}],
}


def test_clip_sample_defaults_by_model_kind_and_is_recorded(tmp_path):
    gaussian = parse_config(CONFIG | {"model": {"kind": "gaussian", "means": [[0.0], [1.0]]}})
    unet = parse_config(CONFIG | {"model": {"kind": "unet", "path": str(tmp_path)}})
    assert Job(gaussian, 0, 0).spec()["sampler"]["clip_sample"] is False
    assert Job(unet, 0, 0).spec()["sampler"]["clip_sample"] is True
    off = parse_config(CONFIG | {"model": {"kind": "unet", "path": str(tmp_path)},
                                 "sampler": {"scheduler": "ddim", "steps": 5, "clip_sample": False}})
    assert Job(off, 0, 0).spec()["sampler"]["clip_sample"] is False
    dpm = parse_config(CONFIG | {"model": {"kind": "unet", "path": str(tmp_path)},
                                 "sampler": {"scheduler": "dpm_solver", "steps": 5}})
    assert Job(dpm, 0, 0).spec()["sampler"]["clip_sample"] is False  # the option does not exist there


def test_bad_clip_sample_and_search_names_are_refused():
    model = {"kind": "gaussian", "means": [[0.0], [1.0]]}
    with pytest.raises(FairbenchError, match="clip_sample applies to the ddim and ddpm schedulers, not 'euler'"):
        parse_config(CONFIG | {"model": model, "sampler": {"scheduler": "euler", "steps": 5, "clip_sample": True}})
    with pytest.raises(FairbenchError, match="Did you mean: direct_mean?"):
        parse_config(CONFIG | {"model": model, "methods": [{"name": "attribute_switching", "tau": "direct_maen"}]})
    for name in ("reference", "direct", "direct_mean", "sweep"):
        parse_config(CONFIG | {"model": model, "methods": [{"name": "attribute_switching", "tau": name}]})
