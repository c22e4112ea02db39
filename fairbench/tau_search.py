"""Finding the transition point tau: Algorithm 2 (`reference`), the measured `sweep`, and
fairbench's searches `direct` (a two-sample discrepancy) and `direct_mean` (a balance on one
direction).

Candidates: tau only matters through which visited timesteps satisfy ``t <= tau``, so the
distinct candidates are -1 and each visited timestep. Every search returns the curve over
the candidates it evaluated (users plot it), the chosen tau and its cost in model
evaluations (NFE, counted per sample).

Shared prefix: under one noise batch (and one per-step noise), the trajectory switched at
tau equals the unswitched one down to the first step with ``t <= tau``. `sweep`, `direct`
and `direct_mean` therefore run the unswitched trajectory once, keep its states, and branch
every candidate from the state where it starts to differ, instead of sampling each candidate
from ``x_T``: with n visited steps a full sweep costs ``n + n (n + 1) / 2`` steps per sample
instead of ``n (n + 1)``, about half.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from .errors import FairbenchError, lookup
from .methods import AttributeSwitching, Conditional, CyclicSwitching
from .metrics import fairness
from .models.base import Denoiser
from .noise import StepNoise, initial_noise
from .progress import progress
from .sampling import Resume, Step, denoise
from .schedulers import make_scheduler, visited_timesteps

Features = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TauSearchResult:
    tau: int | float  # a cyclic search's first point may be continuous
    search: str
    curve: list[tuple[int, float]]  # (tau, value), ascending tau
    nfe: int  # model evaluations spent, counted per sample
    wall_s: float
    details: dict = field(default_factory=dict)
    band: list[tuple[float, float]] | None = None  # an interval per curve point, where the search has one
    points: tuple[int | float, ...] | None = None  # cyclic switching's k - 1 transition points (tau = points[0])

    def as_json(self) -> dict:
        out = {"tau": self.tau, "search": self.search, "curve": [[t, v] for t, v in self.curve], "nfe": self.nfe}
        if self.band is not None:
            out["band"] = [[lo, hi] for lo, hi in self.band]
        if self.points is not None:
            out["points"] = list(self.points)
            out["evaluated"] = self.details.get("evaluated", [])
        return out

    @classmethod
    def from_json(cls, saved: dict) -> "TauSearchResult":
        band, points = saved.get("band"), saved.get("points")
        return cls(saved["tau"], saved["search"], [tuple(p) for p in saved["curve"]], saved["nfe"], saved.get("wall_s", 0.0),
                   band=[tuple(b) for b in band] if band is not None else None,
                   points=tuple(points) if points is not None else None)


def candidate_taus(timesteps: list[int]) -> list[int]:
    return [-1] + sorted(timesteps)


def _search_noise(model: Denoiser, seed: int, batch_size: int, device) -> torch.Tensor:
    return initial_noise(seed, range(batch_size), model.sample_shape, dtype=model.dtype).to(device)


def _default_features(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), -1)


# ---------------------------------------------------------------------------------------------
# Algorithm 2


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
    clip_sample: bool = False,
) -> TauSearchResult:
    """Algorithm 2 (reference behaviour of Choi et al., AAAI 2024), from one mini-batch.

    Two trajectories from the same noise, one always on ``s0``, one always on ``s1``, both in
    one batched run of the sampling loop, whose step callback records the noise predictions.
    At each visited step ``delta_t = beta_t (eps(x_t^(0), t, s0) - eps(x_t^(1), t, s1))`` where
    ``beta_t`` is the effective ``1 - abar_t / abar_prev`` between consecutive visited
    timesteps. Then

        D(tau) = mean_pixels || sum_{t <= tau} delta_t - sum_{t > tau} delta_t ||_2,batch

    and ``tau* = argmin D``. Cost: ``2 n`` model evaluations per sample (n visited steps).
    """
    start = time.perf_counter()
    scheduler = make_scheduler(scheduler_name, clip_sample=clip_sample, **model.scheduler_config())
    timesteps = visited_timesteps(scheduler, steps)
    abar = scheduler.alphas_cumprod.to(torch.float64)
    noise = _search_noise(model, seed, batch_size, device)
    requested = torch.cat([torch.full((batch_size,), s0), torch.full((batch_size,), s1)]).to(device)
    deltas = []
    bar = progress(total=len(timesteps), desc="tau search (reference)", unit="step")

    def record(step: Step) -> None:
        abar_prev = float(abar[timesteps[step.index + 1]]) if step.index + 1 < len(timesteps) else 1.0
        beta = 1.0 - float(abar[step.t]) / abar_prev
        deltas.append(beta * (step.eps[:batch_size] - step.eps[batch_size:]).to(torch.float64).cpu())
        bar.update(1)

    _, nfe, _ = denoise(
        model, Conditional(), torch.cat([noise, noise]), requested, scheduler_name=scheduler_name, steps=steps,
        step_noise=StepNoise(seed, list(range(batch_size)) * 2), on_step=record, clip_sample=clip_sample,
    )
    bar.close()
    # Ascending t: late[j] = sum of delta over the j+1 smallest visited timesteps.
    delta = torch.stack(deltas[::-1])  # [n, B, ...]
    total = delta.sum(0)
    late = torch.cat([torch.zeros_like(total)[None], torch.cumsum(delta, 0)])  # [n + 1, B, ...]
    values = torch.linalg.vector_norm(2 * late - total, dim=1).flatten(1).mean(1)  # sum_{<=tau} - sum_{>tau}
    curve = [(tau, float(v)) for tau, v in zip(candidate_taus(timesteps), values)]
    best = min(curve, key=lambda pair: pair[1])[0]
    return TauSearchResult(best, "reference", curve, nfe=nfe, wall_s=time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# The switched pair of groups, branched from one shared prefix


class SwitchedPair:
    """One noise batch sampled as ``s0 -> s1`` (first half) and ``s1 -> s0`` (second half).

    `run_prefix` samples the unswitched trajectory (tau = -1) once and keeps its state at the
    chosen step indices; `switched(position)` branches the candidate at that position (0 is
    tau = -1, position p >= 1 the p-th smallest visited timestep) from the kept state where it
    first differs. The output equals sampling the candidate from ``x_T`` (same noise, same
    per-step noise). `nfe` counts model evaluations of the whole pair batch (one per sample per step).

    Memory: one state of the batch per kept step (per-step noise is a function of the step
    index, so a branch needs nothing else to continue).
    """

    def __init__(self, model: Denoiser, *, scheduler_name: str, steps: int, seed: int, batch_size: int,
                 s0: int, s1: int, device, clip_sample: bool):
        self.model, self.scheduler_name, self.steps, self.clip_sample = model, scheduler_name, steps, clip_sample
        self.batch_size = batch_size
        noise = _search_noise(model, seed, batch_size, device)
        self.noise = torch.cat([noise, noise])
        self.requested = torch.cat([torch.full((batch_size,), s0), torch.full((batch_size,), s1)]).to(device)
        self.labels = self.requested.cpu().numpy()
        self.indices = list(range(batch_size)) * 2  # the same noise for both groups
        transposition = list(range(model.num_attributes))
        transposition[s0], transposition[s1] = s1, s0
        self.target = tuple(transposition)
        self.seed = seed
        scheduler = self._scheduler()
        self.timesteps = [int(t) for t in scheduler.timesteps]
        self.candidates = candidate_taus(self.timesteps)
        self._checkpoints: dict[int, Resume] = {}
        self._unswitched: torch.Tensor | None = None
        self.steps_run = 0  # sampler steps of the whole pair batch

    @property
    def nfe(self) -> int:
        return self.steps_run * 2 * self.batch_size

    def _scheduler(self):
        scheduler = make_scheduler(self.scheduler_name, clip_sample=self.clip_sample, **self.model.scheduler_config())
        scheduler.set_timesteps(self.steps)
        return scheduler

    def step_index(self, position: int) -> int:
        """The first step switched by the candidate at `position` (steps visit t descending)."""
        return len(self.timesteps) - position

    def run_prefix(self, positions) -> torch.Tensor:
        """Sample the unswitched trajectory, keeping the states the given candidates branch from."""
        keep = {self.step_index(p) for p in positions if p > 0}
        if 0 in keep:  # switched from the first step: branch from x_T itself
            scheduler = self._scheduler()
            self._keep(0, self.noise * scheduler.init_noise_sigma, scheduler)

        def on_step(step: Step) -> None:
            if step.index + 1 in keep:
                self._keep(step.index + 1, step.prev_sample, step.scheduler)

        x, _, _ = denoise(self.model, AttributeSwitching(-1, target=self.target), self.noise, self.requested,
                          scheduler_name=self.scheduler_name, steps=self.steps, step_noise=StepNoise(self.seed, self.indices),
                          on_step=on_step, clip_sample=self.clip_sample)
        self.steps_run += len(self.timesteps)
        self._unswitched = x
        return x

    @classmethod
    def branched(cls, model: Denoiser, *, search: str, positions: Callable[[list[int]], Sequence[int]] | None = None,
                 **sampling) -> tuple["SwitchedPair", Any]:
        """The pair for one search with its prefix run, keeping the states of the candidates at
        ``positions(candidates)`` (default: all of them), and the search's progress bar (one unit
        for the prefix, one per candidate). `sampling`: the `SwitchedPair` arguments."""
        pair = cls(model, **sampling)
        kept = list(range(len(pair.candidates))) if positions is None else list(positions(pair.candidates))
        bar = progress(total=len(kept) + 1, desc=f"tau search ({search})", unit="candidate")
        pair.run_prefix(kept)
        bar.update(1)
        return pair, bar

    def _keep(self, index: int, x: torch.Tensor, scheduler) -> None:
        self._checkpoints[index] = Resume(index, x.clone(), copy.deepcopy(scheduler))

    def switched(self, position: int) -> torch.Tensor:
        """Output of the candidate at `position` (needs `run_prefix` to have kept its state)."""
        if position == 0:
            return self._unswitched
        index = self.step_index(position)
        point = self._checkpoints[index]
        resume = Resume(index, point.x, copy.deepcopy(point.scheduler))
        x, _, _ = denoise(self.model, AttributeSwitching(self.candidates[position], target=self.target), None,
                          self.requested, scheduler_name=self.scheduler_name, steps=self.steps,
                          step_noise=StepNoise(self.seed, self.indices), resume=resume, clip_sample=self.clip_sample)
        self.steps_run += len(self.timesteps) - index
        return x


# ---------------------------------------------------------------------------------------------
# sweep: the measured curve


def sweep_search(
    model: Denoiser,
    *,
    scheduler_name: str,
    steps: int,
    seed: int,
    batch_size: int,
    s0: int = 0,
    s1: int = 1,
    features: Features | None = None,
    stride: int = 1,
    epsilon_options: dict[str, Any] | None = None,
    measures: dict[str, Callable[[torch.Tensor, np.ndarray, np.ndarray], float]] | None = None,
    device="cpu",
    clip_sample: bool = False,
) -> TauSearchResult:
    """The leaderboard's epsilon estimator at every candidate tau (every `stride`-th), on common noise.

    For each candidate, the batch sampled as ``s0 -> s1`` and as ``s1 -> s0`` (same noise)
    goes through `features` and `fairbench.metrics.fairness.epsilon_fairness`, which predicts
    the requested value from them; the curve is epsilon(tau) with its interval (`band`) and
    tau is its argmin. tau = -1 and the first visited timestep (switched throughout) are
    always evaluated. Cost with n visited steps and every candidate evaluated:
    ``2 B (n + n (n + 1) / 2)`` model evaluations for batch size B (shared prefix), against
    ``2 B n (n + 1)`` for sampling every candidate from ``x_T``. `measures` (name ->
    f(loop output, requested, final)) are evaluated on the same samples at every point and
    returned in ``details["measures"]``.
    """
    if not (isinstance(stride, int) and stride >= 1):
        raise FairbenchError(f"sweep stride must be a positive integer, got {stride!r}")
    start = time.perf_counter()
    features = features or _default_features

    def strided(candidates: list[int]) -> list[int]:  # every stride-th candidate, and the last
        return sorted(set(range(0, len(candidates), stride)) | {len(candidates) - 1})

    pair, bar = SwitchedPair.branched(model, search="sweep", positions=strided, scheduler_name=scheduler_name, steps=steps,
                                      seed=seed, batch_size=batch_size, s0=s0, s1=s1, device=device, clip_sample=clip_sample)
    positions = strided(pair.candidates)
    curve, band, measured = [], [], {name: [] for name in measures or {}}
    for position in positions:
        out = pair.switched(position)
        bar.update(1)
        estimate = fairness.epsilon_fairness(
            features(out).detach().cpu().numpy(), pair.labels, seed=seed, **(epsilon_options or {})
        )
        curve.append((pair.candidates[position], float(estimate.value)))
        band.append(tuple(float(v) for v in estimate.interval))
        final = pair.labels if position == 0 else np.asarray(pair.target)[pair.labels]
        for name, measure in (measures or {}).items():
            measured[name].append(float(measure(out, pair.labels, final)))
    bar.close()
    best = min(range(len(curve)), key=lambda j: curve[j][1])
    return TauSearchResult(curve[best][0], "sweep", curve, nfe=pair.nfe, wall_s=time.perf_counter() - start,
                           band=band, details={"stride": stride, "measures": measured})


# ---------------------------------------------------------------------------------------------
# direct: a two-sample discrepancy, bracketed then refined


def unbiased_mmd2(first: np.ndarray, second: np.ndarray) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, JMLR, eq. 3) with a Gaussian kernel.

    ``k(x, y) = exp(-||x - y||^2 / (2 h^2))`` with ``h^2`` = the median of the squared
    distances between distinct points of the pooled sample (median heuristic); the
    within-group sums leave out the diagonal, so the estimate is unbiased and can be negative.
    """
    x = np.asarray(first, np.float64).reshape(len(first), -1)
    y = np.asarray(second, np.float64).reshape(len(second), -1)
    pooled = np.concatenate([x, y])
    sq = np.maximum(((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1), 0.0)
    off_diagonal = sq[~np.eye(len(pooled), dtype=bool)]
    h2 = float(np.median(off_diagonal))
    if h2 <= 0.0:
        h2 = float(off_diagonal.max()) or 1.0
    kernel = np.exp(-sq / (2.0 * h2))
    m, n = len(x), len(y)
    kxx, kyy, kxy = kernel[:m, :m], kernel[m:, m:], kernel[:m, m:]
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


Statistic = Literal["mmd", "classifier"]


def bracket_minimum(evaluate: Callable[[int], float], count: int, *, coarse: int = 9,
                    patience: int | None = None) -> tuple[int, dict[int, float]]:
    """Minimise `evaluate` over positions ``0..count-1``: a coarse grid, then local refinement.

    The coarse grid (`coarse` evenly spaced positions, both ends included) brackets the lowest
    value between its two grid neighbours; each refinement evaluates the midpoints between the
    current best and its bracketing neighbours and re-brackets around the best point, until
    the bracket has no unevaluated position next to the best. A curve that is not monotone is
    fine as long as the basin of its minimum is wider than the coarse spacing; on a flat bottom
    the first lowest position wins. Returns the best position and every evaluated value.

    `patience`: scan the coarse grid from position 0 and stop after `patience` consecutive
    rises that all lie above the lowest value so far (None: the whole grid). It saves the
    grid points past the minimum and is exact for a curve that, at the grid's spacing, rises
    steadily after its lowest point; a lower second basin beyond the stop is missed.
    """
    values: dict[int, float] = {}

    def value(position: int) -> float:
        if position not in values:
            values[position] = float(evaluate(position))
        return values[position]

    grid = sorted({round(j * (count - 1) / max(coarse - 1, 1)) for j in range(coarse)})
    rises = 0
    for i, position in enumerate(grid):
        value(position)
        lowest = min(values.values())
        rises = rises + 1 if i > 0 and values[position] > values[grid[i - 1]] and values[position] > lowest else 0
        if patience is not None and rises >= patience:
            break
    while True:
        best = min(sorted(values), key=lambda p: values[p])
        lower = [p for p in values if p < best]
        upper = [p for p in values if p > best]
        lo, hi = (max(lower) if lower else best), (min(upper) if upper else best)
        fresh = [m for m in ((lo + best) // 2, (best + hi + 1) // 2) if m not in values]
        if not fresh:
            return best, values
        for position in fresh:
            value(position)


def direct_search(
    model: Denoiser,
    *,
    scheduler_name: str,
    steps: int,
    seed: int,
    batch_size: int,
    s0: int = 0,
    s1: int = 1,
    features: Features | None = None,
    statistic: Statistic = "mmd",
    coarse: int = 9,
    patience: int | None = 2,
    device="cpu",
    clip_sample: bool = False,
) -> TauSearchResult:
    """fairbench's direct search: the tau whose switched groups are closest as distributions.

    For a candidate tau, the batch sampled as ``s0 -> s1`` and as ``s1 -> s0`` (same noise)
    goes through `features` (the epsilon estimator's features), and a two-sample discrepancy
    between the groups is computed on all of them: ``statistic = "mmd"`` the unbiased MMD^2
    with a median-heuristic Gaussian kernel (`unbiased_mmd2`), ``"classifier"`` the
    cross-fitted classifier statistic of `fairbench.metrics.fairness.epsilon_fairness`.
    `bracket_minimum` finds the minimum (coarse grid, then local refinement), and every
    candidate branches from the one shared unswitched trajectory. The coarse grid is scanned
    from tau = -1 upward and stops after `patience` consecutive rises above the lowest value
    (None: the whole grid): a candidate at a large tau branches early and costs most, and past
    the minimum the discrepancy climbs back toward its value at tau = -1 (switching for the
    whole trajectory gives the two conditional groups again). Cost with n visited steps and
    batch size B: ``2 B n`` for the prefix plus ``2 B (n - i)`` per candidate branched at step
    i; at most ``coarse + 2 log2(2 n / coarse)`` candidates.
    """
    lookup({"mmd": 1, "classifier": 1}, statistic, "direct search statistic")
    start = time.perf_counter()
    features = features or _default_features
    # at most every candidate is visited; the bar closes early when the bracket settles sooner
    pair, bar = SwitchedPair.branched(model, search="direct", scheduler_name=scheduler_name, steps=steps, seed=seed,
                                      batch_size=batch_size, s0=s0, s1=s1, device=device, clip_sample=clip_sample)

    def discrepancy(position: int) -> float:
        bar.update(1)
        f = features(pair.switched(position)).detach().cpu().to(torch.float64).numpy().reshape(2 * batch_size, -1)
        if statistic == "mmd":
            return unbiased_mmd2(f[:batch_size], f[batch_size:])
        return fairness.epsilon_fairness(f, pair.labels, seed=seed).value

    best, values = bracket_minimum(discrepancy, len(pair.candidates), coarse=coarse, patience=patience)
    bar.close()
    curve = [(pair.candidates[p], values[p]) for p in sorted(values)]
    return TauSearchResult(pair.candidates[best], "direct", curve, nfe=pair.nfe, wall_s=time.perf_counter() - start,
                           details={"statistic": statistic, "coarse": coarse, "patience": patience})


# ---------------------------------------------------------------------------------------------
# direct_mean: the balance of one projected mean difference (cheap, blind to the rest)


def direct_mean_search(
    model: Denoiser,
    *,
    scheduler_name: str,
    steps: int,
    seed: int,
    batch_size: int,
    s0: int = 0,
    s1: int = 1,
    features: Features | None = None,
    device="cpu",
    clip_sample: bool = False,
) -> TauSearchResult:
    """Bisection on the balance of the switched groups' mean features along one direction.

    For a candidate tau, sample one noise batch as ``s0 -> s1`` and as ``s1 -> s0`` and take
    ``gap(tau) = <f_01 - f_10, d> / <d, d>`` where ``f`` is the mean feature of a group
    (raw values by default, or e.g. a judge's probabilities) and ``d = f_01 - f_10`` at
    ``tau = -1`` (pure ``s0`` minus pure ``s1``). ``gap(-1) = 1`` and ``gap(T-1) = -1``;
    bisection over the candidates finds the sign change in about ``log2(n)`` candidates, and
    the candidate of the bracketing pair with the smaller ``|gap|`` is tau. It sees only the
    projection on `d`: the groups can differ in anything else while ``gap = 0``.
    """
    start = time.perf_counter()
    features = features or _default_features
    pair, bar = SwitchedPair.branched(model, search="direct_mean", scheduler_name=scheduler_name, steps=steps, seed=seed,
                                      batch_size=batch_size, s0=s0, s1=s1, device=device, clip_sample=clip_sample)
    evaluated: dict[int, torch.Tensor] = {}

    def mean_difference(position: int) -> torch.Tensor:
        bar.update(1)
        f = features(pair.switched(position)).to(torch.float64).reshape(2 * batch_size, -1)
        return f[:batch_size].mean(0) - f[batch_size:].mean(0)

    direction = mean_difference(0)
    norm = float(direction @ direction)
    if norm == 0.0:
        raise FairbenchError(f"direct_mean tau search: conditions {s0} and {s1} give identical outputs; nothing to balance")

    def gap(position: int) -> float:
        if position not in evaluated:
            evaluated[position] = direction if position == 0 else mean_difference(position)
        return float(evaluated[position] @ direction) / norm

    lo, hi = 0, len(pair.candidates) - 1
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
    bar.close()
    curve = sorted((pair.candidates[p], gap(p)) for p in evaluated)
    return TauSearchResult(pair.candidates[best], "direct_mean", curve, nfe=pair.nfe, wall_s=time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# Cyclic switching: k - 1 transition points


class CycledGroups:
    """One noise batch sampled as each of the k requests of a cycle under cyclic switching.

    ``cycle[a]`` is the value one place after flat value a; the groups are the orbit of value
    0 (``v_0 = 0``, ``v_(i+1) = cycle[v_i]``), ``batch_size`` samples each, all from the same
    noise. `outputs(positions)` samples the candidate whose transition points sit at candidate
    `positions` (descending; 0 is tau = -1, p >= 1 the p-th smallest visited timestep).
    Trajectories are shared: every state is kept under the stages its steps used so far, and
    a candidate resumes from the longest prefix of stages already sampled, so a candidate that
    moves only the later points re-samples only the steps after them. `nfe` counts the model
    evaluations of the whole batch as the sampling loop counts them: one per sample per step
    run, two at a step that holds a continuous point (`outputs_at`).
    """

    def __init__(self, model: Denoiser, *, scheduler_name: str, steps: int, seed: int, batch_size: int,
                 cycle: tuple[int, ...], device, clip_sample: bool):
        self.model, self.scheduler_name, self.steps, self.clip_sample = model, scheduler_name, steps, clip_sample
        self.cycle, self.seed = tuple(cycle), seed
        orbit = [0]
        while cycle[orbit[-1]] != 0:
            orbit.append(cycle[orbit[-1]])
        self.orbit, self.k = orbit, len(orbit)
        self.batch_size = batch_size
        noise = _search_noise(model, seed, batch_size, device)
        self.noise = torch.cat([noise] * self.k)
        self.requested = torch.cat([torch.full((batch_size,), v) for v in orbit]).to(device)
        self.labels = np.repeat(np.arange(self.k), batch_size)  # group index per row
        self.indices = list(range(batch_size)) * self.k
        scheduler = make_scheduler(scheduler_name, clip_sample=clip_sample, **model.scheduler_config())
        scheduler.set_timesteps(steps)
        self.timesteps = [int(t) for t in scheduler.timesteps]
        self.candidates = candidate_taus(self.timesteps)
        self._states: dict[tuple, Resume] = {}
        self._outputs: dict[tuple, torch.Tensor] = {}
        self.evaluations = 0  # model evaluations of the whole batch, counted per sample

    @property
    def nfe(self) -> int:
        return self.evaluations

    def taus(self, positions: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(self.candidates[p] for p in positions)

    def outputs(self, positions: tuple[int, ...]) -> torch.Tensor:
        """Samples ``[k B, ...]`` (group i in rows ``i B .. (i + 1) B``) at the candidate `positions`."""
        return self.outputs_at(self.taus(tuple(positions)))

    def outputs_at(self, taus: tuple[int | float, ...], *, keep: int | None = None) -> torch.Tensor:
        """Samples at the transition points `taus` (integers on the grid, or continuous points, which
        mix the predictions of the step that holds them: `CyclicSwitching`). A state is kept under the
        mixtures its steps used so far, only those entering the first `keep` steps when it is given
        (memory: a candidate's later states are reused by no other); the longest kept prefix is reused."""
        taus = tuple(taus)
        if taus in self._outputs:
            return self._outputs[taus]
        method = CyclicSwitching(taus=taus, target=self.cycle).visiting(self.timesteps)
        stages = tuple(tuple(method.past(t)) for t in self.timesteps)
        start = max((i for i in range(1, len(stages) + 1) if stages[:i] in self._states), default=0)
        resume = None
        if start:
            kept = self._states[stages[:start]]
            resume = Resume(kept.index, kept.x, copy.deepcopy(kept.scheduler))

        def on_step(step: Step) -> None:
            if keep is None or step.index + 1 <= keep:
                self._states[stages[: step.index + 1]] = Resume(step.index + 1, step.prev_sample.clone(),
                                                                copy.deepcopy(step.scheduler))

        x, nfe, _ = denoise(self.model, method, None if resume else self.noise, self.requested,
                            scheduler_name=self.scheduler_name, steps=self.steps, step_noise=StepNoise(self.seed, self.indices),
                            on_step=on_step if keep is None or keep > start else None, resume=resume,
                            clip_sample=self.clip_sample)
        self.evaluations += nfe  # one per sample and step run, two at a step that holds a continuous point
        self._outputs[taus] = x
        return x


def equal_weight_points(model: Denoiser, groups: CycledGroups, *, features: Features, device) -> tuple[tuple[int, ...], int]:
    """Starting points that give every stage the same measured weight, and their cost in model evaluations.

    The switch ``v_0 -> v_1`` at tau and its mirror ``v_1 -> v_0`` (`SwitchedPair`, the same
    noise as `groups`) give ``gap(tau) = <f_01 - f_10, d> / <d, d>`` with ``d`` the mean feature
    difference at tau = -1 (`direct_mean_search`). On the analytic model, with ``L(tau)`` the
    DDIM weight of the steps with ``t <= tau`` and ``G`` the total, the means are linear in the
    weights and ``gap(tau) = 1 - 2 L(tau) / G`` exactly, so ``(1 - gap) / 2`` measures the
    weight past tau. Stage weights are equal where ``L(tau_j) / G = (k - j) / k``, that is
    ``gap(tau_j) = 1 - 2 (k - j) / k``; each point is found by bisection (gap falls from 1 at
    tau = -1 to -1 at the first visited timestep), the candidate closer to the level kept.
    On a trained model the projection sees only one direction, so these points only start the
    search (the k = 2 level is the `direct_mean` tau).
    """
    pair = SwitchedPair(model, scheduler_name=groups.scheduler_name, steps=groups.steps, seed=groups.seed,
                        batch_size=groups.batch_size, s0=groups.orbit[0], s1=groups.orbit[1], device=device,
                        clip_sample=groups.clip_sample)
    pair.run_prefix(range(len(pair.candidates)))
    batch, gaps, means = groups.batch_size, {}, {}

    def mean_difference(position: int) -> torch.Tensor:
        if position not in means:
            f = features(pair.switched(position)).detach().cpu().to(torch.float64).reshape(2 * batch, -1)
            means[position] = f[:batch].mean(0) - f[batch:].mean(0)
        return means[position]

    direction = mean_difference(0)
    norm = float(direction @ direction) or 1.0

    def gap(position: int) -> float:
        if position not in gaps:
            gaps[position] = float(mean_difference(position) @ direction) / norm
        return gaps[position]

    k, last = groups.k, len(pair.candidates) - 1
    points = []
    for j in range(1, k):
        level = 1.0 - 2.0 * (k - j) / k
        lo, hi = 0, last
        if gap(hi) > level:
            points.append(hi)
            continue
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if gap(mid) > level else (lo, mid)
        points.append(lo if abs(gap(lo) - level) <= abs(gap(hi) - level) else hi)
    return tuple(sorted(points, reverse=True)), pair.nfe


def _coordinate_descent(groups: CycledGroups, objective: Callable[[tuple[int, ...]], float], start: tuple[int, ...], *,
                        minimise: Callable[[Callable[[int], float], int], int], rounds: int) -> tuple[tuple[int, ...], dict]:
    """Minimise `objective` over descending candidate positions ``p_1 >= ... >= p_(k-1)``, one point at a time.

    Starts from `start` (`equal_weight_points`); each round moves every point in turn to the
    minimiser (`minimise(f, count)` over the ``count`` positions between its neighbours) with
    the others fixed, and keeps the move only if it lowers the objective; stops after a round
    that moves nothing, or after `rounds`. Returns the points and every evaluated value.
    """
    n, k = len(groups.timesteps), groups.k
    points = list(start)
    values: dict[tuple[int, ...], float] = {}

    def value(candidate: tuple[int, ...]) -> float:
        if candidate not in values:
            values[candidate] = float(objective(candidate))
        return values[candidate]

    for _ in range(rounds):
        moved = False
        for j in range(k - 1):
            hi = points[j - 1] if j > 0 else n
            lo = points[j + 1] if j + 1 < k - 1 else 0

            def along(offset: int, j=j, lo=lo) -> float:
                return value(tuple(points[:j] + [lo + offset] + points[j + 1:]))

            best = lo + minimise(along, hi - lo + 1)
            if best != points[j] and value(tuple(points[:j] + [best] + points[j + 1:])) < value(tuple(points)):
                points[j], moved = best, True
        if not moved:
            break
    return tuple(points), values


def _refine_between_steps(groups: CycledGroups, objective: Callable[[tuple[float, ...], int], float],
                          start: tuple[int, ...], values: dict, *,
                          minimise: Callable[[Callable[[float], float], float, float], float],
                          rounds: int) -> tuple[tuple[int | float, ...], dict]:
    """Move each point off the grid, within the visited steps next to it, to where `objective` is lowest.

    Continuous points (`CyclicSwitching`: the step that holds one mixes the predictions of its two
    values) are what the exact answer needs: on the grid the best points stay 0.005-0.08 TV from
    fair (docs/method.md). Point j, with the others fixed, is searched between the visited
    candidate one place below the candidates that enclose it and the one one place above them
    (for a point on a visited timestep: from the step below to the step above), within its
    neighbours ``tau_(j+1) <= tau_j <= tau_(j-1)`` and above 1 (a float point at or below 1 would
    read as a fraction of T); `minimise(f, lo, hi)` returns the minimiser, and the move is kept
    only if it lowers `objective`. Rounds repeat until no point moves by more than half a
    timestep, at most `rounds`. `values` (points -> objective) is extended with every
    evaluated candidate; returns the points (rounded to 0.01) and `values`.

    `objective(points, keep)` keeps the trajectory states entering the first `keep` steps
    (`CycledGroups.outputs_at`): those above the lowest point's bracket, from which the
    candidates of the lower points resume; the states below it serve no other candidate.
    """
    grid = groups.candidates  # ascending: -1 and the visited timesteps
    points: list[int | float] = list(start)

    def bracket(tau: float) -> tuple[float, float]:
        below = max((i for i, c in enumerate(grid) if c <= tau), default=0)
        above = min((i for i, c in enumerate(grid) if c >= tau), default=len(grid) - 1)
        return float(grid[max(below - 1, 0)]), float(grid[min(above + 1, len(grid) - 1)])

    def value(candidate: tuple[int | float, ...]) -> float:
        if candidate not in values:
            top = bracket(candidate[-1])[1]  # no lower point's candidate changes a step above this
            values[candidate] = float(objective(candidate, sum(1 for t in groups.timesteps if t > top)))
        return values[candidate]

    for _ in range(rounds):
        moved = False
        for j in range(len(points)):
            tau = points[j]
            lo, hi = bracket(tau)
            if j + 1 < len(points):
                lo = max(lo, float(points[j + 1]))
            if j > 0:
                hi = min(hi, float(points[j - 1]))
            lo = max(lo, 1.0)
            if hi - lo < 0.01:
                continue

            def along(x: float, j=j) -> float:
                return value(tuple(points[:j] + [round(float(x), 2)] + points[j + 1:]))

            best = round(float(minimise(along, lo, hi)), 2)
            if best != tau and along(best) < value(tuple(points)):
                moved = moved or abs(best - tau) > 0.5
                points[j] = best
        if not moved:
            break
    return tuple(points), values


def _pairwise_mmd(f: np.ndarray, k: int, batch_size: int) -> float:
    """``sum_{a < b} MMD^2_u`` between the k groups' features (`unbiased_mmd2`).

    The sum rather than the largest pair: it is zero exactly when the largest is (up to
    noise), and smooth where two pairs trade places, so moving one point at a time does not
    stall on the kink of a maximum."""
    groups = [f[i * batch_size:(i + 1) * batch_size] for i in range(k)]
    return sum(unbiased_mmd2(groups[a], groups[b]) for a in range(k) for b in range(a + 1, k))


def cyclic_direct_search(
    model: Denoiser,
    *,
    scheduler_name: str,
    steps: int,
    seed: int,
    batch_size: int,
    cycle: tuple[int, ...],
    features: Features | None = None,
    coarse: int = 9,
    rounds: int = 4,
    between_steps: bool = True,
    device="cpu",
    clip_sample: bool = False,
) -> TauSearchResult:
    """The k - 1 transition points whose cycled groups are closest as distributions (MMD).

    Each candidate samples the same noise batch as every request of the cycle (`CycledGroups`)
    and scores ``sum_{a < b} MMD^2_u`` between the groups' features (`_pairwise_mmd`; the
    epsilon estimator's features). Coordinate descent (`_coordinate_descent`) moves one point
    at a time to the minimum along it, found as the single-switch direct search finds tau
    (`bracket_minimum`: a coarse grid of `coarse` positions, then local refinement).
    With `between_steps` the grid points are then refined between visited steps
    (`_refine_between_steps`), each by bounded Brent minimisation
    (`scipy.optimize.minimize_scalar`, to a quarter of a timestep) of the same statistic; the
    points may then hold a step that mixes two predictions (`CyclicSwitching`).
    k = 2 is the direct search without its early stop. Cost: ``k B`` model evaluations per
    step run (``2 k B`` at a step that holds a continuous point), the steps before a
    candidate's first changed step shared with earlier ones.
    """
    start = time.perf_counter()
    features = features or _default_features
    groups = CycledGroups(model, scheduler_name=scheduler_name, steps=steps, seed=seed, batch_size=batch_size,
                          cycle=cycle, device=device, clip_sample=clip_sample)

    def score(outputs: torch.Tensor) -> float:
        f = features(outputs).detach().cpu().to(torch.float64).numpy().reshape(groups.k * batch_size, -1)
        return _pairwise_mmd(f, groups.k, batch_size)

    def minimise(along: Callable[[int], float], count: int) -> int:
        return bracket_minimum(along, count, coarse=coarse)[0]

    def brent(along: Callable[[float], float], lo: float, hi: float) -> float:
        return minimize_scalar(along, bounds=(lo, hi), method="bounded", options={"xatol": 0.5}).x

    return _descend_and_refine("direct", model, groups, score, minimise=minimise, refine=brent, start=start,
                               features=features, device=device, rounds=rounds, between_steps=between_steps,
                               settings={"statistic": "mmd", "coarse": coarse})


def _descend_and_refine(name: str, model: Denoiser, groups: CycledGroups, score: Callable[[torch.Tensor], float], *,
                        minimise: Callable, refine: Callable, start: float, features: Features, device,
                        rounds: int, between_steps: bool, settings: dict[str, Any]) -> TauSearchResult:
    """The k - 1 point searches' common course: start from equal measured stage weights
    (`equal_weight_points`), coordinate descent on the grid with `minimise` scoring each
    candidate's outputs by `score`, then, with `between_steps`, each point refined between visited
    steps by `refine` (`_refine_between_steps`)."""
    initial, initial_nfe = equal_weight_points(model, groups, features=features, device=device)
    best, values = _coordinate_descent(groups, lambda positions: score(groups.outputs(positions)), initial,
                                       minimise=minimise, rounds=rounds)
    values = {groups.taus(p): v for p, v in values.items()}
    points = groups.taus(best)
    if between_steps:
        points, values = _refine_between_steps(
            groups, lambda taus, keep: score(groups.outputs_at(taus, keep=keep)), points, values, minimise=refine, rounds=rounds)
    return _points_result(name, groups, points, values, start, initial_nfe,
                          settings | {"rounds": rounds, "between_steps": between_steps,
                                      "grid": list(groups.taus(best)), "start": list(groups.taus(initial))})


def cyclic_sweep_search(
    model: Denoiser,
    *,
    scheduler_name: str,
    steps: int,
    seed: int,
    batch_size: int,
    cycle: tuple[int, ...],
    features: Features | None = None,
    stride: int = 1,
    rounds: int = 4,
    between_steps: bool = True,
    epsilon_options: dict[str, Any] | None = None,
    device="cpu",
    clip_sample: bool = False,
) -> TauSearchResult:
    """The leaderboard's epsilon estimator (largest pairwise value) along each point in turn.

    Coordinate descent (`_coordinate_descent`) with a full scan per point: every `stride`-th
    position between the point's neighbours (both ends included) is sampled as every request of
    the cycle on common noise (`CycledGroups`) and scored by
    `fairbench.metrics.fairness.epsilon_fairness`; the point moves to the lowest. With
    `between_steps` each point is then refined between visited steps (`_refine_between_steps`)
    by a scan of nine evenly spaced continuous points across its bracket (the estimator is not
    smooth enough for Brent's method). The curve is every evaluated candidate.
    """
    if not (isinstance(stride, int) and stride >= 1):
        raise FairbenchError(f"sweep stride must be a positive integer, got {stride!r}")
    start = time.perf_counter()
    features = features or _default_features
    groups = CycledGroups(model, scheduler_name=scheduler_name, steps=steps, seed=seed, batch_size=batch_size,
                          cycle=cycle, device=device, clip_sample=clip_sample)

    def epsilon(outputs: torch.Tensor) -> float:
        f = features(outputs).detach().cpu().numpy()
        return float(fairness.epsilon_fairness(f, groups.labels, seed=seed, **(epsilon_options or {})).value)

    def minimise(along: Callable[[int], float], count: int) -> int:
        scanned = sorted(set(range(0, count, stride)) | {count - 1})
        return min(scanned, key=along)

    def scan(along: Callable[[float], float], lo: float, hi: float) -> float:
        return min((lo + (hi - lo) * i / 8 for i in range(9)), key=along)

    return _descend_and_refine("sweep", model, groups, epsilon, minimise=minimise, refine=scan, start=start,
                               features=features, device=device, rounds=rounds, between_steps=between_steps,
                               settings={"stride": stride})


def cyclic_reference_search(
    model: Denoiser,
    *,
    scheduler_name: str,
    steps: int,
    seed: int,
    batch_size: int,
    cycle: tuple[int, ...],
    device="cpu",
    clip_sample: bool = False,
) -> TauSearchResult:
    """Algorithm 2 carried to k - 1 points: equal raw stage sums of its per-step differences.

    Algorithm 2's two unswitched trajectories (``v_0`` and ``v_1 = cycle[v_0]``, one batched
    run) give ``delta_t = beta_t (eps(x_t^(0), t, v_0) - eps(x_t^(1), t, v_1))`` at every
    visited step (`reference_search`). With ``S_j`` the sum of ``delta_t`` over stage j, the
    points minimise

        D(tau_1, ..., tau_(k-1)) = mean_pixels sum_{j < l} || S_j - S_l ||_2,batch

    over every descending set of candidates (the sums are prefix sums, so the exhaustive
    minimum costs no model evaluation); k = 2 is Algorithm 2's ``D(tau)``. Cost: ``2 B n``.
    It inherits Algorithm 2's blind spot: a step's difference is not weighted by how the
    sampler carries it to the output (docs/tau-search.md).
    """
    start = time.perf_counter()
    groups = CycledGroups(model, scheduler_name=scheduler_name, steps=steps, seed=seed, batch_size=1,
                          cycle=cycle, device=device, clip_sample=clip_sample)  # for the orbit and the grid
    scheduler = make_scheduler(scheduler_name, clip_sample=clip_sample, **model.scheduler_config())
    timesteps = visited_timesteps(scheduler, steps)
    abar = scheduler.alphas_cumprod.to(torch.float64)
    noise = _search_noise(model, seed, batch_size, device)
    s0, s1 = groups.orbit[0], groups.orbit[1]
    requested = torch.cat([torch.full((batch_size,), s0), torch.full((batch_size,), s1)]).to(device)
    deltas = []

    def record(step: Step) -> None:
        abar_prev = float(abar[timesteps[step.index + 1]]) if step.index + 1 < len(timesteps) else 1.0
        beta = 1.0 - float(abar[step.t]) / abar_prev
        deltas.append(beta * (step.eps[:batch_size] - step.eps[batch_size:]).to(torch.float64).cpu())

    _, nfe, _ = denoise(
        model, Conditional(), torch.cat([noise, noise]), requested, scheduler_name=scheduler_name, steps=steps,
        step_noise=StepNoise(seed, list(range(batch_size)) * 2), on_step=record, clip_sample=clip_sample,
    )
    delta = torch.stack(deltas[::-1])  # ascending t
    late = torch.cat([torch.zeros_like(delta[0])[None], torch.cumsum(delta, 0)])  # sum over t <= candidate
    n, k = len(timesteps), groups.k
    best, best_value, evaluated = None, float("inf"), {}
    for combo in itertools.combinations_with_replacement(range(n + 1), k - 1):
        positions = tuple(sorted(combo, reverse=True))
        bounds = [late[n]] + [late[p] for p in positions] + [late[0]]
        sums = [bounds[j] - bounds[j + 1] for j in range(k)]
        value = sum(float(torch.linalg.vector_norm(sums[j] - sums[l], dim=0).mean())
                    for j in range(k) for l in range(j + 1, k))
        evaluated[positions] = value
        if value < best_value:
            best, best_value = positions, value
    taus = groups.taus(best)
    curve = sorted({groups.taus(p)[0]: min(v for q, v in evaluated.items() if q[0] == p[0]) for p in evaluated}.items())
    return TauSearchResult(taus[0], "reference", curve, nfe=nfe, wall_s=time.perf_counter() - start,
                           details={"value": best_value}, points=taus)


def _points_result(search: str, groups: CycledGroups, taus: tuple[int | float, ...], values: dict, start: float,
                   initial_nfe: int, details: dict) -> TauSearchResult:
    """A cyclic search's result: ``points`` the chosen transition points, the curve every evaluated
    candidate (points -> value in `values`) as ``(tau_1, value)`` with the full points in
    ``details["evaluated"]``; the cost is the starting points' and the search's model evaluations."""
    evaluated = [[list(p), v] for p, v in sorted(values.items(), reverse=True)]
    curve = sorted((p[0], v) for p, v in values.items())
    return TauSearchResult(taus[0], search, curve, nfe=initial_nfe + groups.nfe, wall_s=time.perf_counter() - start,
                           details=details | {"evaluated": evaluated}, points=tuple(taus))


# ---------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class TauSearch:
    """A registered search: its function and which of the run's features it measures."""

    run: Callable[..., TauSearchResult]
    features: Literal["none", "epsilon", "balance"]  # none; Setup.features; the judge's balance features
    summary: str


SEARCHES: dict[str, TauSearch] = {
    "reference": TauSearch(reference_search, "none", "Algorithm 2 of Choi et al.: argmin of D(tau) from two unswitched trajectories"),
    "direct": TauSearch(direct_search, "epsilon", "minimum of a two-sample discrepancy (MMD or classifier) between the switched groups"),
    "direct_mean": TauSearch(direct_mean_search, "balance", "bisection on the projected mean difference of the switched groups"),
    "sweep": TauSearch(sweep_search, "epsilon", "the epsilon estimator at every candidate tau, with its interval"),
}


# The searches for cyclic switching's k - 1 points; each measures the features its single-tau
# namesake measures (`search_features`).
CYCLIC_SEARCHES: dict[str, Callable[..., TauSearchResult]] = {
    "reference": cyclic_reference_search,
    "direct": cyclic_direct_search,
    "sweep": cyclic_sweep_search,
}


def run_cyclic_search(kind: str, setup, **kwargs) -> TauSearchResult:
    """Cyclic search `kind` (`CYCLIC_SEARCHES`) on a run's `Setup`, on the features its namesake measures."""
    search = lookup(CYCLIC_SEARCHES, kind, "cyclic switching search")
    features = search_features(kind, setup)
    if features is not None:
        kwargs["features"] = features
    return search(setup.model, **kwargs)


def search_tau(kind: str, model: Denoiser, **kwargs) -> TauSearchResult:
    return lookup(SEARCHES, kind, "tau search").run(model, **kwargs)


def search_features(kind: str, setup) -> Features | None:
    """The features search `kind` measures for a run's `Setup`, as a function of the sampling loop's output.

    Kinds whose loop produces latents (`Setup.decode`) decode before `Setup.features`.
    """
    wanted = lookup(SEARCHES, kind, "tau search").features
    if wanted == "none":
        return None
    if wanted == "balance":
        return setup.balance_features
    to_samples = loop_output_to_samples(setup)
    return lambda x: setup.features(to_samples(x))


def loop_output_to_samples(setup) -> Callable[[torch.Tensor], torch.Tensor]:
    """The shared loop's output as the run's samples: latents are decoded for kinds whose loop runs
    in a latent space (`Setup.decode`), anything else is already a sample."""
    return setup.decode or (lambda x: x)


def run_search(kind: str, setup, **kwargs) -> TauSearchResult:
    """Search `kind` on a run's `Setup`, measuring the features that search is defined on."""
    features = search_features(kind, setup)
    if features is not None:
        kwargs["features"] = features
    return search_tau(kind, setup.model, **kwargs)
