"""Text-to-image: fair-sampling methods on diffusers Stable Diffusion pipelines.

The condition is the prompt embedding: value ``a`` of the sensitive attribute is the prompt
``prompts[a]`` ("a color photo of the man", "a color photo of the woman"), and a method's
per-sample mixture ``w`` ([B, k]) conditions on ``sum_a w_a E[prompts[a]]`` (for SDXL, the
same mixture of the pooled embedding too). Classifier-free guidance keeps its unconditional
half: ``eps = eps(x, t, E_neg) + g (eps(x, t, E_w) - eps(x, t, E_neg))``.

One module per concern:

- `pipelines`: loading a pipeline, and how each pipeline class takes its condition;
- `model`: `TextToImageModel`, the prompt-embedding table and a `Denoiser` on latents;
- `sampling`: `sample_pipeline`, methods run through the pipeline's own ``__call__`` with
  ``callback_on_step_end`` (and a UNet hook for classifier guidance);
- `guidance`: the noise-aware guidance classifier on latents (`fairbench.classifiers` and
  `fairbench.train`'s training loop);
- `judges`: the CLIP zero-shot judge and the judge registry;
- this module: the ``kind = "text_to_image"`` config table that builds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ...errors import FairbenchError, lookup
from .. import Setup, register_model_kind
from ..base import ModelKind
from .guidance import GUIDANCE_DATA_STEPS, guidance_from_own_samples, train_latent_classifier
from .judges import JUDGES, PIXEL_FEATURE_SIZE, ClipZeroShotJudge, pixel_features, register_judge
from .model import TextToImageModel
from .pipelines import DTYPES, PIPELINE_FAMILIES, StableDiffusionFamily, StableDiffusionXLFamily, load_pipeline, resolve_dtype
from .sampling import sample_pipeline

__all__ = [
    "DTYPES", "GUIDANCE_DATA_STEPS", "JUDGES", "PIPELINE_FAMILIES", "PIXEL_FEATURE_SIZE", "ClipZeroShotJudge",
    "StableDiffusionFamily", "StableDiffusionXLFamily", "TextToImageModel", "TextToImageSpec", "guidance_from_own_samples",
    "load_pipeline", "pixel_features", "register_judge", "resolve_dtype", "sample_pipeline", "train_latent_classifier",
]


@dataclass(frozen=True)
class TextToImageSpec(ModelKind):
    """``kind = "text_to_image"``: a diffusers pipeline and one prompt per attribute value.

    ``guidance_train_samples > 0`` trains the classifier-guidance classifier at build time on
    that many conditional samples per prompt (`guidance_from_own_samples`); with 0 the model
    has none and ``classifier_guidance`` is refused.
    """

    kind: Literal["text_to_image"]
    path: str
    prompts: list[str]
    neutral_prompt: str | None = None
    negative_prompt: str | None = None
    guidance_scale: float = 7.5
    height: int | None = None
    width: int | None = None
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    attribute_names: list[str] | None = None
    safety_checker: bool = True
    judge: str = "clip"
    judge_path: str = "openai/clip-vit-large-patch14"
    judge_prompts: list[str] | None = None
    guidance_train_samples: int = 0
    guidance_train_iters: int = 500

    def validate(self, where: str) -> None:
        if len(self.prompts) < 2 or any(not p.strip() for p in self.prompts) or len(set(self.prompts)) != len(self.prompts):
            raise FairbenchError(f"{where}.prompts must be at least 2 distinct, non-empty prompts (one per attribute value), got {self.prompts}")
        for key in ("attribute_names", "judge_prompts"):
            value = getattr(self, key)
            if value is not None and len(value) != len(self.prompts):
                raise FairbenchError(f"{where}.{key} must have one entry per prompt ({len(self.prompts)}), got {len(value)}")
        if self.guidance_scale < 0:
            raise FairbenchError(f"{where}.guidance_scale must be non-negative, got {self.guidance_scale}")
        for key in ("height", "width"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise FairbenchError(f"{where}.{key} must be positive, got {value}")
        lookup(JUDGES, self.judge, f"{where}.judge")
        if self.guidance_train_samples < 0:
            raise FairbenchError(f"{where}.guidance_train_samples must be non-negative, got {self.guidance_train_samples}")
        if self.guidance_train_iters <= 0:
            raise FairbenchError(f"{where}.guidance_train_iters must be positive, got {self.guidance_train_iters}")

    def build(self, *, device: str = "cpu", dataset: dict | None = None, **_: Any) -> Setup:
        dtype = resolve_dtype(self.dtype, device)
        pipe = load_pipeline(self.path, dtype=dtype, device=device, safety_checker=self.safety_checker)
        model = TextToImageModel(
            pipe, prompts=self.prompts, neutral_prompt=self.neutral_prompt, negative_prompt=self.negative_prompt,
            guidance_scale=self.guidance_scale, height=self.height, width=self.width, attribute_names=self.attribute_names,
        )
        build_judge = JUDGES[self.judge]
        judge = build_judge(self, device=device) if build_judge is not None else None
        guidance = None
        if self.guidance_train_samples:
            guidance = guidance_from_own_samples(model, samples_per_value=self.guidance_train_samples, iters=self.guidance_train_iters)
        balance_features = None
        if judge is not None:
            # Direct tau search on latents: balance the judge's attribute probabilities of the decoded images.
            balance_features = lambda latents: judge.log_prob(model.decode(latents)).exp()  # noqa: E731
        return Setup(
            model=model,
            guidance=guidance,
            features=judge.features if judge is not None else pixel_features,
            feature_name=f"{judge.name} image embeddings" if judge is not None else f"pixels pooled to {PIXEL_FEATURE_SIZE}x{PIXEL_FEATURE_SIZE}",
            sample=sample_pipeline,
            judge=judge.log_prob if judge is not None else None,
            balance_features=balance_features,
            decode=model.decode,
        )


register_model_kind("text_to_image", TextToImageSpec)
