"""The analytic Gaussian-mixture model: exact noise prediction and closed-form sampler outputs.

Data ``x_0 | s=a ~ N(mu_a, sigma0^2 I)``. Under the forward process,
``x_t | a ~ N(sqrt(abar_t) mu_a, v_t I)`` with ``v_t = abar_t sigma0^2 + 1 - abar_t``, and the
exact noise prediction (the posterior mean of the noise) is

    eps*(x, t, a) = sqrt(1 - abar_t) (x - sqrt(abar_t) mu_a) / v_t.

A condition mixture ``w`` (embedding mixing) conditions on the mixed mean ``w @ mu``.
A ``k + 1``-th column is the null condition, the exact unconditional noise prediction of the
mixture with a uniform prior, ``eps*(x, t) = sum_a p(a | x_t) eps*(x, t, a)`` (the mixture's
score is the posterior-weighted sum of the components' scores); a row ``w`` then predicts
``sum_a w_a eps*(x, t, a) + w_null eps*(x, t)``.

Under DDIM (eta = 0) every step is affine in x, so the output of any condition schedule is
``N(m, A^2 I)`` with scalar ``A`` shared by all schedules; for two schedules with outputs
``N(m_1, A^2 I)``, ``N(m_2, A^2 I)`` the total variation is
``TV = 2 Phi(||m_1 - m_2|| / (2 |A|)) - 1``. This gives exact answers for the sampler, the
switch, the epsilon estimator and the tau searches (METHOD.md, "The analytic Gaussian model").
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..errors import FairbenchError, lookup
from ..schedulers import BETA_SCHEDULES, build_scheduler, make_scheduler
from .base import AttributeAxes, Capabilities, HSpace, ModelKind, RealData, Setup


class GaussianModel:
    """Exact conditional denoiser for a mixture of isotropic Gaussians, one per attribute value."""

    dtype = torch.float64

    def __init__(
        self,
        means,
        std: float,
        *,
        beta_schedule: str = "linear",
        num_train_timesteps: int = 1000,
        attribute_names: tuple[str, ...] | None = None,
        attribute_axes: AttributeAxes | None = None,
    ):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2 or means.shape[0] < 2:
            raise FairbenchError(
                f"model.means must be a list of at least 2 rows (one per attribute value), got shape {tuple(means.shape)}"
            )
        if not (isinstance(std, (int, float)) and std > 0 and math.isfinite(std)):
            raise FairbenchError(f"model.std must be a positive number, got {std!r}")
        self.means = means
        self.std = float(std)
        self.beta_schedule = beta_schedule
        self.num_train_timesteps = int(num_train_timesteps)
        self.sample_shape = (means.shape[1],)
        if attribute_axes is not None and attribute_axes.size != means.shape[0]:
            raise FairbenchError(
                f"the attribute axes {list(attribute_axes.names)} make {attribute_axes.size} values, "
                f"but model.means has {means.shape[0]} rows (one per value)"
            )
        self.capabilities = Capabilities(null_condition=True, attribute_axes=attribute_axes, hspace=self._hspace())
        if attribute_names is None and attribute_axes is not None:
            attribute_names = attribute_axes.flat_names()
        self.attribute_names = attribute_names or tuple(f"s{a}" for a in range(means.shape[0]))
        reference = make_scheduler(
            "ddim", num_train_timesteps=self.num_train_timesteps, beta_schedule=beta_schedule
        )
        self.alphas_cumprod = reference.alphas_cumprod.to(torch.float64)

    @property
    def num_attributes(self) -> int:
        return self.means.shape[0]

    def scheduler_config(self) -> dict:
        return {"num_train_timesteps": self.num_train_timesteps, "beta_schedule": self.beta_schedule}

    def _marginal(self, t: int) -> tuple[float, float]:
        abar = float(self.alphas_cumprod[t])
        return abar, abar * self.std**2 + 1.0 - abar

    def eps(self, x: torch.Tensor, t: int, weights: torch.Tensor) -> torch.Tensor:
        abar, var = self._marginal(int(t))
        k = self.num_attributes
        weights = weights.to(self.means)
        mu = weights[:, :k] @ self.means
        if weights.shape[1] > k:  # the null column: the posterior mean of mu under a uniform prior
            posterior = ExactPosterior(self).log_prob(x, t).exp().to(self.means)
            mu = mu + weights[:, k : k + 1] * (posterior @ self.means)
        return math.sqrt(1.0 - abar) * (x - math.sqrt(abar) * mu.to(x)) / var

    def _hspace(self) -> HSpace:
        """Distribution guidance's h-space on the analytic model, which has no bottleneck: ``x_t``
        itself, with the exact posterior as its classifier. An edit ``h + delta`` moves the
        predicted clean sample toward ``delta`` as an edit of a UNet's h moves its prediction:
        ``eps(x, t) - sqrt(1 - abar_t) delta`` (the score shifted by ``delta``)."""

        def edited_eps(eps, x, t, weights, delta):
            return eps(x, t, weights) - math.sqrt(1.0 - self._marginal(int(t))[0]) * delta.to(x)

        return HSpace(features=lambda x, t: x, log_prob=ExactPosterior(self).log_prob, edited_eps=edited_eps)

    def guidance_classifier(self) -> "ExactPosterior":
        return ExactPosterior(self)

    def sample_data(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draw real data ``x_0 | s`` (for FID/utility references)."""
        noise = torch.randn(len(labels), *self.sample_shape, generator=generator, dtype=torch.float64)
        return self.means[labels.long()] + self.std * noise


class ExactPosterior:
    """The exact ``log p(s | x_t)`` of the Gaussian model under a uniform prior."""

    def __init__(self, model: GaussianModel):
        self.model = model

    def log_prob(self, x: torch.Tensor, t: int) -> torch.Tensor:
        abar, var = self.model._marginal(int(t))
        centres = math.sqrt(abar) * self.model.means.to(x)  # [k, d]
        sq = ((x[:, None, :] - centres[None]) ** 2).sum(-1)  # [B, k]
        return torch.log_softmax(-0.5 * sq / var, dim=1)


@dataclass(frozen=True)
class AffineOutput:
    """Output law ``N(mean, scale^2 I)`` of a deterministic sampler started from ``N(0, I)``."""

    mean: torch.Tensor
    scale: float


def ddim_coefficients(model: GaussianModel, steps: int) -> tuple[list[int], torch.Tensor, float]:
    """DDIM (eta = 0) as an affine map: ``x_out = A x_T + sum_i g_i mu_i``.

    With ``eps = c (x - sqrt(abar_t) mu) / v_t`` (c = sqrt(1 - abar_t)), a DDIM step
    ``x' = sqrt(abar') x0_hat + sqrt(1 - abar') eps`` with
    ``x0_hat = (x - c eps) / sqrt(abar_t)`` is ``x' = (P + Q a) x + Q b mu`` where
    ``P = sqrt(abar'/abar_t)``, ``Q = sqrt(1 - abar') - sqrt(abar') c / sqrt(abar_t)``,
    ``a = c / v_t``, ``b = -c sqrt(abar_t) / v_t``; ``mu_i`` is the (mixed) mean step i
    conditions on. ``abar'`` follows diffusers' DDIM: ``abar_{t - T // steps}``, and 1 past
    the end. Returns the visited timesteps, ``g`` (one weight per step) and ``A``.
    """
    scheduler = build_scheduler("ddim", model, steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    stride = model.num_train_timesteps // steps
    gains, offsets = [], []
    for t in timesteps:
        abar, var = model._marginal(t)
        prev = t - stride
        abar_prev = float(model.alphas_cumprod[prev]) if prev >= 0 else 1.0
        c = math.sqrt(1.0 - abar)
        P = math.sqrt(abar_prev / abar)
        Q = math.sqrt(1.0 - abar_prev) - math.sqrt(abar_prev) * c / math.sqrt(abar)
        gains.append(P + Q * c / var)
        offsets.append(-Q * c * math.sqrt(abar) / var)
    gains_t = torch.tensor(gains, dtype=torch.float64)
    # g_i = offset_i * prod_{j > i} gain_j (later steps scale what earlier steps added).
    after = torch.cat([torch.flip(torch.cumprod(torch.flip(gains_t, [0]), 0), [0])[1:], torch.ones(1, dtype=torch.float64)])
    return timesteps, torch.tensor(offsets, dtype=torch.float64) * after, float(torch.prod(gains_t))


def ddim_output(model: GaussianModel, steps: int, schedule: list[torch.Tensor]) -> AffineOutput:
    """Closed-form output law of DDIM (eta = 0) when step i conditions on mixture ``schedule[i]``."""
    timesteps, g, scale = ddim_coefficients(model, steps)
    if len(schedule) != len(timesteps):
        raise ValueError("one condition mixture per visited timestep is needed")
    mixtures = torch.stack([w.to(torch.float64) for w in schedule])  # [n, k]
    return AffineOutput(mean=(g[:, None] * (mixtures @ model.means)).sum(0), scale=scale)


def gaussian_tv(first: AffineOutput, second: AffineOutput) -> float:
    """``TV(N(m1, A^2 I), N(m2, A^2 I)) = 2 Phi(||m1 - m2|| / (2|A|)) - 1`` (shared scale)."""
    if not math.isclose(first.scale, second.scale, rel_tol=1e-9):
        raise ValueError("closed-form TV needs a shared scale")
    return _tv_from_distance(float(torch.linalg.vector_norm(first.mean - second.mean)), first.scale)


def _tv_from_distance(distance: float, scale: float) -> float:
    return math.erf(distance / (2.0 * abs(scale)) / math.sqrt(2.0))  # = 2 Phi(z) - 1


def switching_schedule(timesteps: list[int], tau: int, source: int, target: int, k: int) -> list[torch.Tensor]:
    """Per-step one-hot mixtures of Algorithm 1: `source` while t > tau, `target` while t <= tau."""
    eye = torch.eye(k, dtype=torch.float64)
    return [eye[target] if t <= tau else eye[source] for t in timesteps]


def exact_tv_curve(model: GaussianModel, steps: int, s0: int = 0, s1: int = 1) -> list[tuple[int, float]]:
    """Exact TV between the switched groups ``s0 -> s1`` and ``s1 -> s0`` at every distinct tau.

    Distinct taus are -1 and each visited timestep (ascending). Since both groups share the
    noise map, ``m_01 - m_10 = (sum_{t > tau} g_t - sum_{t <= tau} g_t) (mu_s0 - mu_s1)``.
    """
    timesteps, g, scale = ddim_coefficients(model, steps)
    gap = float(torch.linalg.vector_norm(model.means[s0] - model.means[s1]))
    ascending = torch.flip(g, [0])
    late = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(ascending, 0)])
    early = float(g.sum()) - late
    curve = [
        (tau, _tv_from_distance(abs(float(e - l)) * gap, scale))
        for tau, e, l in zip([-1] + sorted(timesteps), early, late)
    ]
    return curve


def exact_switching_tv(model: GaussianModel, steps: int, tau: int, s0: int = 0, s1: int = 1) -> float:
    """Exact TV between the switched groups at `tau` (any integer in [-1, T-1]) under DDIM."""
    timesteps, _, _ = ddim_coefficients(model, steps)
    k = model.num_attributes
    forward = ddim_output(model, steps, switching_schedule(timesteps, tau, s0, s1, k))
    backward = ddim_output(model, steps, switching_schedule(timesteps, tau, s1, s0, k))
    return gaussian_tv(forward, backward)


def exact_optimal_tau(model: GaussianModel, steps: int, s0: int = 0, s1: int = 1) -> tuple[int, float]:
    """The tau (on the visited grid) with the smallest exact TV, and that TV."""
    return min(exact_tv_curve(model, steps, s0, s1), key=lambda pair: pair[1])


def cyclic_mixtures(timesteps: list[int], points, request: int, k: int) -> list[torch.Tensor]:
    """Per-step condition mixtures of cyclic switching for `request` at transition `points`.

    Points ``tau_1 > ... > tau_(k-1)`` cut the visited steps into k stages; stage j conditions on
    ``(request + j) mod k``. An integer point is a training timestep with Algorithm 1's rule (a
    step is past it when ``t <= tau``), exactly as `fairbench.methods.CyclicSwitching` samples.
    A float point is the continuous relaxation: with ``t_i`` the visited timesteps (descending)
    and ``t_n = -1``, step i is past ``tau`` by the fraction
    ``f_i(tau) = clip((tau - t_(i+1)) / (t_i - t_(i+1)), 0, 1)`` and conditions on the mixture of
    its stages with those fractions. On grid values (a visited timestep or -1) both rules agree.
    """
    eye = torch.eye(k, dtype=torch.float64)
    below = list(timesteps[1:]) + [-1]
    rows = []
    for t, t_next in zip(timesteps, below):
        past = [1.0]  # fraction of the step in stage >= j, j = 0..k
        for point in points:
            if isinstance(point, float):
                past.append(min(max((point - t_next) / (t - t_next), 0.0), 1.0))
            else:
                past.append(1.0 if t <= point else 0.0)
        past.append(0.0)
        rows.append(sum((past[j] - past[j + 1]) * eye[(request + j) % k] for j in range(k)))
    return rows


def exact_cyclic_tv(model: GaussianModel, steps: int, points) -> float:
    """Exact max pairwise TV between the k requested groups of cyclic switching at `points` (DDIM).

    Group a's output is ``N(sum_j c_j mu_(a+j), A^2 I)`` with ``c_j`` the sum of the DDIM
    weights ``g_i`` (`ddim_coefficients`) over stage j; the TV of two groups is
    ``2 Phi(||m_a - m_b|| / (2|A|)) - 1`` (`gaussian_tv`). `points` as in `cyclic_mixtures`.
    """
    timesteps, _, _ = ddim_coefficients(model, steps)
    k = model.num_attributes
    laws = [ddim_output(model, steps, cyclic_mixtures(timesteps, points, a, k)) for a in range(k)]
    return max(gaussian_tv(laws[a], laws[b]) for a in range(k) for b in range(a + 1, k))


def exact_cyclic_points(model: GaussianModel, steps: int) -> list[float]:
    """The transition points (continuous relaxation, `cyclic_mixtures`) at which every ``c_j`` is equal.

    The weight past a point, ``L(tau) = sum_i g_i f_i(tau)``, is piecewise linear and
    increasing from ``L(-1) = 0`` to ``L(t_0) = G = sum_i g_i`` (every ``g_i > 0`` under DDIM).
    ``c_j = L(tau_j) - L(tau_(j+1))`` (``L(tau_0) = G``, ``L(tau_k) = 0``), so all ``c_j = G / k``
    exactly when ``L(tau_j) = G (k - j) / k``: each point inverts ``L`` on one linear piece.
    Then every group's mean is ``(G / k) sum_a mu_a`` and the groups are identical (TV = 0).
    In general these points fall between visited timesteps: the step that holds one conditions
    on a mixture of two consecutive values (`cyclic_mixtures`); on the grid alone the best is
    `exact_cyclic_grid_optimum`.
    """
    timesteps, g, _ = ddim_coefficients(model, steps)
    if float(g.min()) <= 0.0:
        raise ValueError("the DDIM weights are not all positive: the cumulative weight cannot be inverted")
    k = model.num_attributes
    below = list(timesteps[1:]) + [-1]
    weights = [float(v) for v in g]
    total = sum(weights)
    points = []
    for j in range(1, k):
        wanted = total * (k - j) / k  # weight of the steps past tau_j
        late = 0.0  # weight of the steps after step i (smaller t)
        for i in reversed(range(len(timesteps))):
            if late + weights[i] >= wanted:
                fraction = (wanted - late) / weights[i]
                points.append(below[i] + fraction * (timesteps[i] - below[i]))
                break
            late += weights[i]
    return points


def exact_cyclic_grid_optimum(model: GaussianModel, steps: int) -> tuple[tuple[int, ...], float]:
    """The transition points on the grid (-1 and the visited timesteps) with the smallest exact
    max pairwise TV, by exhaustion of every ``tau_1 >= ... >= tau_(k-1)``, and that TV."""
    timesteps, g, scale = ddim_coefficients(model, steps)
    k = model.num_attributes
    candidates = [-1] + sorted(timesteps)
    late = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.flip(g, [0]), 0)])  # L at each candidate
    combos = torch.tensor(list(itertools.combinations_with_replacement(range(len(candidates)), k - 1)))
    combos = torch.flip(combos, [1])  # descending positions: tau_1 >= ... >= tau_(k-1)
    bounds = torch.cat([torch.full((len(combos), 1), len(candidates) - 1), combos, torch.zeros(len(combos), 1, dtype=torch.long)], 1)
    levels = late[bounds]
    levels[:, 0] = float(g.sum())
    c = levels[:, :-1] - levels[:, 1:]  # [combos, k]: c_j
    shifted = torch.stack([model.means[[(a + j) % k for j in range(k)]] for a in range(k)])  # [a, j, d]
    means = torch.einsum("nj,ajd->nad", c, shifted)
    gaps = torch.stack([torch.linalg.vector_norm(means[:, a] - means[:, b], dim=-1)
                        for a in range(k) for b in range(a + 1, k)], 1).amax(1)
    best = int(torch.argmin(gaps))
    return tuple(candidates[int(p)] for p in combos[best]), _tv_from_distance(float(gaps[best]), scale)


def exact_run_metrics(model: GaussianModel, *, method, scheduler_name: str, steps: int) -> dict:
    """Closed-form metrics of a run where they exist (DDIM, schedules that ignore x).

    ``tv_exact``: the exact max pairwise TV between requested groups, the quantity
    ``epsilon`` estimates from below. Not given for a corrected method (the correction
    depends on x), for one that assigns its own conditions (each group's law is then a
    mixture, not one Gaussian), nor for one that uses the null condition (not affine in x).
    A mixture of noise predictions (`Method.mixes_predictions`) is the prediction under the
    mixed condition here, since ``eps*`` is affine in the condition's mean.
    """
    if scheduler_name != "ddim" or method.correct is not None or method.assign is not None:
        return {}
    timesteps, _, _ = ddim_coefficients(model, steps)
    k = model.num_attributes
    method = method.visiting(timesteps)
    laws = []
    for a in range(k):
        requested = torch.tensor([a])
        schedule = [method.weights(t, requested, k)[0].to(torch.float64) for t in timesteps]
        if any(len(w) > k and w[k:].any() for w in schedule):
            return {}  # the null condition is not affine in x: no closed form
        laws.append(ddim_output(model, steps, [w[:k] for w in schedule]))
    tv = max(gaussian_tv(laws[a], laws[b]) for a in range(k) for b in range(a + 1, k))
    return {"tv_exact": tv}


@dataclass(frozen=True)
class AxisSpec:
    """One axis of a product attribute: ``{name = "sex", values = ["female", "male"]}``."""

    name: str
    values: list[str]


@dataclass(frozen=True)
class GaussianSpec(ModelKind):
    """``kind = "gaussian"``: the analytic model of METHOD.md.

    ``attribute_axes`` (optional) makes the sensitive attribute a product of several, e.g.
    ``[{name = "sex", values = ["female", "male"]}, {name = "age", values = ["young", "old"]}]``;
    ``means`` then has one row per tuple, in row-major order (the last axis fastest:
    female/young, female/old, male/young, male/old), and the value names are the joined
    tuples. It replaces ``attribute_names``.
    """

    kind: Literal["gaussian"]
    means: list[list[float]]
    std: float = 0.5
    beta_schedule: str = "linear"
    num_train_timesteps: int = 1000
    attribute_names: list[str] | None = None
    attribute_axes: list[AxisSpec] | None = None
    n_real: int = 10000  # real reference samples x_0 ~ N(mu_a, std^2 I), balanced over a (FID, KID)

    def validate(self, where: str) -> None:
        lookup({b: b for b in BETA_SCHEDULES}, self.beta_schedule, f"{where}.beta_schedule")
        if len(self.means) < 2 or len({len(row) for row in self.means}) != 1 or not self.means[0]:
            raise FairbenchError(f"{where}.means must be at least 2 rows of equal, non-zero length")
        if self.std <= 0:
            raise FairbenchError(f"{where}.std must be positive, got {self.std}")
        if self.num_train_timesteps < 2:
            raise FairbenchError(f"{where}.num_train_timesteps must be at least 2, got {self.num_train_timesteps}")
        if self.attribute_names is not None and len(self.attribute_names) != len(self.means):
            raise FairbenchError(f"{where}.attribute_names must name {len(self.means)} values, got {len(self.attribute_names)}")
        if self.n_real < 2:
            raise FairbenchError(f"{where}.n_real must be at least 2, got {self.n_real}")
        if self.attribute_axes is not None:
            self._check_axes(where)

    def _check_axes(self, where: str) -> None:
        axes = self.attribute_axes
        if self.attribute_names is not None:
            raise FairbenchError(f"{where}: give attribute_names or attribute_axes, not both (the axes name the values)")
        if len(axes) < 2:
            raise FairbenchError(f"{where}.attribute_axes must list at least 2 axes, got {len(axes)}; "
                                 "for one attribute use attribute_names")
        names = [axis.name for axis in axes]
        for i, axis in enumerate(axes):
            if names.count(axis.name) > 1:
                raise FairbenchError(f"{where}.attribute_axes names axis {axis.name!r} twice")
            if len(axis.values) < 2 or len(set(axis.values)) != len(axis.values):
                raise FairbenchError(
                    f"{where}.attribute_axes[{i}] ({axis.name!r}) needs at least 2 distinct values, got {axis.values}"
                )
        size = math.prod(len(axis.values) for axis in axes)
        if size != len(self.means):
            raise FairbenchError(
                f"{where}.attribute_axes make {size} values ({' x '.join(str(len(a.values)) for a in axes)}), "
                f"but {where}.means has {len(self.means)} rows; give one row per tuple, last axis fastest"
            )

    def axes(self) -> AttributeAxes | None:
        if self.attribute_axes is None:
            return None
        return AttributeAxes(tuple(a.name for a in self.attribute_axes), tuple(tuple(a.values) for a in self.attribute_axes))

    def known_train_timesteps(self) -> int | None:
        return self.num_train_timesteps

    def build(self, *, device: str = "cpu", dataset: dict | None = None, **_: Any) -> Setup:
        model = GaussianModel(
            self.means,
            self.std,
            beta_schedule=self.beta_schedule,
            num_train_timesteps=self.num_train_timesteps,
            attribute_names=tuple(self.attribute_names) if self.attribute_names else None,
            attribute_axes=self.axes(),
        )
        # One fixed draw (seed 0), so every method and seed is compared with the same reference.
        labels = torch.arange(self.n_real) % model.num_attributes
        # A second draw (seed 1) is the "training split" of the reference utility and target gap.
        real = RealData(samples=model.sample_data(labels, torch.Generator().manual_seed(0)), sensitive=labels,
                        train=RealData(samples=model.sample_data(labels, torch.Generator().manual_seed(1)), sensitive=labels))
        return Setup(
            model=model,
            guidance=model.guidance_classifier(),
            exact_metrics=lambda **kw: exact_run_metrics(model, **kw),
            real=real,
            judge=lambda x: bayes_judge(model, x),
        )


def bayes_judge(model: GaussianModel, x: torch.Tensor) -> torch.Tensor:
    """The Gaussian model's judge: the exact posterior of clean data under a uniform prior,
    ``log p(a | x) = log_softmax_a(-||x - mu_a||^2 / (2 std^2))`` (the Bayes classifier; it errs
    where the values overlap, as a trained judge would)."""
    means = model.means.to(x)
    return torch.log_softmax(-0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1) / model.std**2, dim=1)
