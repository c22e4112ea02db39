"""What the per-sample noise costs (run: python benchmarks/noise_cost.py [n_samples]).

On the analytic Gaussian model (where the network costs next to nothing), n two-dimensional
samples (default 20,000) in one batch: DDIM 50 steps (deterministic: initial noise only)
against DDPM 100 steps (fresh per-sample noise at every step), and the noise alone. Then a
tiny UNet (16x16, as in benchmarks/conftest.py) under DDPM, with the share of its wall time
spent drawing noise. Prints a markdown table; each figure is the best of `repeats` runs.
Threads: torch's default (set OMP_NUM_THREADS); compare ratios from one run, not seconds
across machines.
"""

from __future__ import annotations

import sys
import time

import torch
from diffusers import UNet2DModel

from fairbench.methods import Conditional
from fairbench.models.gaussian import GaussianModel
from fairbench.models.unet import UNetDenoiser
from fairbench.noise import initial_noise, step_noise
from fairbench.sampling import sample


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(model, n: int, scheduler: str, steps: int) -> None:
    sample(model, Conditional(), torch.arange(n) % 2, scheduler_name=scheduler, steps=steps, seed=0, batch_size=n)


def noise_only(shape, n: int, steps: int, dtype) -> None:
    initial_noise(0, range(n), shape, dtype=dtype)
    for step in range(steps):
        step_noise(0, range(n), step, shape, dtype=dtype)


def main(n: int = 20_000, repeats: int = 3) -> None:
    gaussian = GaussianModel([[-0.5, 0.0], [0.5, 0.0]], 0.5)
    ddim = best(lambda: run(gaussian, n, "ddim", 50), repeats)
    ddim_100 = best(lambda: run(gaussian, n, "ddim", 100), repeats)
    ddpm = best(lambda: run(gaussian, n, "ddpm", 100), repeats)
    noise = best(lambda: noise_only((2,), n, 100, torch.float64), repeats)
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8, num_class_embeds=2,
    ).eval()
    denoiser = UNetDenoiser(unet, {"num_train_timesteps": 1000, "beta_schedule": "linear"}, ("a", "b"))
    m, unet_steps = 64, 100
    unet_ddpm = best(lambda: run(denoiser, m, "ddpm", unet_steps), repeats)
    unet_noise = best(lambda: noise_only((1, 16, 16), m, unet_steps, torch.float32), repeats)
    print(f"| measurement ({n} Gaussian samples, batch {n}; {m} tiny-UNet samples) | seconds |")
    print("|---|---|")
    print(f"| Gaussian, DDIM 50 steps | {ddim:.3f} |")
    print(f"| Gaussian, DDIM 100 steps | {ddim_100:.3f} |")
    print(f"| Gaussian, DDPM 100 steps | {ddpm:.3f} |")
    print(f"| Gaussian, noise alone (x_T + 100 steps) | {noise:.3f} |")
    print(f"| tiny UNet, DDPM {unet_steps} steps | {unet_ddpm:.3f} |")
    print(f"| tiny UNet, noise alone (x_T + {unet_steps} steps) | {unet_noise:.3f} |")
    print(f"\ntorch threads: {torch.get_num_threads()}")
    print(f"DDPM 100 / DDIM 50 on the Gaussian model: {ddpm / ddim:.2f}x; DDPM 100 / DDIM 100: {ddpm / ddim_100:.2f}x")
    print(f"noise share of the tiny-UNet DDPM run: {100 * unet_noise / unet_ddpm:.1f}%")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
