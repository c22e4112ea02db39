"""The text-to-image model: a pipeline, its prompt-embedding table, and a `Denoiser` view on latents.

The condition is the prompt embedding: value ``a`` of the sensitive attribute is the prompt
``prompts[a]``, and a method's per-sample mixture ``w`` ([B, k]) conditions on
``sum_a w_a E[prompts[a]]`` (for SDXL, the same mixture of the pooled embedding too).
`TextToImageModel.eps` is the UNet's classifier-free-guided prediction under that mixture, so
the shared sampling loop and both tau searches run on latents unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...errors import FairbenchError, lookup
from ...schedulers import BETA_SCHEDULES
from ..base import Capabilities, as_labels
from .pipelines import PIPELINE_FAMILIES

DECODE_BATCH = 16


class TextToImageModel:
    """A diffusers text-to-image pipeline with one prompt per attribute value.

    ``conditions[name]`` holds one row per prompt (k attribute values, then the optional
    neutral prompt at row k, for methods that need a null condition); ``negative[name]``
    the single row of the CFG's unconditional half (the negative prompt, or the empty one).
    """

    def __init__(
        self,
        pipe,
        *,
        prompts: Sequence[str],
        neutral_prompt: str | None = None,
        negative_prompt: str | None = None,
        guidance_scale: float = 7.5,
        height: int | None = None,
        width: int | None = None,
        attribute_names: Sequence[str] | None = None,
    ):
        self.pipe = pipe
        self.family = lookup(PIPELINE_FAMILIES, type(pipe).__name__, "text-to-image pipeline class")
        self.prompts = tuple(prompts)
        self.neutral_prompt = neutral_prompt
        # a neutral prompt gives the condition mixtures a column k; prompt tokens: `token_scale`
        self.capabilities = Capabilities(null_condition=neutral_prompt is not None, prompt_tokens=True)
        self.guidance_scale = float(guidance_scale)
        self.attribute_names = tuple(attribute_names) if attribute_names else self.prompts
        self.device = pipe.unet.device
        self.dtype = pipe.unet.dtype
        factor = pipe.vae_scale_factor
        default = pipe.unet.config.sample_size * factor
        self.height, self.width = height or default, width or default
        for name, value in (("height", self.height), ("width", self.width)):
            if value % factor:
                raise FairbenchError(f"model.{name} = {value} must be a multiple of the VAE's scale factor {factor}")
        self.sample_shape = (pipe.unet.config.in_channels, self.height // factor, self.width // factor)
        config = pipe.scheduler.config
        if config.get("trained_betas") is not None or config.get("beta_schedule") not in BETA_SCHEDULES:
            raise FairbenchError(
                f"the pipeline's scheduler uses beta_schedule {config.get('beta_schedule')!r}; "
                f"fairbench supports {', '.join(BETA_SCHEDULES)} (without trained_betas)"
            )
        self._noise = {
            "num_train_timesteps": int(config.num_train_timesteps), "beta_schedule": config.beta_schedule,
            "beta_start": float(config.beta_start), "beta_end": float(config.beta_end),
            "prediction_type": config.get("prediction_type", "epsilon"),
        }
        self.num_train_timesteps = self._noise["num_train_timesteps"]
        rows = list(self.prompts) + ([neutral_prompt] if neutral_prompt is not None else [])
        with torch.no_grad():
            self.conditions, self.negative = self.family.encode(pipe, rows, negative_prompt, self.device)

    @property
    def num_attributes(self) -> int:
        return len(self.prompts)

    @property
    def cfg(self) -> bool:
        """Whether the pipeline runs classifier-free guidance (its own rule: scale > 1)."""
        return self.guidance_scale > 1.0

    def scheduler_config(self) -> dict:
        return dict(self._noise)

    def condition(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """``sum_a w_a E[a]`` per sample, for every condition tensor; one-hot rows are looked up exactly."""
        rows = len(next(iter(self.conditions.values())))
        if weights.ndim != 2 or weights.shape[1] > rows:
            raise FairbenchError(
                f"condition weights of shape {tuple(weights.shape)} need at most {rows} columns "
                f"(the {self.num_attributes} prompts{' and the neutral prompt' if rows > self.num_attributes else ''})"
            )
        labels = as_labels(weights)
        if labels is not None:
            index = labels.to(self.device)
            return {name: table[index] for name, table in self.conditions.items()}
        w = weights.to(self.device, torch.float32)
        return {
            name: torch.tensordot(w, table[: w.shape[1]].float(), dims=([1], [0])).to(table.dtype)
            for name, table in self.conditions.items()
        }

    def attribute_tokens(self) -> torch.Tensor:
        """``[k, tokens]`` bool: the positions of ``prompts[a]``'s tokens that the neutral prompt lacks.

        These are what prompt queuing amplifies ("man" in "a color photo of the man" against
        "a color photo of the person"); special and padding tokens never count.
        """
        tokenizer = self.pipe.tokenizer
        ids = tokenizer(
            list(self.prompts) + [self.neutral_prompt or ""], padding="max_length",
            max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt",
        ).input_ids
        ignored = set(ids[-1].tolist()) | set(tokenizer.all_special_ids)
        return torch.tensor([[token not in ignored for token in row] for row in ids[:-1].tolist()])

    def token_scale(self, weights: torch.Tensor, factor: float) -> torch.Tensor | None:
        """Cross-attention factors ``[B, tokens]``: `factor` on the attribute tokens of each row's value.

        Rows conditioned on one attribute prompt get `factor` at that prompt's attribute
        tokens, every other entry 1; None when nothing is amplified (the plain computation).
        """
        labels = as_labels(weights)
        if factor == 1.0 or labels is None or not (labels < self.num_attributes).any():
            return None
        tokens = self.attribute_tokens().to(self.device)
        chosen = torch.zeros(len(labels), tokens.shape[1], dtype=torch.bool, device=self.device)
        attribute = labels < self.num_attributes
        chosen[attribute] = tokens[labels[attribute].to(self.device)]
        return torch.where(chosen, float(factor), 1.0).to(self.dtype)

    def negative_rows(self, batch: int) -> dict[str, torch.Tensor]:
        return {name: row.expand(batch, *row.shape[1:]).contiguous() for name, row in self.negative.items()}

    def eps(self, x: torch.Tensor, t: int, weights: torch.Tensor) -> torch.Tensor:
        """The UNet's (CFG) noise prediction on latents `x` (the scaled model input) at timestep `t`.

        ``eps_u + g (eps_c - eps_u)`` with ``eps_c`` under the mixed prompt embedding ``weights @ E``
        and ``eps_u`` under the negative prompt, computed in one batched UNet call, exactly as
        the pipeline computes it; plain ``eps_c`` when ``guidance_scale <= 1``.
        """
        batch = len(x)
        x = x.to(self.device, self.dtype)
        cond = self.condition(weights)
        if self.cfg:
            negative = self.negative_rows(batch)
            cond = {name: torch.cat([negative[name], value]) for name, value in cond.items()}
            x = torch.cat([x, x])
        with torch.no_grad():
            out = self.pipe.unet(x, t, **self.family.unet_kwargs(self, cond, len(x)), return_dict=False)[0]
        if not self.cfg:
            return out
        uncond, text = out.chunk(2)
        return uncond + self.guidance_scale * (text - uncond)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [-1, 1] with the pipeline's VAE (float32, on the CPU)."""
        vae = self.pipe.vae
        upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
        if upcast:
            vae.to(torch.float32)
        mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
        images = []
        try:
            for lo in range(0, len(latents), DECODE_BATCH):
                z = latents[lo : lo + DECODE_BATCH].to(self.device, vae.dtype)
                if mean is not None and std is not None:
                    shape = (1, -1, 1, 1)
                    z = z * torch.tensor(std).view(shape).to(z) / vae.config.scaling_factor + torch.tensor(mean).view(shape).to(z)
                else:
                    z = z / vae.config.scaling_factor
                with torch.no_grad():
                    images.append(vae.decode(z, return_dict=False)[0].float().clamp(-1, 1).cpu())
        finally:
            if upcast:
                vae.to(torch.float16)
        return torch.cat(images)
