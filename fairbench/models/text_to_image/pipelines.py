"""Loading a diffusers text-to-image pipeline, and how each pipeline class takes its text condition.

A *family* knows, for one pipeline class, how to encode prompts into condition tensors, which
keyword arguments carry them into ``__call__`` and into the UNet, and under which names the
``callback_on_step_end`` hook sees them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from ...errors import FairbenchError, lookup


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class StableDiffusionFamily:
    """``StableDiffusionPipeline``: one text encoder, condition ``prompt_embeds`` [B, L, D]."""

    callback_tensors = {"prompt_embeds": "prompt_embeds"}  # condition -> callback tensor

    def encode(self, pipe, prompts: list[str], negative: str | None, device) -> tuple[dict, dict]:
        cond, neg = pipe.encode_prompt(
            prompts, device, 1, True, negative_prompt=None if negative is None else [negative] * len(prompts)
        )
        return {"prompt_embeds": cond}, {"prompt_embeds": neg[:1]}

    def call_kwargs(self, cond: dict, neg: dict) -> dict:
        return {"prompt_embeds": cond["prompt_embeds"], "negative_prompt_embeds": neg["prompt_embeds"]}

    def unet_kwargs(self, model, cond: dict, rows: int) -> dict:
        return {"encoder_hidden_states": cond["prompt_embeds"]}


class StableDiffusionXLFamily:
    """``StableDiffusionXLPipeline``: token embeddings of two encoders plus a pooled embedding.

    Both are mixed with the same weights; the size conditioning (``time_ids``) is the
    pipeline's default (original and target size = the output size, no crop).
    """

    callback_tensors = {"prompt_embeds": "prompt_embeds", "pooled_prompt_embeds": "add_text_embeds"}

    def encode(self, pipe, prompts: list[str], negative: str | None, device) -> tuple[dict, dict]:
        cond, neg, pooled, neg_pooled = pipe.encode_prompt(
            prompt=prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True,
            negative_prompt=None if negative is None else [negative] * len(prompts),
        )
        return (
            {"prompt_embeds": cond, "pooled_prompt_embeds": pooled},
            {"prompt_embeds": neg[:1], "pooled_prompt_embeds": neg_pooled[:1]},
        )

    def call_kwargs(self, cond: dict, neg: dict) -> dict:
        return {
            "prompt_embeds": cond["prompt_embeds"], "negative_prompt_embeds": neg["prompt_embeds"],
            "pooled_prompt_embeds": cond["pooled_prompt_embeds"],
            "negative_pooled_prompt_embeds": neg["pooled_prompt_embeds"],
        }

    def unet_kwargs(self, model, cond: dict, rows: int) -> dict:
        pipe = model.pipe
        size = (model.height, model.width)
        projection = (
            pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None
            else int(cond["pooled_prompt_embeds"].shape[-1])
        )
        time_ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=model.dtype, text_encoder_projection_dim=projection)
        return {
            "encoder_hidden_states": cond["prompt_embeds"],
            "added_cond_kwargs": {"text_embeds": cond["pooled_prompt_embeds"], "time_ids": time_ids.to(model.device).repeat(rows, 1)},
        }


PIPELINE_FAMILIES = {
    "StableDiffusionPipeline": StableDiffusionFamily(),
    "StableDiffusionXLPipeline": StableDiffusionXLFamily(),
}


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """``auto``: float16 on CUDA, float32 on the CPU; half precision is refused on the CPU."""
    if name == "auto":
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    dtype = lookup(DTYPES, name, "model.dtype")
    if dtype != torch.float32 and not str(device).startswith("cuda"):
        raise FairbenchError(f"model.dtype = {name!r} needs a CUDA device; on {device!r} use 'float32' or 'auto'")
    return dtype


def load_pipeline(path: str, *, dtype: torch.dtype, device: str, safety_checker: bool = True):
    """A diffusers text-to-image pipeline from a local folder or the local Hugging Face cache.

    Never reaches the network (``local_files_only``): an offline run with nothing local fails
    at once with one line saying how to provide the weights.
    """
    local = Path(path).expanduser()
    how = (
        "save it where the Hub is reachable with DiffusionPipeline.from_pretrained(<hub id>).save_pretrained(<folder>) "
        "and set model.path to that folder, or put it in the local Hugging Face cache"
    )
    if local.exists() and not (local / "model_index.json").is_file():
        raise FairbenchError(f"model.path {path!r} has no model_index.json, so it is not a saved pipeline: {how}")
    try:
        with warnings.catch_warnings():
            # Newer diffusers rename torch_dtype to dtype; torch_dtype works in every supported version.
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = DiffusionPipeline.from_pretrained(
                str(local) if local.exists() else path, torch_dtype=dtype, local_files_only=True
            )
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FairbenchError(f"cannot load text-to-image pipeline {path!r} without the network ({first[:160]}): {how}") from None
    lookup(PIPELINE_FAMILIES, type(pipe).__name__, "text-to-image pipeline class")
    if getattr(pipe.unet.config, "time_cond_proj_dim", None) is not None:
        raise FairbenchError(f"pipeline {path!r} has a guidance-distilled UNet (time_cond_proj_dim); it is not supported")
    if not safety_checker and getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
