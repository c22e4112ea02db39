"""The one sampling loop: a diffusers scheduler, a model, and a method that picks conditions.

For every visited timestep t: the method gives each sample a condition mixture; the model
predicts the noise under it; a method with a correction (classifier guidance, semantic
guidance) adjusts it;
the scheduler takes its ordinary step. Nothing else differs between methods.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .errors import NumericalFault
from .models.base import Denoiser, one_hot
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
    method = method.visiting([int(t) for t in scheduler.timesteps])
    correct = method.correct
    for index, t_tensor in enumerate(scheduler.timesteps):
        if index < first:
            continue
        t = int(t_tensor)
        model_input = scheduler.scale_model_input(x, t_tensor)
        weights = method.weights(t, requested, k).to(x.device)
        with torch.no_grad():
            eps, evaluations = predict(model, model_input, t, weights, mixes_predictions=method.mixes_predictions)
        nfe += evaluations
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


def predict(model: Denoiser, x: torch.Tensor, t: int, weights: torch.Tensor, *,
            mixes_predictions: bool = False) -> tuple[torch.Tensor, int]:
    """The noise prediction of one step under the condition mixtures `weights` ([B, k] or [B, k + 1]),
    and the model evaluations it took, counted per sample.

    One evaluation per sample, ``eps(x, t, w)``, unless the method `mixes_predictions` and a row
    has several non-zero weights: that row's prediction is then ``sum_v w_v eps(x, t, e_v)``,
    one evaluation per non-zero weight (the mixture of predictions, not of conditions; on the
    analytic model, whose prediction is affine in the condition, both are the same). Rows that
    are one-hot go through the single evaluation unchanged.
    """
    active = weights != 0
    if not mixes_predictions or int(active.sum(1).max()) <= 1:
        return model.eps(x, t, weights), len(x)
    eps, remaining, evaluations = None, weights.clone(), 0
    while bool(remaining.any()):
        rows = remaining.any(1)
        value = (remaining[rows] != 0).to(torch.int8).argmax(1)  # the first value still to evaluate, per row
        coefficient = remaining[rows].gather(1, value[:, None])
        part = model.eps(x[rows], t, one_hot(value, weights.shape[1], weights.dtype))
        if eps is None:
            eps = torch.zeros((len(x), *part.shape[1:]), dtype=part.dtype, device=part.device)
        eps[rows] += coefficient.to(part.dtype).view(-1, *[1] * (part.ndim - 1)) * part
        remaining[rows] = remaining[rows].scatter(1, value[:, None], 0)
        evaluations += int(rows.sum())
    return eps, evaluations


def _tensor_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _state_bytes(state: Resume) -> int:
    """The tensors a kept state holds: the sample and its scheduler copy's (schedules, history)."""
    return _tensor_bytes(state.x) + sum(_tensor_bytes(v) for v in vars(state.scheduler).values())


class PrefixCache:
    """Conditional trajectories of this process, so that a method whose first steps are
    conditional sampling continues from them instead of recomputing them.

    Attribute switching at tau conditions on the request while ``t > tau``: those steps are
    the conditional sampler's, bit for bit, given the same model, sampler, seed, sample indices
    and requests. When a run samples `Conditional` first, `sample` keeps the state after each
    of its steps (with the scheduler's state and the time spent so far) and a later method
    declaring ``conditional_prefix(timesteps) = p`` resumes at step p. The output, the model
    evaluations counted (`SampleOutput.nfe`) and the classifier evaluations are those of
    sampling from ``x_T``; `SampleOutput.wall_s` is the time spent now plus the time the
    reused steps took when they were computed, so the cost columns still show the method's
    own cost; the time spent keeping states is not counted in the conditional run's, and
    `bytes` (what the kept states hold) is what a peak-memory measurement should leave out.
    A trajectory is kept only while all kept states fit in `max_bytes`.
    """

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = max_bytes
        self._entries: dict[tuple, tuple[object, list[Resume], list[float]]] = {}
        self._bytes = 0

    @staticmethod
    def key(model, scheduler_name: str, steps: int, clip_sample: bool, seed: int, indices, requested: torch.Tensor):
        return (id(model), scheduler_name, steps, clip_sample, seed, tuple(indices),
                tuple(int(v) for v in requested.cpu()))

    @property
    def bytes(self) -> int:
        """Memory held by the kept states."""
        return self._bytes

    def fits(self, batch: int, model, steps: int) -> bool:
        size = batch * int(torch.Size(model.sample_shape).numel()) * torch.finfo(model.dtype).bits // 8
        return self._bytes + size * steps <= self.max_bytes

    def store(self, key, model, states: list[Resume], elapsed: list[float]) -> None:
        if key in self._entries:  # the same trajectory again (a job rerun in this process): replace it
            self._bytes -= sum(_state_bytes(state) for state in self._entries[key][1])
        self._bytes += sum(_state_bytes(state) for state in states)
        self._entries[key] = (model, states, elapsed)  # the model is held so that id(model) stays unique

    def resume(self, key, step: int) -> tuple[Resume, float] | None:
        """The state entering step `step` (>= 1) and the seconds spent reaching it, if kept."""
        entry = self._entries.get(key)
        if entry is None or not 1 <= step <= len(entry[1]):
            return None
        state = entry[1][step - 1]
        return Resume(state.index, state.x, copy.deepcopy(state.scheduler)), entry[2][step - 1]


def _sample_batch(model, method, noise, requested, *, scheduler_name, steps, step_noise, clip_sample, cache, key):
    """`denoise` one batch, reusing (or keeping, for conditional sampling) its conditional prefix in `cache`.

    Returns (samples, nfe, classifier evaluations, seconds to add to the measured time): the
    reused steps' time when resuming, minus the time spent keeping states when keeping them,
    so a method's wall time is its own sampling with or without the cache."""
    if cache is None:
        return (*denoise(model, method, noise, requested, scheduler_name=scheduler_name, steps=steps,
                         step_noise=step_noise, clip_sample=clip_sample), 0.0)
    looking = time.perf_counter()
    timesteps = [int(t) for t in build_scheduler(scheduler_name, model, steps, clip_sample=clip_sample).timesteps]
    prefix = method.conditional_prefix(timesteps)
    found = cache.resume(key, prefix) if 0 < prefix < len(timesteps) else None
    lookup_s = time.perf_counter() - looking  # bookkeeping, not sampling
    if found is not None:
        resume, spent = found
        x, nfe, classifier_evals = denoise(
            model, method, None, requested, scheduler_name=scheduler_name, steps=steps,
            step_noise=step_noise, resume=resume, clip_sample=clip_sample,
        )
        return x, nfe + prefix * len(x), classifier_evals, spent - lookup_s
    if prefix == len(timesteps) and cache.fits(len(requested), model, prefix):
        states, elapsed, start, bookkeeping = [], [], time.perf_counter(), [0.0]

        def keep(step: Step) -> None:
            entered = time.perf_counter()
            elapsed.append(entered - start - bookkeeping[0])
            states.append(Resume(step.index + 1, step.prev_sample.clone(), copy.deepcopy(step.scheduler)))
            bookkeeping[0] += time.perf_counter() - entered

        out = denoise(model, method, noise, requested, scheduler_name=scheduler_name, steps=steps,
                      step_noise=step_noise, on_step=keep, clip_sample=clip_sample)
        cache.store(key, model, states, elapsed)
        return (*out, -bookkeeping[0] - lookup_s)
    out = denoise(model, method, noise, requested, scheduler_name=scheduler_name, steps=steps,
                  step_noise=step_noise, clip_sample=clip_sample)
    return (*out, -lookup_s)


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
    prefix_cache: PrefixCache | None = None,
) -> SampleOutput:
    """Sample ``len(requested)`` outputs; sample j uses the noise of index ``indices[j]`` (default j).

    `prefix_cache`: reuse conditional steps computed earlier in this process (`PrefixCache`);
    the samples are the same with or without it.
    """
    requested = torch.as_tensor(requested, dtype=torch.long)
    indices = list(range(len(requested))) if indices is None else list(indices)
    outputs, nfe, classifier_evals, adjust_s = [], 0, 0, 0.0
    start = time.perf_counter()
    for lo in range(0, len(requested), batch_size):
        batch = indices[lo : lo + batch_size]
        noise = initial_noise(seed, batch, model.sample_shape, dtype=model.dtype).to(device)
        wanted = requested[lo : lo + batch_size]
        key = None if prefix_cache is None else PrefixCache.key(model, scheduler_name, steps, clip_sample, seed, batch, wanted)
        x, n, c, spent = _sample_batch(
            model, method, noise, wanted.to(device), scheduler_name=scheduler_name, steps=steps,
            step_noise=StepNoise(seed, batch), clip_sample=clip_sample, cache=prefix_cache, key=key,
        )
        outputs.append(x.detach().cpu())
        nfe, classifier_evals, adjust_s = nfe + n, classifier_evals + c, adjust_s + spent
        if progress is not None:
            progress(len(batch))
    k = model.num_attributes
    return SampleOutput(
        samples=torch.cat(outputs),
        requested=requested,
        final=method.final(requested, k),
        nfe=nfe,
        wall_s=time.perf_counter() - start + adjust_s,
        classifier_evals=classifier_evals,
    )
