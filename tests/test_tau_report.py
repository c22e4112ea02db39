"""`fairbench report tau-search` on models without a closed form: the searches scored on the sweep."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel

from fairbench.cli import main
from fairbench.config import parse_config
from fairbench.methods import AttributeSwitching
from fairbench.metrics.fairness import epsilon_fairness
from fairbench.models import Setup
from fairbench.models.unet import UNetDenoiser
from fairbench.report import COMPARED, config_tau_report, model_tau_markdown, model_tau_report
from fairbench.sampling import sample

GAUSSIAN = {
    "benchmark": {"name": "two-gaussians", "n_samples": 8},
    "model": {"kind": "gaussian", "means": [[-0.5, 0.0], [0.5, 0.0]], "std": 0.3},
    "sampler": {"scheduler": "ddim", "steps": 10},
    "methods": [{"name": "conditional"}],
}


def ends_switched(setup, samples, requested, final) -> float:
    """A planted 'target gap': the fraction of samples that end on another value than requested."""
    assert len(samples) == len(requested) == len(final)
    return float(np.mean(np.asarray(final) != np.asarray(requested)))


def test_config_report_scores_every_search_on_the_sweep():
    report = config_tau_report(parse_config(GAUSSIAN), batch_size=64, target_gap=ends_switched)
    sweep = report.sweep
    assert report.label == "two-gaussians" and set(report.searches) == set(COMPARED)
    assert sweep.tau == min(sweep.curve, key=lambda pair: pair[1])[0]
    gaps = sweep.details["measures"]["target_gap"]
    assert gaps == [0.0] + [1.0] * (len(sweep.curve) - 1)  # only tau = -1 leaves every sample unswitched
    text = model_tau_markdown(report)
    assert f"Sweep optimum: tau = {sweep.tau}" in text and "target gap" in text
    for kind, result in report.searches.items():
        assert f"| {kind} | {result.tau} | {report.epsilon[result.tau]:.3f} |" in text
    assert "clip_sample=False" in report.settings


def tiny_unet() -> UNet2DModel:
    torch.manual_seed(1)
    unet = UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=2, norm_num_groups=4,
    )
    with torch.no_grad():
        unet.class_embedding.weight.mul_(3.0)
    return unet.eval()


def test_unet_report_sweep_equals_the_estimator_on_independently_sampled_groups():
    model = UNetDenoiser(tiny_unet(), {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}, ("a", "b"))
    setup = Setup(model=model)
    batch, steps = 16, 5
    report = model_tau_report("tiny unet", setup, scheduler_name="ddim", steps=steps, seed=3, batch_size=batch,
                              clip_sample=True)
    requested = torch.tensor([0] * batch + [1] * batch)
    for tau, value in report.sweep.curve[1:3]:
        out = sample(model, AttributeSwitching(tau), requested, scheduler_name="ddim", steps=steps, seed=3,
                     batch_size=2 * batch, indices=list(range(batch)) * 2, clip_sample=True)
        expected = epsilon_fairness(out.samples.reshape(2 * batch, -1).numpy(), requested.numpy(), seed=3)
        assert value == pytest.approx(expected.value)
    assert report.searches["reference"].nfe == 2 * batch * steps
    assert report.sweep.nfe == 2 * batch * (steps + steps * (steps + 1) // 2)


def test_report_command_with_a_config_and_a_figure(tmp_path, capsys):
    path = tmp_path / "g.toml"
    path.write_text(
        '[benchmark]\nname = "g"\nn_samples = 8\n[model]\nkind = "gaussian"\nmeans = [[-0.5, 0.0], [0.5, 0.0]]\n'
        '[sampler]\nsteps = 6\n[[methods]]\nname = "conditional"\n'
    )
    figure = tmp_path / "curves.png"
    assert main(["report", "tau-search", "--config", str(path), "--skip-analytic", "--batch-size", "32",
                 "--figure", str(figure), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "### g" in out and "| direct |" in out and figure.stat().st_size > 0
    assert main(["report", "tau-search", "--config", str(path), "--stride", "0"]) == 2
    assert capsys.readouterr().err.strip().startswith("fairbench: error: --stride")
