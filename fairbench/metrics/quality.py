"""Quality of generated data against real data: FID (all samples and per group) and KID.

Two backends compute the same quantities on the same features (`features.FeatureExtractor`):

- ``"clean-fid"`` (default): features are extracted once, in batches, into streaming
  statistics (`FeatureStats`: running sum and sum of outer products in float64), so memory
  does not grow with the number of samples; the distances are clean-fid's
  `frechet_distance` and its `kernel_distance` on the same subsets (`kernel_distance` here).
- ``"torchmetrics"``: `FrechetInceptionDistance` / `KernelInceptionDistance` with the
  extractor as their custom feature module (a cross-check; it runs the extractor once per
  generated group and once more for KID).

Per group (``fid_by_group``, ``kid_by_group``): the samples meant to carry sensitive value a
(their `final` value: the requested one, or the one a switch ends with) against the real
images of value a, so the number reads as "how good are the images of a". Against all real
data it would mostly measure that the group is one part of the domain. The record's
``quality_groups`` says, per group, which real value it is compared with and how many
images each side holds. Where a side holds fewer than ``MIN_ROWS_PER_DIM * D`` images (D the
feature dimension) the group's FID is None with the reason in ``quality_groups``: the
covariance of so few rows is dominated by its estimation error (rank-deficient below D), so
the number would mostly measure the sample size. KID is unbiased at any size and is given
for every group with at least 2 images on each side. Without real labels every group is
compared with all real data, and ``quality_groups`` says so.

FID keeps only D x D sums (per set and per group); KID keeps at most ``KID_MAX_ROWS`` rows per set
and per group, drawn uniformly, since it resamples subsets.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from ..errors import FairbenchError, lookup
from .features import ExtractorModule, FeatureExtractor

Backend = Literal["clean-fid", "torchmetrics"]


class FeatureStats:
    """Streaming mean and covariance of features, accumulated in float64.

    Sums are taken about a pivot ``c`` (the first batch's mean), ``S1 = sum (x - c)`` and
    ``S2 = sum (x - c)(x - c)^T``, so the covariance does not lose digits when features
    have a large common offset: ``mu = c + S1/n``, ``S = (S2 - S1 S1^T / n) / (n - 1)``.
    """

    def __init__(self) -> None:
        self.n = 0
        self._pivot: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None

    def update(self, features) -> "FeatureStats":
        x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
        x = x.astype(np.float64, copy=False).reshape(len(x), -1)
        if len(x) == 0:
            return self
        if self._pivot is None:
            self._pivot = x.mean(axis=0)
            self._sum = np.zeros_like(self._pivot)
            self._outer = np.zeros((len(self._pivot), len(self._pivot)))
        elif x.shape[1] != len(self._pivot):
            raise ValueError(f"feature dimension changed from {len(self._pivot)} to {x.shape[1]}")
        centred = x - self._pivot
        self._sum += centred.sum(axis=0)
        self._outer += centred.T @ centred
        self.n += len(x)
        return self

    @classmethod
    def of(cls, features) -> "FeatureStats":
        return cls().update(features)

    @property
    def mean(self) -> np.ndarray:
        return self._pivot + self._sum / self.n

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (``n - 1``), as `np.cov` and both FID libraries use."""
        if self.n < 2:
            raise ValueError("a covariance needs at least 2 samples")
        return (self._outer - np.outer(self._sum, self._sum) / self.n) / (self.n - 1)


def frechet_distance(generated: FeatureStats, real: FeatureStats) -> float:
    """``FID = ||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2))`` (clean-fid's implementation)."""
    from cleanfid.fid import frechet_distance as cleanfid_frechet

    # clean-fid prints a notice to stdout when it regularises a singular product, and passes
    # scipy's deprecated `disp` argument: keep stdout and warnings about our own code.
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The `disp` argument is deprecated", category=DeprecationWarning)
        return float(cleanfid_frechet(generated.mean, generated.cov, real.mean, real.cov))


def kernel_distance(generated: np.ndarray, real: np.ndarray, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """KID: ``mean over subsets of MMD^2_unbiased`` with ``k(x, y) = (x.y / d + 1)^3``.

    Subsets of ``m = min(n_g, n_r, subset_size)`` rows of each set, drawn without replacement
    from numpy's generator seeded with `seed`, in clean-fid's order (per subset: the real rows,
    then the generated rows), so the value is clean-fid's `kernel_distance` on the same seed
    (equal to 1e-12, tested). Each subset's MMD is

        MMD^2_u = [sum_{i!=j} k(x_i, x_j) + sum_{i!=j} k(y_i, y_j)] / (m (m - 1)) - 2 sum_{i,j} k(x_i, y_j) / m^2.

    The cube is two products instead of clean-fid's float power (4.5x faster at 2-dimensional
    features, where the power dominates; the same at 512, where the products do). With
    ``m = n_g = n_r`` every subset is the whole set and KID is exact.
    """
    if min(len(generated), len(real)) < 2:
        raise ValueError("KID needs at least 2 samples on each side")
    gen, ref = np.asarray(generated, np.float64), np.asarray(real, np.float64)
    d = gen.shape[1]
    m = min(len(gen), len(ref), subset_size)

    def cubed(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        k = u @ v.T
        k /= d
        k += 1.0
        cube = k * k
        cube *= k
        return cube

    draws = np.random.RandomState(seed)  # the legacy generator clean-fid seeds globally: the same draws
    total = 0.0
    for _ in range(subsets):
        x = ref[draws.choice(len(ref), m, replace=False)]
        y = gen[draws.choice(len(gen), m, replace=False)]
        within = sum(float(c.sum() - np.trace(c)) for c in (cubed(x, x), cubed(y, y)))
        total += within / (m - 1) - float(cubed(x, y).sum()) * 2 / m
    return float(total / subsets / m)


MIN_ROWS_PER_DIM = 2  # a group's FID needs at least this many images per feature dimension on each side


def _groups(carried: np.ndarray, real_labels: np.ndarray | None, value_names: Sequence[str], n_real: int) -> dict:
    """``{name: (generated indices, real indices)}`` for every value carried by >= 2 samples."""
    out = {}
    for a, name in enumerate(value_names):
        mine = np.flatnonzero(carried == a)
        if len(mine) < 2:
            continue
        out[name] = (mine, np.arange(n_real) if real_labels is None else np.flatnonzero(real_labels == a))
    return out


def _fid_or_reason(dim: int, n_generated: int, n_real: int) -> str | None:
    need = MIN_ROWS_PER_DIM * dim
    if min(n_generated, n_real) < need:
        return (f"not computed: {min(n_generated, n_real)} images on one side for {dim} feature dimensions "
                f"(needs {need}); the covariance would dominate the number, see kid_by_group")
    return None


KID_MAX_ROWS = 10_000  # rows of each set (and of each group) KID keeps: memory flat in the number of samples


def _kept_rows(n: int, cap: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(n, cap)`` rows drawn uniformly without replacement (all of them when n <= cap)."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


class _StreamedSide:
    """One side (generated or real) of the quality metrics, filled batch by batch: FeatureStats of all
    rows and of each group, and the features of the rows KID keeps (`KID_MAX_ROWS` per set and
    per group, drawn uniformly: a uniform subset of a uniform subset is a uniform subset, so every
    KID subset is still drawn uniformly from the whole set)."""

    def __init__(self, n: int, groups: dict[str, np.ndarray], cap: int, seed: int):
        self.all = FeatureStats()
        self.group_of = {name: np.isin(np.arange(n), rows) for name, rows in groups.items()}
        self.by_group = {name: FeatureStats() for name in groups}
        self.kept = {None: _kept_rows(n, cap, seed)}
        for j, (name, rows) in enumerate(groups.items()):
            self.kept[name] = rows[_kept_rows(len(rows), cap, seed + 1 + j)]
        union = np.unique(np.concatenate(list(self.kept.values())))
        self._union = union
        self._wanted = np.zeros(n, dtype=bool)
        self._wanted[union] = True
        self._rows = np.empty((len(union), 0))
        self._start = 0

    def update(self, features: torch.Tensor) -> None:
        x = features.numpy()
        stop = self._start + len(x)
        self.all.update(x)
        for name, member in self.group_of.items():
            inside = member[self._start:stop]
            if inside.any():
                self.by_group[name].update(x[inside])
        wanted = self._wanted[self._start:stop]
        if self._rows.shape[1] != x.shape[1]:
            self._rows = np.empty((len(self._union), x.shape[1]))
        if wanted.any():
            self._rows[np.searchsorted(self._union, np.flatnonzero(wanted) + self._start)] = x[wanted]
        self._start = stop

    def kid_rows(self, name=None) -> np.ndarray:
        return self._rows[np.searchsorted(self._union, self.kept[name])]

    @property
    def dim(self) -> int:
        return self._rows.shape[1]


def _feature_batches(samples, extractor, features: np.ndarray | None):
    if features is None:
        yield from extractor.batches(samples)
        return
    for lo in range(0, len(features), extractor.batch_size):
        yield torch.from_numpy(np.asarray(features[lo : lo + extractor.batch_size], dtype=np.float64))


def _quality_clean_fid(generated, real, extractor, groups, *, kid_subsets, kid_subset_size, seed,
                       generated_features=None, kid_max_rows=KID_MAX_ROWS):
    gen = _StreamedSide(len(generated), {name: gi for name, (gi, _) in groups.items()}, kid_max_rows, seed + 11)
    ref = _StreamedSide(len(real), {name: ri for name, (_, ri) in groups.items()}, kid_max_rows, seed + 13)
    for features in _feature_batches(real, extractor, None):
        ref.update(features)
    for features in _feature_batches(generated, extractor, generated_features):
        gen.update(features)
    dim = gen.dim
    by_group = {
        name: frechet_distance(gen.by_group[name], ref.by_group[name])
        if _fid_or_reason(dim, len(gi), len(ri)) is None else None
        for name, (gi, ri) in groups.items()
    }
    kid = {
        name: kernel_distance(gen.kid_rows(name), ref.kid_rows(name), subsets=kid_subsets,
                              subset_size=kid_subset_size, seed=seed)
        for name, (gi, ri) in groups.items() if len(ri) >= 2
    }
    return {
        "fid": frechet_distance(gen.all, ref.all),
        "fid_by_group": by_group,
        "kid": kernel_distance(gen.kid_rows(), ref.kid_rows(), subsets=kid_subsets, subset_size=kid_subset_size,
                               seed=seed),
        "kid_by_group": kid,
    }, dim


def _quality_torchmetrics(generated, real, extractor, groups, *, kid_subsets, kid_subset_size, seed,
                          generated_features=None, kid_max_rows=KID_MAX_ROWS):
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    dim = extractor(real[:1]).shape[1]
    module = ExtractorModule(extractor, dim)
    # reset_real_features=False: reset() clears the generated side only, so the real
    # statistics are accumulated once and reused for every group.
    fid_metric = FrechetInceptionDistance(feature=module, reset_real_features=False)
    with warnings.catch_warnings():  # it warns that it keeps the features: documented above
        warnings.filterwarnings("ignore", message=".*will save all extracted features", category=UserWarning)
        kid_metric = KernelInceptionDistance(feature=module, subsets=kid_subsets,
                                             subset_size=min(len(generated), len(real), kid_subset_size))
    for lo in range(0, len(real), extractor.batch_size):
        fid_metric.update(real[lo : lo + extractor.batch_size], real=True)
        kid_metric.update(real[lo : lo + extractor.batch_size], real=True)

    def fid_of(indices: np.ndarray, metric=fid_metric) -> float:
        metric.reset()
        for lo in range(0, len(indices), extractor.batch_size):
            metric.update(generated[torch.from_numpy(indices[lo : lo + extractor.batch_size])], real=False)
        return float(metric.compute())

    def group_fid(generated_indices: np.ndarray, real_indices: np.ndarray) -> float | None:
        if _fid_or_reason(dim, len(generated_indices), len(real_indices)) is not None:
            return None
        metric = FrechetInceptionDistance(feature=module, reset_real_features=False)
        for lo in range(0, len(real_indices), extractor.batch_size):
            metric.update(real[torch.from_numpy(real_indices[lo : lo + extractor.batch_size])], real=True)
        return fid_of(generated_indices, metric)

    for lo in range(0, len(generated), extractor.batch_size):
        kid_metric.update(generated[lo : lo + extractor.batch_size], real=False)
    with torch.random.fork_rng(devices=[]):  # KID's subsets come from torch's global generator
        torch.manual_seed(seed)
        kid_mean, _ = kid_metric.compute()
    fg, fr = extractor(generated).numpy(), extractor(real).numpy()
    return {
        "fid": fid_of(np.arange(len(generated))),
        "fid_by_group": {name: group_fid(gi, ri) for name, (gi, ri) in groups.items()},
        "kid": float(kid_mean),
        "kid_by_group": {
            name: kernel_distance(fg[gi], fr[ri], subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
            for name, (gi, ri) in groups.items() if len(ri) >= 2
        },
    }, dim


QUALITY_BACKENDS = {"clean-fid": _quality_clean_fid, "torchmetrics": _quality_torchmetrics}


def quality_metrics(
    generated: torch.Tensor,
    requested,
    real: torch.Tensor,
    extractor: FeatureExtractor,
    *,
    value_names: Sequence[str],
    backend: Backend = "clean-fid",
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    carried=None,
    real_labels=None,
    generated_features: np.ndarray | None = None,
    kid_max_rows: int = KID_MAX_ROWS,
) -> dict:
    """``fid``, ``kid``, ``fid_features`` and per group ``fid_by_group``, ``kid_by_group``, ``quality_groups``.

    `generated` and `real` are samples in the same space; `extractor` maps both to features.
    `carried`: the sensitive value each generated sample is meant to carry (default:
    `requested`); `real_labels`: the sensitive value of each real image. Groups are keyed by
    the carried value's name. `generated_features`: `extractor`'s features of `generated`, when the
    caller has them already (the clean-fid backend then does not extract them again).

    Memory is flat in the number of samples with the clean-fid backend: FID keeps D x D sums per
    set and group; KID keeps at most `kid_max_rows` rows per set and per group, drawn uniformly
    (each KID subset is then still a uniform subset of the whole set, so KID's expectation is
    unchanged; with at most `kid_max_rows` rows it is the computation on all rows).
    """
    compute = lookup(QUALITY_BACKENDS, backend, "FID backend")
    if len(generated) < 2 or len(real) < 2:
        raise FairbenchError(f"FID needs at least 2 generated and 2 real samples, got {len(generated)} and {len(real)}")
    if kid_subsets < 1 or kid_subset_size < 2:
        raise FairbenchError(f"KID needs at least 1 subset of at least 2 samples, got {kid_subsets} of {kid_subset_size}")
    grouped_by = "requested" if carried is None else "final"
    carried = np.asarray(requested if carried is None else carried)
    real_labels = None if real_labels is None else np.asarray(real_labels)
    groups = _groups(carried, real_labels, list(value_names), len(real))
    out, dim = compute(generated, real, extractor, groups, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                       seed=seed, generated_features=generated_features, kid_max_rows=kid_max_rows)
    out["quality_groups"] = {
        name: {
            "generated": f"samples meant to carry {name!r} ({grouped_by} value)",
            "real": f"real images of {name!r}" if real_labels is not None else "all real images (no real labels)",
            "n_generated": int(len(gi)), "n_real": int(len(ri)),
            **({"fid": reason} if (reason := _fid_or_reason(dim, len(gi), len(ri))) else {}),
        }
        for name, (gi, ri) in groups.items()
    }
    return out | {"fid_features": extractor.name}
