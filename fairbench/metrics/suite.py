"""One entry point for the measurements of a run: `evaluate` computes whatever the setup allows.

- always: ``epsilon``, ``epsilon_ci``, ``epsilon_p_value``, ``epsilon_learner``,
  ``epsilon_feature_space`` (feature spaces: ``Setup.features`` and, when low-dimensional, the
  raw sample values) and ``epsilon_linear``, ``epsilon_linear_ci`` (``Setup.features`` only);
- with ``Setup.judge``: ``fd``, ``kl_uniform``, ``judged_distribution``;
- with ``Setup.real``: ``fid``, ``fid_by_group``, ``kid``, ``fid_features``;
- with ``Setup.real`` and labels for the target (``Setup.target_judge`` and
  ``Setup.real.target``; or ``utility_target = "sensitive"`` and the samples' final
  condition): ``utility_accuracy``, ``utility_accuracy_by_group``, ``utility_dp_difference``,
  ``utility_eo_difference``.

Metrics whose inputs are absent are left out of the result. Cost metrics are measured
around sampling by the runner (`fairbench.metrics.cost`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..errors import FairbenchError, lookup
from .balance import balance_metrics
from .fairness import DEFAULT_LEARNERS, LEARNERS, epsilon_fairness, epsilon_linear, raw_space_helps
from .features import FeatureExtractor, find_inception, inception_features, raw_features
from .quality import QUALITY_BACKENDS, quality_metrics
from .utility import train_synthetic_test_real

FidFeatures = Literal["auto", "inception", "setup", "raw"]
FID_FEATURES = ("auto", "inception", "setup", "raw")
UTILITY_TARGETS = ("target", "sensitive")


@dataclass(frozen=True)
class SuiteOptions:
    """Settings of the measurements; `from_config` takes those a ``[metrics]`` spec defines.

    ``fid_features``: ``"auto"`` uses Inception-v3 for images when its weights are on this
    machine and ``Setup.features`` otherwise; ``"inception"`` requires Inception-v3;
    ``"setup"`` is ``Setup.features`` (named ``Setup.feature_name``: ``raw``, a judge
    layer); ``"raw"`` the flattened samples.
    """

    epsilon_folds: int = 5
    epsilon_learners: tuple[str, ...] = DEFAULT_LEARNERS
    epsilon_repeats: int = 3
    epsilon_subsamples: int = 8
    epsilon_permutations: int = 1000
    confidence: float = 0.95
    bootstrap: int = 1000
    fid_features: FidFeatures = "auto"
    fid_backend: Literal["clean-fid", "torchmetrics"] = "clean-fid"
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    utility_target: Literal["target", "sensitive"] = "target"
    feature_batch_size: int = 256

    @classmethod
    def from_config(cls, config: Any = None) -> "SuiteOptions":
        """Every field of this class that `config` (e.g. a `MetricsSpec`) has; defaults for the rest."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: getattr(config, name) for name in names if hasattr(config, name)})

    def validate(self, where: str = "metrics") -> None:
        lookup({name: name for name in FID_FEATURES}, self.fid_features, f"{where}.fid_features value")
        lookup(QUALITY_BACKENDS, self.fid_backend, f"{where}.fid_backend value")
        lookup({name: name for name in UTILITY_TARGETS}, self.utility_target, f"{where}.utility_target value")
        for name in self.epsilon_learners:
            lookup(LEARNERS, name, f"{where}.epsilon_learners value")
        for name in ("kid_subsets", "feature_batch_size"):
            if getattr(self, name) < 1:
                raise FairbenchError(f"{where}.{name} must be positive, got {getattr(self, name)}")
        if self.kid_subset_size < 2:
            raise FairbenchError(f"{where}.kid_subset_size must be at least 2, got {self.kid_subset_size}")


def setup_features(setup, *, device: str | torch.device = "cpu", batch_size: int = 256) -> FeatureExtractor:
    """``Setup.features`` as an extractor named ``Setup.feature_name``."""
    return FeatureExtractor(setup.feature_name, setup.features, device, batch_size)


def _is_image(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[0] in (1, 3)


def quality_extractor(setup, options: SuiteOptions, *, device: str | torch.device = "cpu") -> FeatureExtractor:
    """The feature extractor behind FID/KID for `options.fid_features` (see `SuiteOptions`)."""
    batch = options.feature_batch_size
    choice = options.fid_features
    if choice == "raw":
        return raw_features(device=device, batch_size=batch)
    if choice == "inception" or (choice == "auto" and _is_image(tuple(setup.model.sample_shape)) and find_inception()):
        return inception_features(device=device, batch_size=min(batch, 64))
    return setup_features(setup, device=device, batch_size=batch)


def _batched(fn, samples: torch.Tensor, *, device, batch_size: int) -> np.ndarray:
    return FeatureExtractor("", fn, device, batch_size)(samples).numpy()


def evaluate(
    samples: torch.Tensor,
    requested,
    setup,
    *,
    seed: int,
    config: Any = None,
    final=None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """The metrics of one run's `samples` (``[N, *sample_shape]``, requested values `requested`).

    `config`: a `SuiteOptions` or any object with some of its fields (the ``[metrics]`` spec).
    `final`: the value whose details each sample ends with (`SampleOutput.final`), used as
    the label when ``utility_target = "sensitive"``. `device`: where extractors and judges run.
    """
    options = SuiteOptions.from_config(config)
    options.validate()
    batch = options.feature_batch_size
    names = tuple(setup.model.attribute_names)
    k = len(names)
    requested = np.asarray(torch.as_tensor(requested).cpu())

    features = setup_features(setup, device=device, batch_size=batch)
    sample_features = features(samples).numpy()
    spaces = {setup.feature_name: sample_features}
    if raw_space_helps(setup.feature_name, tuple(samples.shape[1:])):
        spaces["raw"] = raw_features(device=device, batch_size=batch)(samples).numpy()
    estimate = epsilon_fairness(
        spaces, requested,
        learners=tuple(options.epsilon_learners), folds=options.epsilon_folds, repeats=options.epsilon_repeats,
        subsamples=options.epsilon_subsamples,
        permutations=options.epsilon_permutations, confidence=options.confidence, bootstrap=options.bootstrap, seed=seed,
    )
    linear = epsilon_linear(
        sample_features, requested, folds=options.epsilon_folds, confidence=options.confidence,
        bootstrap=options.bootstrap, seed=seed,
    )
    metrics: dict[str, Any] = {
        "epsilon": estimate.value, "epsilon_ci": list(estimate.interval), "epsilon_p_value": estimate.p_value,
        "epsilon_learner": estimate.learner, "epsilon_feature_space": estimate.feature_space,
        "epsilon_linear": linear.value, "epsilon_linear_ci": list(linear.interval),
    }

    if setup.judge is not None:
        log_probs = _batched(setup.judge, samples, device=device, batch_size=batch)
        if log_probs.shape[1] != k:
            raise ValueError(f"the judge returns {log_probs.shape[1]} values per sample, the model has {k}")
        metrics.update(balance_metrics(log_probs, requested, names))

    real = setup.real
    if real is None:
        return metrics
    metrics.update(quality_metrics(
        samples, requested, real.samples, quality_extractor(setup, options, device=device),
        value_names=names, backend=options.fid_backend,
        kid_subsets=options.kid_subsets, kid_subset_size=options.kid_subset_size, seed=seed,
    ))

    labels = test_labels = None
    if options.utility_target == "sensitive" and final is not None:
        labels, test_labels = np.asarray(torch.as_tensor(final).cpu()), real.sensitive
    elif options.utility_target == "target" and setup.target_judge is not None and real.target is not None:
        labels = _batched(setup.target_judge, samples, device=device, batch_size=batch).argmax(axis=1)
        test_labels = real.target
    if labels is not None:
        result = train_synthetic_test_real(
            sample_features, labels, features(real.samples).numpy(), np.asarray(test_labels), np.asarray(real.sensitive),
            sensitive_names=names,
        )
        metrics.update(result.as_metrics())
    return metrics
