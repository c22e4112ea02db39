"""Judges: attribute classifiers for generated images (pluggable; never the guidance classifier).

``JUDGES`` maps ``[model] judge`` to a builder ``build(spec, device=)`` returning an object with
``log_prob(images)`` ([N, k]) and ``features(images)``; ``"none"`` means no judge (epsilon
then uses `pixel_features`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ...errors import FairbenchError


PIXEL_FEATURE_SIZE = 16  # epsilon features without a judge: images average-pooled to at most 16 x 16


class ClipZeroShotJudge:
    """CLIP zero-shot attribute classifier (Radford et al. 2021).

    ``log p(a | image) = log_softmax_a(s * cos(f_img(image), f_txt(prompt_a)))`` with CLIP's
    learned logit scale ``s``; images are preprocessed by the checkpoint's own image processor.
    `features` are the L2-normalised image embeddings ``f_img / ||f_img||``.
    """

    def __init__(self, path: str, prompts: Sequence[str], *, device: str | torch.device = "cpu", batch_size: int = 64):
        from transformers import CLIPModel, CLIPProcessor

        try:
            self.model = CLIPModel.from_pretrained(path, local_files_only=True).to(device).eval()
            self.processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise FairbenchError(
                f"CLIP judge weights {path!r} are not available locally ({type(exc).__name__}): save a CLIPModel and its "
                "CLIPProcessor with save_pretrained(<folder>) and set model.judge_path to that folder, "
                "or set model.judge = 'none' (epsilon then uses downsampled pixels)"
            ) from None
        self.name = f"clip:{path}"
        self.device = device
        self.batch_size = batch_size
        with torch.no_grad():
            tokens = self.processor.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt").to(device)
            self.text = _normalise(_pooled(self.model.get_text_features(**tokens)))

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for lo in range(0, len(images), self.batch_size):
            chunk = ((images[lo : lo + self.batch_size].float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0)
            pixels = self.processor.image_processor(images=list(chunk), do_rescale=False, return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                out.append(_normalise(_pooled(self.model.get_image_features(pixel_values=pixels.to(self.device)))))
        return torch.cat(out)

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = self.model.logit_scale.exp() * self._embed(images) @ self.text.T
        return torch.log_softmax(logits, dim=1).cpu()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self._embed(images).cpu()


def _pooled(output) -> torch.Tensor:
    # transformers < 5 returns the projected embedding; >= 5 a model output holding it.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _clip_judge(spec, *, device: str) -> ClipZeroShotJudge:
    return ClipZeroShotJudge(spec.judge_path, spec.judge_prompts or spec.prompts, device=device)


JUDGES: dict[str, Callable[..., Any] | None] = {"clip": _clip_judge, "none": None}


def register_judge(name: str, build: Callable[..., Any]) -> None:
    """``build(spec, device=)`` returns an object with ``log_prob(images)`` ([N, k]) and ``features(images)``."""
    JUDGES[name] = build


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """Images average-pooled to at most ``PIXEL_FEATURE_SIZE`` per side, flattened."""
    size = min(PIXEL_FEATURE_SIZE, images.shape[-1], images.shape[-2])
    return torch.nn.functional.adaptive_avg_pool2d(images.float(), size).reshape(len(images), -1)
