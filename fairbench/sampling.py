"""The one sampling loop: a diffusers scheduler, a model, and a method that picks conditions.

For every visited timestep t: the method gives each sample a condition mixture; the model
predicts the noise under it; a method with a correction (classifier guidance, semantic
guidance) adjusts it;
the scheduler takes its ordinary step. Nothing else differs between methods.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .errors import NumericalFault
from .models.base import Denoiser
from .noise import StepNoise, initial_noise
from .schedulers import adds_noise, build_scheduler


@dataclass
class SampleOutput:
    samples: torch.Tensor  # [N, *sample_shape], on the CPU
    requested: torch.Tensor  # [N]
    final: torch.Tensor  # [N]: the value whose details each sample ends with
    nfe: int  # model evaluations, counted per sample
    wall_s: float
    classifier_evals: int = 0


@dataclass(frozen=True)
class Step:
    """What `denoise` shows its `on_step` callback after each step (k-diffusion's callback).

    `x` is the state entering step `index` (timestep `t`), `eps` the noise prediction the step
    used (after any method correction), `prev_sample` the state after it, and `scheduler` the
    scheduler in its state after the step (a search may copy it to branch from here).
    """

    index: int
    t: int
    x: torch.Tensor
    eps: torch.Tensor
    prev_sample: torch.Tensor
    scheduler: object


@dataclass(frozen=True)
class Resume:
    """Start `denoise` at step `index` from state `x`, with `scheduler` in its state there."""

    index: int
    x: torch.Tensor
    scheduler: object


def _step_kwargs(scheduler, step_noise: StepNoise, index: int, x: torch.Tensor) -> dict:
    """A stochastic scheduler gets step `index`'s per-sample noise as ``variance_noise``."""
    if adds_noise(scheduler):
        return {"variance_noise": step_noise(index, x)}
    if "eta" in inspect.signature(scheduler.step).parameters:  # DDIM's step: eta = 0, deterministic
        return {"eta": 0.0}
    return {}


def bind_step_noise(scheduler, step_noise: StepNoise):
    """Make a stochastic scheduler draw its own per-step noise from `step_noise`.

    For loops that call ``scheduler.step`` themselves without ``variance_noise`` (a diffusers
    pipeline's ``__call__``): the bound step finds its index among the scheduler's timesteps
    and passes the same noise the shared loop passes, so both paths give the same samples.
    A deterministic scheduler is returned unchanged.
    """
    if not adds_noise(scheduler):
        return scheduler
    unbound = scheduler.step

    def step(model_output, timestep, sample, return_dict=True):
        index = int((scheduler.timesteps == int(timestep)).nonzero()[0, 0])
        return unbound(model_output, timestep, sample, variance_noise=step_noise(index, sample), return_dict=return_dict)

    scheduler.step = step
    return scheduler


def denoise(
    model: Denoiser,
    method,
    noise: torch.Tensor | None,
    requested: torch.Tensor,
    *,
    scheduler_name: str,
    steps: int,
    step_noise: StepNoise,
    on_step: Callable[[Step], None] | None = None,
    resume: Resume | None = None,
    clip_sample: bool = False,
) -> tuple[torch.Tensor, int, int]:
    """Run one batch from `noise` (or from `resume`) to samples; returns (samples, nfe, classifier evaluations).

    `on_step` sees every step (`Step`); `resume` continues a trajectory from a state the
    callback saw, (per-step noise is a function of the step index, so nothing else needs restoring).
    """
    if resume is None:
        scheduler = build_scheduler(scheduler_name, model, steps, clip_sample=clip_sample)
        x, first = noise * scheduler.init_noise_sigma, 0
    else:
        scheduler, x, first = resume.scheduler, resume.x, resume.index
    abar = scheduler.alphas_cumprod
    k = model.num_attributes
    nfe = classifier_evals = 0
    correct = getattr(method, "correct", None)
    for index, t_tensor in enumerate(scheduler.timesteps):
        if index < first:
            continue
        t = int(t_tensor)
        model_input = scheduler.scale_model_input(x, t_tensor)
        weights = method.weights(t, requested, k).to(x.device)
        with torch.no_grad():
            eps = model.eps(model_input, t, weights)
        nfe += len(x)
        if correct is not None:
            eps = correct(eps, model_input, t, float(abar[t]), requested)
            if method.correction_nfe:  # a correction that calls the model is counted as model evaluations
                nfe += method.correction_nfe * len(x)
            else:
                classifier_evals += len(x)
        if not torch.isfinite(eps).all():
            raise NumericalFault(
                f"non-finite noise prediction from the model at step {index} (t={t}) "
                f"under method {method.name} {method.params()}"
            )
        prev_sample = scheduler.step(eps, t_tensor, x, **_step_kwargs(scheduler, step_noise, index, x)).prev_sample
        if on_step is not None:
            on_step(Step(index, t, x, eps, prev_sample, scheduler))
        x = prev_sample
    if not torch.isfinite(x).all():
        raise NumericalFault(f"non-finite samples at the end of sampling under method {method.name} {method.params()}")
    return x, nfe, classifier_evals


def sample(
    model: Denoiser,
    method,
    requested: torch.Tensor,
    *,
    scheduler_name: str,
    steps: int,
    seed: int,
    batch_size: int,
    indices: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
    clip_sample: bool = False,
) -> SampleOutput:
    """Sample ``len(requested)`` outputs; sample j uses the noise of index ``indices[j]`` (default j)."""
    requested = torch.as_tensor(requested, dtype=torch.long)
    indices = list(range(len(requested))) if indices is None else list(indices)
    outputs, nfe, classifier_evals = [], 0, 0
    start = time.perf_counter()
    for lo in range(0, len(requested), batch_size):
        batch = indices[lo : lo + batch_size]
        noise = initial_noise(seed, batch, model.sample_shape, dtype=model.dtype).to(device)
        x, n, c = denoise(
            model,
            method,
            noise,
            requested[lo : lo + batch_size].to(device),
            scheduler_name=scheduler_name,
            steps=steps,
            step_noise=StepNoise(seed, batch),
            clip_sample=clip_sample,
        )
        outputs.append(x.detach().cpu())
        nfe, classifier_evals = nfe + n, classifier_evals + c
        if progress is not None:
            progress(len(batch))
    k = model.num_attributes
    return SampleOutput(
        samples=torch.cat(outputs),
        requested=requested,
        final=method.final(requested, k),
        nfe=nfe,
        wall_s=time.perf_counter() - start,
        classifier_evals=classifier_evals,
    )
