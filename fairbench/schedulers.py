"""The samplers fairbench drives: diffusers schedulers, built from one noise schedule.

A scheduler visits a decreasing list of training timesteps ``t_1 > ... > t_n``; every method
and every tau search works on that grid (see METHOD.md, "Notation").
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from .errors import FairbenchError, lookup

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _ddim(noise: dict[str, Any], clip_sample: bool) -> SchedulerMixin:
    # eta = 0 (deterministic) is passed at step time. clip_sample clamps the predicted x0 to
    # [-1, 1] at every step (the authors' reference DDIM); off, every update stays affine in x
    # (the analytic Gaussian model relies on it).
    return DDIMScheduler(**noise, clip_sample=clip_sample, set_alpha_to_one=True)


class AncestralDDPM(DDIMScheduler):
    """DDPM's ancestral sampler (Ho et al. 2020, posterior variance ``beta~_t``), as DDIM with eta = 1.

    Song et al. (DDIM, ICLR 2021, eq. 16 and section 4.1) show that DDIM's update with eta = 1
    is the DDPM posterior step, on any subsequence of timesteps: the same mean
    ``sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps`` and the same variance
    ``sigma^2 = (1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev)`` as diffusers'
    ``DDPMScheduler`` with ``variance_type="fixed_small"`` (tests/test_noise.py checks the two
    step for step). Written this way the step takes its fresh noise as DDIM's documented
    ``variance_noise`` argument (``DDPMScheduler.step`` only takes generators), so fairbench
    hands it counter-based noise for the whole batch at once.
    """

    def step(self, model_output, timestep, sample, generator=None, variance_noise=None, return_dict=True):
        return super().step(
            model_output, timestep, sample, eta=1.0, generator=generator, variance_noise=variance_noise,
            return_dict=return_dict,
        )


def _ddpm(noise: dict[str, Any], clip_sample: bool) -> SchedulerMixin:
    return AncestralDDPM(**noise, clip_sample=clip_sample, set_alpha_to_one=True)


def _dpm(noise: dict[str, Any], clip_sample: bool) -> SchedulerMixin:
    return DPMSolverMultistepScheduler(**noise, algorithm_type="dpmsolver++", solver_order=2)


def _euler(noise: dict[str, Any], clip_sample: bool) -> SchedulerMixin:
    return EulerDiscreteScheduler(**noise)


SCHEDULERS = {"ddim": _ddim, "ddpm": _ddpm, "dpm_solver": _dpm, "euler": _euler}
# Schedulers with diffusers' `clip_sample` option (clamp the predicted x0 to [-1, 1]).
CLIPPING_SCHEDULERS = ("ddim", "ddpm")


def make_scheduler(
    name: str,
    *,
    num_train_timesteps: int = 1000,
    beta_schedule: str = "linear",
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    prediction_type: str = "epsilon",
    clip_sample: bool = False,
) -> SchedulerMixin:
    """Build the named scheduler over one training noise schedule (`clip_sample`: ddim, ddpm only)."""
    build = lookup(SCHEDULERS, name, "scheduler")
    if clip_sample and name not in CLIPPING_SCHEDULERS:
        raise FairbenchError(f"clip_sample applies to the {' and '.join(CLIPPING_SCHEDULERS)} schedulers, not {name!r}")
    lookup({b: b for b in BETA_SCHEDULES}, beta_schedule, "beta_schedule")
    noise = dict(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        beta_start=beta_start,
        beta_end=beta_end,
        prediction_type=prediction_type,
    )
    return build(noise, clip_sample)


def build_scheduler(name: str, model: Any, steps: int, *, clip_sample: bool = False) -> SchedulerMixin:
    """The named scheduler over `model`'s training noise schedule, set to visit `steps` timesteps.

    `model` is a `fairbench.models.base.Denoiser` (anything with ``scheduler_config()``).
    """
    scheduler = make_scheduler(name, clip_sample=clip_sample, **model.scheduler_config())
    scheduler.set_timesteps(steps)
    return scheduler


def adds_noise(scheduler: SchedulerMixin) -> bool:
    """Whether the scheduler's step adds fresh noise (which it then takes as ``variance_noise``): the
    ancestral DDPM sampler does; the deterministic ones (DDIM eta = 0, DPM-Solver, Euler) do not."""
    return isinstance(scheduler, AncestralDDPM)


def visited_timesteps(scheduler: SchedulerMixin, steps: int) -> list[int]:
    """Training timesteps the scheduler visits for `steps` inference steps, in order."""
    scheduler.set_timesteps(steps)
    return [int(t) for t in scheduler.timesteps]


def alphas_cumprod(scheduler: SchedulerMixin) -> torch.Tensor:
    """``abar_t`` for t = 0..T-1, float64."""
    return scheduler.alphas_cumprod.to(torch.float64)
