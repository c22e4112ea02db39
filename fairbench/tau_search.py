"""Finding the transition point tau: Algorithm 2 (`reference`) and a measured balance (`direct`).

Candidates: tau only matters through which visited timesteps satisfy ``t <= tau``, so the
distinct candidates are -1 and each visited timestep. Both searches return the whole curve
over the candidates they evaluated (users plot it) and the chosen tau.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from .errors import FairbenchError, lookup
from .methods import AttributeSwitching
from .models.base import Denoiser, one_hot
from .noise import StepNoise, initial_noise
from .sampling import _step_kwargs, sample
from .schedulers import make_scheduler

SearchKind = Literal["reference", "direct"]


@dataclass(frozen=True)
class TauSearchResult:
    tau: int
    search: str
    curve: list[tuple[int, float]]  # (tau, value), ascending tau
    nfe: int  # model evaluations spent, counted per sample
    wall_s: float
    details: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"tau": self.tau, "search": self.search, "curve": [[t, v] for t, v in self.curve], "nfe": self.nfe}


def candidate_taus(timesteps: list[int]) -> list[int]:
    return [-1] + sorted(timesteps)


def _search_noise(model: Denoiser, seed: int, batch_size: int, device) -> torch.Tensor:
    return initial_noise(seed, range(batch_size), model.sample_shape, dtype=model.dtype).to(device)


def reference_search(
    model: Denoiser,
    *,
    scheduler_name: str,
    steps: int,
    seed: int,
    batch_size: int,
    s0: int = 0,
    s1: int = 1,
    device="cpu",
) -> TauSearchResult:
    """Algorithm 2 (reference behaviour of Choi et al., AAAI 2024), from one mini-batch.

    Two trajectories from the same noise, one always on ``s0``, one always on ``s1``, both in
    one batched model call. At each visited step store
    ``delta_t = beta_t (eps(x_t^(0), t, s0) - eps(x_t^(1), t, s1))`` where ``beta_t`` is the
    effective ``1 - abar_t / abar_prev`` between consecutive visited timesteps. Then

        D(tau) = mean_pixels || sum_{t <= tau} delta_t - sum_{t > tau} delta_t ||_2,batch

    and ``tau* = argmin D``.
    """
    start = time.perf_counter()
    scheduler = make_scheduler(scheduler_name, **model.scheduler_config())
    scheduler.set_timesteps(steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    abar = scheduler.alphas_cumprod.to(torch.float64)
    k = model.num_attributes
    noise = _search_noise(model, seed, batch_size, device)
    x = torch.cat([noise, noise]) * scheduler.init_noise_sigma
    labels = torch.cat([torch.full((batch_size,), s0), torch.full((batch_size,), s1)])
    weights = one_hot(labels, k).to(device)
    step_noise = StepNoise(seed, list(range(batch_size)) * 2)  # both trajectories get the same noise
    deltas = []
    for index, t_tensor in enumerate(scheduler.timesteps):
        t = timesteps[index]
        abar_prev = float(abar[timesteps[index + 1]]) if index + 1 < len(timesteps) else 1.0
        beta = 1.0 - float(abar[t]) / abar_prev
        with torch.no_grad():
            eps = model.eps(scheduler.scale_model_input(x, t_tensor), t, weights)
        deltas.append(beta * (eps[:batch_size] - eps[batch_size:]).to(torch.float64).cpu())
        x = scheduler.step(eps, t_tensor, x, **_step_kwargs(scheduler, step_noise, index, x)).prev_sample
    # Ascending t: late[j] = sum of delta over the j+1 smallest visited timesteps.
    delta = torch.stack(deltas[::-1])  # [n, B, ...]
    total = delta.sum(0)
    late = torch.cat([torch.zeros_like(total)[None], torch.cumsum(delta, 0)])  # [n + 1, B, ...]
    values = torch.linalg.vector_norm(2 * late - total, dim=1).flatten(1).mean(1)  # sum_{<=tau} - sum_{>tau}
    curve = [(tau, float(v)) for tau, v in zip(candidate_taus(timesteps), values)]
    best = min(curve, key=lambda pair: pair[1])[0]
    return TauSearchResult(best, "reference", curve, nfe=2 * batch_size * len(timesteps), wall_s=time.perf_counter() - start)


def direct_search(
    model: Denoiser,
    *,
    scheduler_name: str,
    steps: int,
    seed: int,
    batch_size: int,
    s0: int = 0,
    s1: int = 1,
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device="cpu",
) -> TauSearchResult:
    """fairbench's direct search: bisection on the measured balance of the switched groups.

    For a candidate tau, sample one noise batch as ``s0 -> s1`` and as ``s1 -> s0`` and take
    ``gap(tau) = <f_01 - f_10, d> / <d, d>`` where ``f`` is the mean feature of a group
    (raw values by default, or e.g. a judge's probabilities) and ``d = f_01 - f_10`` at
    ``tau = -1`` (pure ``s0`` minus pure ``s1``). ``gap(-1) = 1`` and ``gap(T-1) = -1``;
    bisection over the candidates finds the sign change in about ``log2(n)`` paired
    samplings, and the candidate of the bracketing pair with the smaller ``|gap|`` is tau.
    """
    start = time.perf_counter()
    scheduler = make_scheduler(scheduler_name, **model.scheduler_config())
    candidates = candidate_taus([int(t) for t in (scheduler.set_timesteps(steps) or scheduler.timesteps)])
    features = features or (lambda x: x.reshape(len(x), -1))
    requested = torch.cat([torch.full((batch_size,), s0), torch.full((batch_size,), s1)])
    indices = list(range(batch_size)) * 2  # the same noise for both groups
    transposition = list(range(model.num_attributes))
    transposition[s0], transposition[s1] = s1, s0
    evaluated: dict[int, torch.Tensor] = {}
    nfe = 0

    def mean_difference(position: int) -> torch.Tensor:
        nonlocal nfe
        method = AttributeSwitching(candidates[position], target=tuple(transposition))
        out = sample(model, method, requested, scheduler_name=scheduler_name, steps=steps, seed=seed,
                     batch_size=2 * batch_size, indices=indices, device=device)
        nfe += out.nfe
        f = features(out.samples).to(torch.float64)
        return f[:batch_size].mean(0) - f[batch_size:].mean(0)

    direction = mean_difference(0)
    norm = float(direction @ direction)
    if norm == 0.0:
        raise FairbenchError(f"direct tau search: conditions {s0} and {s1} give identical outputs; nothing to balance")

    def gap(position: int) -> float:
        if position not in evaluated:
            evaluated[position] = direction if position == 0 else mean_difference(position)
        return float(evaluated[position] @ direction) / norm

    lo, hi = 0, len(candidates) - 1
    gap(lo)
    if gap(hi) > 0:
        best = hi  # never balances: switching for the whole trajectory is the closest
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if gap(mid) > 0:
                lo = mid
            else:
                hi = mid
        best = lo if abs(gap(lo)) <= abs(gap(hi)) else hi
    curve = sorted((candidates[p], gap(p)) for p in evaluated)
    return TauSearchResult(candidates[best], "direct", curve, nfe=nfe, wall_s=time.perf_counter() - start)


SEARCHES = {"reference": reference_search, "direct": direct_search}


def search_tau(kind: str, model: Denoiser, **kwargs) -> TauSearchResult:
    return lookup(SEARCHES, kind, "tau search")(model, **kwargs)
