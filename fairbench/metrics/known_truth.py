"""Two-group cases whose total variation is known in closed form: the ground truth for epsilon.

Each case draws ``n`` samples per group (``requested`` 0 and 1, alternating) and states the
exact ``TV(p_0, p_1) = (1/2) integral |p_0 - p_1|``. `fairbench report metrics` and the tests
of the epsilon estimator use them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


@dataclass(frozen=True)
class KnownCase:
    name: str
    description: str
    tv: float  # exact total variation between the two groups
    draw: Callable[[np.ndarray, np.random.Generator], np.ndarray]  # (requested [2n], rng) -> samples [2n, d]

    def sample(self, n_per_group: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``(samples [2n, d], requested [2n])``, sample i requested for ``i mod 2``."""
        rng = np.random.default_rng(seed)
        requested = np.arange(2 * n_per_group) % 2
        return self.draw(requested, rng), requested


def mean_shift(delta: float = 1.0, dim: int = 2) -> KnownCase:
    """``N(-delta/2 e_1, I)`` vs ``N(delta/2 e_1, I)``: ``TV = 2 Phi(delta / 2) - 1``."""
    def draw(requested, rng):
        x = rng.normal(size=(len(requested), dim))
        x[:, 0] += delta * (requested - 0.5)
        return x

    return KnownCase(f"mean shift {delta:g} ({dim}-dim)", f"N(-{delta / 2:g} e1, I) vs N(+{delta / 2:g} e1, I)",
                     2.0 * _phi(delta / 2.0) - 1.0, draw)


def variance_ratio(ratio: float = 4.0, dim: int = 2) -> KnownCase:
    """``N(0, I)`` vs ``N(0, r I)``, r > 1: the densities cross at ``||x||^2 = c = d r ln(r) / (r - 1)``,
    so ``TV = F_d(c) - F_d(c / r)`` with ``F_d`` the chi-square CDF with d degrees of freedom."""
    c = dim * ratio * math.log(ratio) / (ratio - 1.0)

    def draw(requested, rng):
        scale = np.where(requested == 1, math.sqrt(ratio), 1.0)
        return rng.normal(size=(len(requested), dim)) * scale[:, None]

    return KnownCase(f"variance ratio {ratio:g} ({dim}-dim)", f"N(0, I) vs N(0, {ratio:g} I), same mean",
                     float(chi2.cdf(c, dim) - chi2.cdf(c / ratio, dim)), draw)


def mixture_weights(w0: float = 0.5, w1: float = 0.8, m: float = 2.0) -> KnownCase:
    """``w N(-m e_1, I) + (1 - w) N(m e_1, I)`` with ``w = w0`` vs ``w1`` (2-dim): the densities differ by
    ``(w1 - w0) (phi_{-m} - phi_{m})``, so ``TV = |w1 - w0| (2 Phi(m) - 1)``."""
    def draw(requested, rng):
        weight = np.where(requested == 1, w1, w0)
        side = np.where(rng.random(len(requested)) < weight, -m, m)
        x = rng.normal(size=(len(requested), 2))
        x[:, 0] += side
        return x

    return KnownCase(f"mixture weights {w0:g} vs {w1:g}", f"modes at -+{m:g} e1 with weights {w0:g} vs {w1:g} on the left one",
                     abs(w1 - w0) * (2.0 * _phi(m) - 1.0), draw)


def xor(mu: float = 1.5) -> KnownCase:
    """Group 0: modes ``(mu, mu)`` and ``(-mu, -mu)``; group 1: ``(mu, -mu)`` and ``(-mu, mu)``; unit
    variance. ``p_0 - p_1 = (1/2) (phi(x - mu) - phi(x + mu)) (phi(y - mu) - phi(y + mu))``, so
    ``TV = (2 Phi(mu) - 1)^2``. Same means and variances: invisible to a linear classifier."""
    def draw(requested, rng):
        sx = rng.choice([-1.0, 1.0], size=len(requested))
        sy = sx * np.where(requested == 1, -1.0, 1.0)
        return rng.normal(size=(len(requested), 2)) + mu * np.stack([sx, sy], axis=1)

    return KnownCase(f"XOR, modes at +-{mu:g}", "same-sign quadrant modes vs opposite-sign ones",
                     (2.0 * _phi(mu) - 1.0) ** 2, draw)


def identical(dim: int = 2) -> KnownCase:
    """Both groups ``N(0, I)``: ``TV = 0``."""
    return KnownCase(f"identical ({dim}-dim)", "N(0, I) vs N(0, I)", 0.0,
                     lambda requested, rng: rng.normal(size=(len(requested), dim)))


def standard_cases() -> list[KnownCase]:
    """The cases of the validation report: a difference of every kind epsilon claims to see, and none."""
    return [mean_shift(1.0), variance_ratio(4.0), mixture_weights(), xor(1.5), variance_ratio(1.5, dim=64), identical()]
