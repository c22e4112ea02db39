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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from .errors import FairbenchError, lookup
from .methods import AttributeSwitching, Conditional
from .metrics import fairness
from .models.base import Denoiser
from .noise import StepNoise, initial_noise
from .progress import progress
from .sampling import Resume, Step, denoise
from .schedulers import make_scheduler, visited_timesteps

Features = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TauSearchResult:
    tau: int
    search: str
    curve: list[tuple[int, float]]  # (tau, value), ascending tau
    nfe: int  # model evaluations spent, counted per sample
    wall_s: float
    details: dict = field(default_factory=dict)
    band: list[tuple[float, float]] | None = None  # an interval per curve point, where the search has one

    def as_json(self) -> dict:
        out = {"tau": self.tau, "search": self.search, "curve": [[t, v] for t, v in self.curve], "nfe": self.nfe}
        if self.band is not None:
            out["band"] = [[lo, hi] for lo, hi in self.band]
        return out

    @classmethod
    def from_json(cls, saved: dict) -> "TauSearchResult":
        band = saved.get("band")
        return cls(saved["tau"], saved["search"], [tuple(p) for p in saved["curve"]], saved["nfe"], saved.get("wall_s", 0.0),
                   band=[tuple(b) for b in band] if band is not None else None)


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
