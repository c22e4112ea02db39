"""Tiny Stable Diffusion pipelines and a tiny CLIP judge, built locally from real classes.

Nothing is downloaded: the tokenizer is loaded with ``from_pretrained`` from a hand-written
``vocab.json`` / ``merges.txt``, every network is a real diffusers / transformers class at a
tiny size with seeded random weights, and each pipeline is written with ``save_pretrained``
so tests load it through the ``text_to_image`` model kind (the users' path).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ("a", "color", "photo", "of", "the", "man", "woman", "person", "blurry", "cartoon")
MAX_TOKENS = 12  # tokenizer model_max_length: short sequences keep the text encoder cheap


def write_tokenizer_files(folder: Path) -> Path:
    """A CLIP BPE vocabulary: single characters, plus merges that build each word of WORDS."""
    folder.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["<|startoftext|>", "<|endoftext|>"] + letters + [f"{c}</w>" for c in letters]
    merges = []
    for word in WORDS:
        if len(word) < 2:
            continue
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        merged = symbols[0]
        for symbol in symbols[1:]:
            merges.append(f"{merged} {symbol}")
            merged += symbol
            if merged not in vocab:
                vocab.append(merged)
    merges = list(dict.fromkeys(merges))
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder


def tiny_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(write_tokenizer_files(folder)), model_max_length=MAX_TOKENS)


def _text_config(tokenizer, hidden: int = 16, projection: int = 8):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=MAX_TOKENS, projection_dim=projection,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


def _vae():
    from diffusers import AutoencoderKL

    # Two blocks: images are 2x the latent size (vae_scale_factor = 2).
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4, sample_size=16,
    )


def _scheduler():
    from diffusers import DDIMScheduler

    # Stable Diffusion v1.5's noise schedule (the kind replaces the sampler, keeping the schedule).
    return DDIMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )


def build_tiny_sd(folder: Path, *, seed: int = 0) -> Path:
    """A ``StableDiffusionPipeline`` with 8x8x4 latents and 16x16 images, saved to `folder`."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(folder / "_tokenizer_source")
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4,
    )
    pipe = StableDiffusionPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config(tokenizer)), tokenizer=tokenizer, unet=unet,
        scheduler=_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder / "pipeline"))
    return folder / "pipeline"


def build_tiny_sdxl(folder: Path, *, seed: int = 0) -> Path:
    """A ``StableDiffusionXLPipeline`` (two text encoders, pooled embeddings, size conditioning)."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(folder / "_tokenizer_source")
    projection = 8
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=4, transformer_layers_per_block=1,
        addition_embed_type="text_time", addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=projection + 6 * 4,
    )
    pipe = StableDiffusionXLPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config(tokenizer)), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(_text_config(tokenizer, projection=projection)),
        tokenizer_2=tokenizer, unet=unet, scheduler=_scheduler(), force_zeros_for_empty_prompt=True,
    )
    pipe.save_pretrained(str(folder / "pipeline"))
    return folder / "pipeline"


def build_tiny_clip(folder: Path, *, seed: int = 0, image_size: int = 16) -> Path:
    """A ``CLIPModel`` with its processor (tokenizer + image processor), saved to `folder`."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPVisionConfig

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(folder / "_tokenizer_source")
    vision = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=image_size, patch_size=8, projection_dim=8,
    )
    config = CLIPConfig(text_config=_text_config(tokenizer).to_dict(), vision_config=vision.to_dict(), projection_dim=8)
    model = CLIPModel(config)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
    )
    model.save_pretrained(str(folder / "clip"))
    processor.save_pretrained(str(folder / "clip"))
    return folder / "clip"
