"""Model kinds: each parses its own ``[model]`` table and builds a `Setup` for the runner.

``MODEL_KINDS`` maps the ``kind`` key to the spec dataclass of that kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..errors import FairbenchError, lookup
from ..schedulers import BETA_SCHEDULES
from ..tables import import_optional, parse_variant
from .base import Denoiser, GuidanceClassifier


@dataclass
class RealData:
    """Real samples for reference metrics (FID against real data, train-synthetic-test-real)."""

    samples: torch.Tensor  # [N, *sample_shape], same space as the generated samples
    sensitive: torch.Tensor  # [N] sensitive attribute codes
    target: torch.Tensor | None = None  # [N] target attribute codes (utility), if any
    target_values: tuple[str, ...] = ()


@dataclass
class Setup:
    """Everything a benchmark needs from a model kind, built once per run."""

    model: Denoiser
    guidance: GuidanceClassifier | None = None
    # Features the epsilon estimator classifies (raw values, or a judge's features for images).
    features: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda x: x.reshape(len(x), -1))
    feature_name: str = "raw"
    # Extra exact metrics for a run, e.g. the closed-form TV on the Gaussian model.
    exact_metrics: Callable[..., dict[str, Any]] | None = None
    # A kind with its own sampling path (text-to-image pipelines) provides it here, with the
    # signature of `fairbench.sampling.sample`; None means the shared loop.
    sample: Callable[..., Any] | None = None
    # Image kinds: real reference data, and the judge (trained on real data, never the
    # guidance classifier): samples -> log-probabilities over the k sensitive values.
    real: RealData | None = None
    judge: Callable[[torch.Tensor], torch.Tensor] | None = None
    # samples -> log-probabilities over the target attribute (labels for the utility metrics).
    target_judge: Callable[[torch.Tensor], torch.Tensor] | None = None
    # samples -> per-sample attribute probabilities [B, k], balanced by the direct tau search
    # (the judge's probabilities; None: the search balances the samples' raw values).
    balance_features: Callable[[torch.Tensor], torch.Tensor] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GaussianSpec:
    """``kind = "gaussian"``: the analytic model of METHOD.md."""

    kind: Literal["gaussian"]
    means: list[list[float]]
    std: float = 0.5
    beta_schedule: str = "linear"
    num_train_timesteps: int = 1000
    attribute_names: list[str] | None = None
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

    def build(self, *, device: str = "cpu", dataset: dict | None = None, **_: Any) -> Setup:
        from .gaussian import GaussianModel, exact_run_metrics

        model = GaussianModel(
            self.means,
            self.std,
            beta_schedule=self.beta_schedule,
            num_train_timesteps=self.num_train_timesteps,
            attribute_names=tuple(self.attribute_names) if self.attribute_names else None,
        )
        # One fixed draw (seed 0), so every method and seed is compared with the same reference.
        labels = torch.arange(self.n_real) % model.num_attributes
        real = RealData(samples=model.sample_data(labels, torch.Generator().manual_seed(0)), sensitive=labels)
        return Setup(
            model=model,
            guidance=model.guidance_classifier(),
            exact_metrics=lambda **kw: exact_run_metrics(model, **kw),
            real=real,
        )


MODEL_KINDS: dict[str, type] = {"gaussian": GaussianSpec}


def register_model_kind(kind: str, spec: type) -> None:
    MODEL_KINDS[kind] = spec


def model_spec(table: dict):
    _load_optional_kinds()
    return parse_variant(table, MODEL_KINDS, key="kind", section="model", kind="model kind")


def _load_optional_kinds() -> None:
    """Image and text-to-image kinds live in their own modules; import them on first use."""
    import_optional("fairbench.models.unet", "fairbench.models.text_to_image")
