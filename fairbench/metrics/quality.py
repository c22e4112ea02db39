"""Quality of generated data against real data: FID (all samples and per group) and KID.

Two backends compute the same quantities on the same features (`features.FeatureExtractor`):

- ``"clean-fid"`` (default): features are extracted once, in batches, into streaming
  statistics (`FeatureStats`: running sum and sum of outer products in float64), so memory
  does not grow with the number of samples; the distances are clean-fid's
  `frechet_distance` and `kernel_distance`.
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


def _quality_clean_fid(generated, real, extractor, groups, *, kid_subsets, kid_subset_size, seed):
    real_stats, real_features = FeatureStats(), []
    for features in extractor.batches(real):
        real_stats.update(features)
        real_features.append(features.numpy())
    all_stats, generated_features = FeatureStats(), []
    for features in extractor.batches(generated):
        all_stats.update(features)
        generated_features.append(features.numpy())
    fg, fr = np.concatenate(generated_features), np.concatenate(real_features)
    by_group = {
        name: frechet_distance(FeatureStats.of(fg[gi]), FeatureStats.of(fr[ri]))
        if _fid_or_reason(fg.shape[1], len(gi), len(ri)) is None else None
        for name, (gi, ri) in groups.items()
    }
    return {
        "fid": frechet_distance(all_stats, real_stats),
        "fid_by_group": by_group,
        "kid": kernel_distance(fg, fr, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed),
    }, fg, fr


def _quality_torchmetrics(generated, real, extractor, groups, *, kid_subsets, kid_subset_size, seed):
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
    return {
        "fid": fid_of(np.arange(len(generated))),
        "fid_by_group": {name: group_fid(gi, ri) for name, (gi, ri) in groups.items()},
        "kid": float(kid_mean),
    }, extractor(generated).numpy(), extractor(real).numpy()


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
    evidence: dict | None = None,
) -> dict:
    """``fid``, ``kid``, ``fid_features`` and per group ``fid_by_group``, ``kid_by_group``, ``quality_groups``.

    `generated` and `real` are samples in the same space; `extractor` maps both to features.
    `carried`: the sensitive value each generated sample is meant to carry (default:
    `requested`); `real_labels`: the sensitive value of each real image. Groups are keyed by
    the carried value's name. `evidence`: a dict that receives the generated samples' features
    (``fid_features``, ``[N, D]``) and the real statistics (``fid_real_mean``, ``fid_real_cov``),
    what paired comparisons of ``fid`` resample (`fairbench.compare`).
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
    out, fg, fr = compute(generated, real, extractor, groups,
                          kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed)
    if evidence is not None:
        real_stats = FeatureStats.of(fr)
        evidence.update(fid_features=fg.astype(np.float32), fid_real_mean=real_stats.mean, fid_real_cov=real_stats.cov)
    out["kid_by_group"] = {
        name: kernel_distance(fg[gi], fr[ri], subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
        for name, (gi, ri) in groups.items() if len(ri) >= 2
    }
    out["quality_groups"] = {
        name: {
            "generated": f"samples meant to carry {name!r} ({grouped_by} value)",
            "real": f"real images of {name!r}" if real_labels is not None else "all real images (no real labels)",
            "n_generated": int(len(gi)), "n_real": int(len(ri)),
            **({"fid": reason} if (reason := _fid_or_reason(fg.shape[1], len(gi), len(ri))) else {}),
        }
        for name, (gi, ri) in groups.items()
    }
    return out | {"fid_features": extractor.name}
