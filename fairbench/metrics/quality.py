"""Quality of generated data against real data: FID (all samples and per group) and KID.

Two backends compute the same quantities on the same features (`features.FeatureExtractor`):

- ``"clean-fid"`` (default): features are extracted once, in batches, into streaming
  statistics (`FeatureStats`: running sum and sum of outer products in float64), so memory
  does not grow with the number of samples; the distances are clean-fid's
  `frechet_distance` and `kernel_distance`.
- ``"torchmetrics"``: `FrechetInceptionDistance` / `KernelInceptionDistance` with the
  extractor as their custom feature module (a cross-check; it runs the extractor once per
  generated group and once more for KID).

``fid_by_group`` is each requested group's samples against *all* real data: the quality of
each group as data of the domain, so a fair method is not charged for leaving its request.
KID keeps the features (``[N, D]``) since it resamples subsets; FID keeps only D x D sums.
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

    Subsets of ``m = min(n_g, n_r, subset_size)`` rows of each set, drawn without
    replacement (clean-fid's `kernel_distance`). With ``m = n_g = n_r`` every subset is the
    whole set and KID is exact.
    """
    from cleanfid.fid import kernel_distance as cleanfid_kernel

    if min(len(generated), len(real)) < 2:
        raise ValueError("KID needs at least 2 samples on each side")
    # clean-fid draws subsets from numpy's global generator: seed it for this call only.
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return float(cleanfid_kernel(np.asarray(generated, np.float64), np.asarray(real, np.float64),
                                     num_subsets=subsets, max_subset_size=subset_size))
    finally:
        np.random.set_state(state)


def _group_indices(requested: np.ndarray, value_names: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: np.flatnonzero(requested == a) for a, name in enumerate(value_names) if (requested == a).sum() >= 2}


def _quality_clean_fid(generated, requested, real, extractor, value_names, *, kid_subsets, kid_subset_size, seed):
    real_stats, real_features = FeatureStats(), []
    for features in extractor.batches(real):
        real_stats.update(features)
        real_features.append(features.numpy())
    all_stats = FeatureStats()
    group_stats = {name: FeatureStats() for name in value_names}
    generated_features = []
    for lo, features in zip(range(0, len(generated), extractor.batch_size), extractor.batches(generated)):
        all_stats.update(features)
        generated_features.append(features.numpy())
        groups = requested[lo : lo + len(features)]
        for a, name in enumerate(value_names):
            group_stats[name].update(features[torch.from_numpy(groups == a)])
    return {
        "fid": frechet_distance(all_stats, real_stats),
        "fid_by_group": {name: frechet_distance(s, real_stats) for name, s in group_stats.items() if s.n >= 2},
        "kid": kernel_distance(np.concatenate(generated_features), np.concatenate(real_features),
                               subsets=kid_subsets, subset_size=kid_subset_size, seed=seed),
    }


def _quality_torchmetrics(generated, requested, real, extractor, value_names, *, kid_subsets, kid_subset_size, seed):
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

    def fid_of(indices: np.ndarray) -> float:
        fid_metric.reset()
        for lo in range(0, len(indices), extractor.batch_size):
            fid_metric.update(generated[torch.from_numpy(indices[lo : lo + extractor.batch_size])], real=False)
        return float(fid_metric.compute())

    for lo in range(0, len(generated), extractor.batch_size):
        kid_metric.update(generated[lo : lo + extractor.batch_size], real=False)
    with torch.random.fork_rng(devices=[]):  # KID's subsets come from torch's global generator
        torch.manual_seed(seed)
        kid_mean, _ = kid_metric.compute()
    return {
        "fid": fid_of(np.arange(len(generated))),
        "fid_by_group": {name: fid_of(indices) for name, indices in _group_indices(requested, value_names).items()},
        "kid": float(kid_mean),
    }


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
) -> dict:
    """``fid``, ``fid_by_group`` ({requested value name: FID}), ``kid`` and ``fid_features``.

    `generated` and `real` are samples in the same space; `extractor` maps both to features.
    """
    compute = lookup(QUALITY_BACKENDS, backend, "FID backend")
    if len(generated) < 2 or len(real) < 2:
        raise FairbenchError(f"FID needs at least 2 generated and 2 real samples, got {len(generated)} and {len(real)}")
    if kid_subsets < 1 or kid_subset_size < 2:
        raise FairbenchError(f"KID needs at least 1 subset of at least 2 samples, got {kid_subsets} of {kid_subset_size}")
    requested = np.asarray(requested)
    out = compute(generated, requested, real, extractor, list(value_names),
                  kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed)
    return out | {"fid_features": extractor.name}
