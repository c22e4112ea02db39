"""Model kinds: each parses its own ``[model]`` table and builds a `Setup` for the runner.

``MODEL_KINDS`` maps the ``kind`` key to the spec dataclass of that kind; each spec lives
beside its model (`gaussian.GaussianSpec`, `unet.UNetSpec`, the text-to-image spec). The
image and text-to-image kinds register themselves when their module is imported.
"""

from __future__ import annotations

from ..tables import import_optional, parse_variant
from .base import Denoiser, GuidanceClassifier, RealData, Setup
from .gaussian import GaussianSpec


MODEL_KINDS: dict[str, type] = {"gaussian": GaussianSpec}


def register_model_kind(kind: str, spec: type) -> None:
    MODEL_KINDS[kind] = spec


def model_spec(table: dict):
    _load_optional_kinds()
    return parse_variant(table, MODEL_KINDS, key="kind", section="model", kind="model kind")


def _load_optional_kinds() -> None:
    """Image and text-to-image kinds live in their own modules; import them on first use."""
    import_optional("fairbench.models.unet", "fairbench.models.unconditional", "fairbench.models.text_to_image")


__all__ = ["MODEL_KINDS", "Denoiser", "GaussianSpec", "GuidanceClassifier", "RealData", "Setup", "model_spec", "register_model_kind"]
