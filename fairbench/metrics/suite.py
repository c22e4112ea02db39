"""One entry point for the measurements of a run: `evaluate` computes whatever the setup allows.

- always: ``epsilon``, ``epsilon_ci``, ``epsilon_p_value``, ``epsilon_learner``,
  ``epsilon_feature_space``, ``epsilon_lower`` (feature spaces: ``Setup.features`` and, when low-dimensional, the
  raw sample values) and ``epsilon_linear``, ``epsilon_linear_ci`` (``Setup.features`` only);
- with ``Setup.judge``: ``fd``, ``kl_uniform`` (worst requested group), ``fd_worst_group``,
  ``fd_pooled``, ``kl_uniform_pooled``, ``judged_distribution``; with ``Setup.real`` too, the
  judge's error on it (``judge_accuracy_by_class``) and the corrected balance
  (``judged_distribution_corrected``, ``fd_corrected``);
- with ``Setup.real``: ``fid``, ``kid``, ``fid_features`` and per carried value
  ``fid_by_group``, ``kid_by_group``, ``quality_groups``;
- with ``Setup.real`` and labels for the target (``Setup.target_judge`` and
  ``Setup.real.target``; or ``utility_target = "sensitive"`` and the samples' final
  condition): ``utility_accuracy``, ``utility_accuracy_by_group``, ``utility_dp_difference``,
  ``utility_eo_difference``, and with ``Setup.real.train`` the reference
  ``utility_accuracy_real`` and ``utility_fraction``;
- with ``Setup.target_judge`` and ``Setup.real.target``: bias inheritance,
  ``target_distribution_by_requested``, ``target_distribution_by_final``, ``target_gap``,
  ``target_gap_ci``, ``target_judge_accuracy``, and the real references
  ``target_gap_heldout`` (``Setup.real``) and ``target_gap_train`` (``Setup.real.train``);
- when the model's attribute is a product of axes (``attribute_axes``): the flat values above
  are the joint ones, and per axis ``epsilon_by_attribute``, ``epsilon_ci_by_attribute``,
  ``epsilon_p_value_by_attribute`` and, with a judge, ``fd_by_attribute`` and the other
  balance values ``*_by_attribute`` (`fairbench.metrics.axes`).

Metrics whose inputs are absent are left out of the result. Cost metrics are measured
around sampling by the runner (`fairbench.metrics.cost`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..errors import FairbenchError, lookup
from ..progress import progress
from ..tables import positive
from .axes import balance_by_attribute, epsilon_by_attribute
from .balance import balance_metrics, confusion_matrix, per_class_accuracy
from .fairness import DEFAULT_LEARNERS, LEARNERS, MAX_TRAIN, EpsilonEstimate, epsilon_fairness, epsilon_linear, epsilon_lower, raw_space_helps
from .features import FeatureExtractor, find_inception, inception_features, raw_features
from .quality import QUALITY_BACKENDS, FeatureStats, quality_metrics
from .inheritance import inheritance_metrics, real_target_gap
from .utility import sample_values, train_synthetic_test_real

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
    epsilon_subsamples: int = 0
    epsilon_max_train: int = MAX_TRAIN
    epsilon_permutations: int = 1000
    confidence: float = 0.95
    bootstrap: int = 1000
    fid_features: FidFeatures = "auto"
    fid_backend: Literal["clean-fid", "torchmetrics"] = "clean-fid"
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    utility_target: Literal["target", "sensitive"] = "target"
    feature_batch_size: int = 256
    # The distribution each requested group should have (k proportions); None: uniform.
    balance_target: tuple[float, ...] | None = None

    @classmethod
    def from_config(cls, config: "SuiteOptions | None" = None) -> "SuiteOptions":
        """The ``[metrics]`` settings of a run, defaults when none are given."""
        return cls() if config is None else config

    def validate(self, where: str = "metrics") -> None:
        """Every check on ``[metrics]`` settings, with the config location in each message."""
        lookup({name: name for name in FID_FEATURES}, self.fid_features, f"{where}.fid_features value")
        lookup(QUALITY_BACKENDS, self.fid_backend, f"{where}.fid_backend value")
        lookup({name: name for name in UTILITY_TARGETS}, self.utility_target, f"{where}.utility_target value")
        for name in self.epsilon_learners:
            lookup(LEARNERS, name, f"{where}.epsilon_learners value")
        for name in ("kid_subsets", "feature_batch_size", "epsilon_repeats", "bootstrap"):
            positive(getattr(self, name), f"{where}.{name}")
        if self.epsilon_max_train < 2 * self.epsilon_folds:
            raise FairbenchError(f"{where}.epsilon_max_train must be at least twice epsilon_folds, got {self.epsilon_max_train}")
        if self.kid_subset_size < 2:
            raise FairbenchError(f"{where}.kid_subset_size must be at least 2, got {self.kid_subset_size}")
        if self.epsilon_folds < 3:
            raise FairbenchError(f"{where}.epsilon_folds must be at least 3, got {self.epsilon_folds}")
        for name in ("epsilon_subsamples", "epsilon_permutations"):
            if getattr(self, name) < 0:
                raise FairbenchError(f"{where}.{name} must be non-negative, got {getattr(self, name)}")
        if not 0.5 <= self.confidence < 1.0:
            raise FairbenchError(f"{where}.confidence must be in [0.5, 1), got {self.confidence}")


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


def epsilon_spaces(samples: torch.Tensor, setup, options: SuiteOptions, *, device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """The feature spaces epsilon searches: ``Setup.features``, and the raw values where they help."""
    batch = options.feature_batch_size
    spaces = {setup.feature_name: setup_features(setup, device=device, batch_size=batch)(samples).numpy()}
    if raw_space_helps(setup.feature_name, tuple(samples.shape[1:])):
        spaces["raw"] = raw_features(device=device, batch_size=batch)(samples).numpy()
    return spaces


def estimate_epsilon(spaces: dict[str, np.ndarray], requested, options: SuiteOptions, *, seed: int) -> EpsilonEstimate:
    """`epsilon_fairness` with the ``[metrics]`` settings in `options`."""
    return epsilon_fairness(
        spaces, np.asarray(requested),
        learners=tuple(options.epsilon_learners), folds=options.epsilon_folds, repeats=options.epsilon_repeats,
        subsamples=options.epsilon_subsamples,
        permutations=options.epsilon_permutations, confidence=options.confidence, bootstrap=options.bootstrap, seed=seed,
        max_train=options.epsilon_max_train,
    )


def evaluate(
    samples: torch.Tensor,
    requested,
    setup,
    *,
    seed: int,
    config: Any = None,
    final=None,
    device: str | torch.device = "cpu",
    evidence: dict[str, np.ndarray] | None = None,
    epsilon: tuple[dict[str, np.ndarray], EpsilonEstimate] | None = None,
) -> dict[str, Any]:
    """The metrics of one run's `samples` (``[N, *sample_shape]``, requested values `requested`).

    `config`: a `SuiteOptions` or any object with some of its fields (the ``[metrics]`` spec).
    `final`: the value whose details each sample ends with (`SampleOutput.final`; default
    `requested`): the value per-group quality compares with, a grouping of bias inheritance,
    and the label when ``utility_target = "sensitive"``. `device`: where extractors and judges run.
    `evidence`: a dict that receives the per-sample arrays the headline metrics are computed
    from (`fairbench.compare.EVIDENCE` lists them), so they can be recomputed on resampled indices.
    `epsilon`: the feature spaces and epsilon estimate of these samples under these options, when
    already computed (`epsilon_spaces`, `estimate_epsilon`).
    """
    options = SuiteOptions.from_config(config)
    options.validate()
    batch = options.feature_batch_size
    names = tuple(setup.model.attribute_names)
    k = len(names)
    requested = np.asarray(torch.as_tensor(requested).cpu())

    # stages: epsilon, balance (with a judge), quality and utility (with real data)
    bar = progress(total=1 + (setup.judge is not None) + 2 * (setup.real is not None), desc="measuring", unit="stage")
    if epsilon is None:
        spaces = epsilon_spaces(samples, setup, options, device=device)
        estimate = estimate_epsilon(spaces, requested, options, seed=seed)
    else:
        spaces, estimate = epsilon
    sample_features = spaces[setup.feature_name]
    lower = epsilon_lower(spaces, requested, learners=tuple(options.epsilon_learners), confidence=options.confidence,
                          seed=seed, max_train=options.epsilon_max_train)
    linear = epsilon_linear(
        sample_features, requested, folds=options.epsilon_folds, confidence=options.confidence,
        bootstrap=options.bootstrap, seed=seed,
    )
    metrics: dict[str, Any] = {
        "epsilon": estimate.value, "epsilon_ci": list(estimate.interval), "epsilon_p_value": estimate.p_value,
        "epsilon_learner": estimate.learner, "epsilon_feature_space": estimate.feature_space,
        "epsilon_lower": lower.value,
        "epsilon_linear": linear.value, "epsilon_linear_ci": list(linear.interval),
    }
    evidence = {} if evidence is None else evidence
    held_out = estimate.heldout  # its votes: the fraction of repeats whose prediction says pair[1] (NaN outside the pair)
    votes = np.full(len(requested), np.nan)
    votes[held_out.indices] = (held_out.predicted == held_out.pair[1]).mean(axis=0)
    evidence.update(requested=requested.astype(np.int64), epsilon_votes=votes,
                    epsilon_pair=np.asarray(estimate.pair, dtype=np.int64))
    axes = setup.model.capabilities.attribute_axes  # a product attribute: per-axis values too
    if axes is not None:
        metrics.update(epsilon_by_attribute(axes, spaces, requested, options=options, seed=seed))
    bar.update(1)

    real = setup.real
    final = requested if final is None else np.asarray(torch.as_tensor(final).cpu())
    evidence["final"] = np.asarray(final).astype(np.int64)
    if setup.judge is not None:
        log_probs = _batched(setup.judge, samples, device=device, batch_size=batch)
        if log_probs.shape[1] != k:
            raise ValueError(f"the judge returns {log_probs.shape[1]} values per sample, the model has {k}")
        confusion = None
        if real is not None:
            real_log_probs = _batched(setup.judge, real.samples, device=device, batch_size=batch)
            confusion = confusion_matrix(real_log_probs, np.asarray(real.sensitive), k)
            metrics["judge_accuracy_by_class"] = per_class_accuracy(confusion, names)
        metrics.update(balance_metrics(log_probs, requested, names, target=options.balance_target, confusion=confusion))
        evidence.update(judge_label=log_probs.argmax(axis=1).astype(np.int64),
                        balance_target=np.asarray(options.balance_target or np.full(k, 1.0 / k), dtype=np.float64))
        if axes is not None:
            metrics.update(balance_by_attribute(
                axes, log_probs, requested, target=options.balance_target,
                real_log_probs=None if real is None else real_log_probs, real_labels=None if real is None else real.sensitive,
            ))
        bar.update(1)

    if real is None:
        bar.close()
        return metrics
    extractor = quality_extractor(setup, options, device=device)
    metrics.update(quality_metrics(
        samples, requested, real.samples, extractor,
        value_names=names, backend=options.fid_backend,
        kid_subsets=options.kid_subsets, kid_subset_size=options.kid_subset_size, seed=seed,
        carried=final, real_labels=np.asarray(real.sensitive),
        generated_features=spaces.get(extractor.name),  # features are extracted once per job
    ))
    # what paired comparisons of FID resample: the samples' features, the real statistics fixed
    generated_features = spaces.get(extractor.name)
    real_stats = FeatureStats.of(extractor(real.samples))
    evidence.update(
        fid_features=(extractor(samples).numpy() if generated_features is None else generated_features).astype(np.float32),
        fid_real_mean=real_stats.mean, fid_real_cov=real_stats.cov,
    )
    bar.update(1)

    target_labels = None
    if setup.target_judge is not None and real.target is not None:
        target_labels = _batched(setup.target_judge, samples, device=device, batch_size=batch).argmax(axis=1)
        m = max(len(real.target_values), int(target_labels.max()) + 1, int(np.asarray(real.target).max()) + 1)
        real_target = np.asarray(real.target)
        real_judged = _batched(setup.target_judge, real.samples, device=device, batch_size=batch).argmax(axis=1)
        metrics["target_judge_accuracy"] = float(np.mean(real_judged == real_target))
        metrics.update(inheritance_metrics(
            target_labels, requested, final, names, real.target_values or [str(c) for c in range(m)],
            bootstrap=options.bootstrap, confidence=options.confidence, seed=seed,
        ))
        evidence.update(target_label=target_labels.astype(np.int64), target_classes=np.int64(m))
        metrics["target_gap_heldout"] = real_target_gap(real_target, np.asarray(real.sensitive), k, m)
        if real.train is not None and real.train.target is not None:
            metrics["target_gap_train"] = real_target_gap(np.asarray(real.train.target), np.asarray(real.train.sensitive), k, m)

    labels = test_labels = train_labels = None
    if options.utility_target == "sensitive":
        labels, test_labels = final, real.sensitive
        train_labels = real.train.sensitive if real.train is not None else None
    elif target_labels is not None:
        labels, test_labels = target_labels, real.target
        train_labels = real.train.target if real.train is not None else None
    if labels is not None:
        def values(x):
            return _batched(lambda b: torch.from_numpy(sample_values(b)), x, device="cpu", batch_size=batch)

        reference = None if train_labels is None else (values(real.train.samples), np.asarray(train_labels))
        result = train_synthetic_test_real(
            values(samples), labels, values(real.samples), np.asarray(test_labels), np.asarray(real.sensitive),
            sensitive_names=names, real_train=reference, seed=seed,
        )
        metrics.update(result.as_metrics())
        evidence["utility_correct"] = result.correct
        if result.correct_real is not None:
            evidence["utility_correct_real"] = result.correct_real
    bar.update(1)
    bar.close()
    return metrics
