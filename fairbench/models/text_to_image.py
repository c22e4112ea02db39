"""Text-to-image: fair-sampling methods on diffusers Stable Diffusion pipelines.

The condition is the prompt embedding: value ``a`` of the sensitive attribute is the prompt
``prompts[a]`` ("a color photo of the man", "a color photo of the woman"), and a method's
per-sample mixture ``w`` ([B, k]) conditions on ``sum_a w_a E[prompts[a]]`` (for SDXL, the
same mixture of the pooled embedding too). Classifier-free guidance keeps its unconditional
half: ``eps = eps(x, t, E_neg) + g (eps(x, t, E_w) - eps(x, t, E_neg))``.

Sampling runs the pipeline's own ``__call__``; nothing of its loop is copied:

- The first visited timestep's condition is passed in as the initial ``prompt_embeds``.
- ``callback_on_step_end`` runs after step ``i`` (after ``scheduler.step``) and before the
  UNet call of step ``i + 1``; it returns the condition of timestep ``t_{i+1}``. Under CFG the
  pipeline holds ``cat([negative, conditional])`` and only the conditional half is replaced.
  Attribute switching thus swaps the prompt at the first step with ``t <= tau``, at no extra
  model evaluation.
- Classifier guidance: the callback cannot change the noise prediction of a step (it runs
  after the step has used it), and shifting the stepped latents instead is exact only for
  single-step schedulers. The correction is therefore applied where the prediction is made:
  a forward hook on the UNet adds ``delta = -w sqrt(1 - abar_t) grad_x sum_a (1/k) log
  p_phi(a | x_t, t)`` to both CFG halves of its output, so the guided prediction becomes
  ``eps_cfg + delta`` (CFG is affine: ``(u + d) + g((c + d) - (u + d)) = u + g(c - u) + d``), exactly
  the shared loop's ``ClassifierGuidance.correct`` for every scheduler. ``x_t`` is the
  UNet's (scaled) latent input and ``p_phi`` a noise-aware classifier on latents
  (`LatentClassifier`), a different network from the judge.

The kind also exposes the pipeline as a `Denoiser` on latents (`TextToImageModel.eps`, the
UNet's CFG prediction under mixed prompt embeddings), so the shared sampling loop and both
tau searches work on it unchanged; the pipeline is always run with fairbench's scheduler
(`fairbench.schedulers.make_scheduler` over the pipeline's own noise schedule), so both paths
visit the same timesteps.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import FairbenchError, NumericalFault, lookup
from ..noise import StepNoise, initial_noise
from ..sampling import SampleOutput, bind_step_noise
from ..schedulers import BETA_SCHEDULES, make_scheduler, visited_timesteps
from . import Setup, register_model_kind
from .base import as_labels

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
GUIDANCE_DATA_STEPS = 25  # DDIM steps of the conditional samples a guidance classifier learns from
PIXEL_FEATURE_SIZE = 16  # epsilon features without a judge: images average-pooled to at most 16 x 16
DECODE_BATCH = 16


# ---------------------------------------------------------------------------------------------
# Pipeline families: how one pipeline class takes its text condition.


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

    def unet_kwargs(self, model: "TextToImageModel", cond: dict, rows: int) -> dict:
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

    def unet_kwargs(self, model: "TextToImageModel", cond: dict, rows: int) -> dict:
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


# ---------------------------------------------------------------------------------------------
# Loading.


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
    from diffusers import DiffusionPipeline

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


# ---------------------------------------------------------------------------------------------
# The model: the pipeline, its prompt-embedding table, and a Denoiser view on latents.


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


# ---------------------------------------------------------------------------------------------
# Sampling through the pipeline.


class _UNetCalls:
    """Counts UNet forward calls (one per step per batch, whatever CFG does inside)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, module, args):
        self.calls += 1


def _guidance_hook(model: TextToImageModel, method, batch: int, counter: list[int]):
    """Forward hook adding the classifier-guidance correction to both CFG halves (module docstring)."""
    abar = model.pipe.scheduler.alphas_cumprod

    def hook(module, args, kwargs, output):
        x = args[0] if args else kwargs["sample"]
        t = int(args[1] if len(args) > 1 else kwargs["timestep"])
        sample = output[0] if isinstance(output, tuple) else output.sample
        x_t = x[-batch:]  # both CFG halves share the latents
        zero = torch.zeros_like(sample[-batch:])
        delta = method.correct(zero, x_t, t, float(abar[t]))  # = correct(eps) - eps, exactly
        counter[0] += batch
        guided = sample + (torch.cat([delta] * (len(sample) // batch)))
        if isinstance(output, tuple):
            return (guided, *output[1:])
        output.sample = guided
        return output

    return hook


def sample_pipeline(
    model: TextToImageModel,
    method,
    requested: torch.Tensor,
    *,
    scheduler_name: str,
    steps: int,
    seed: int,
    batch_size: int,
    indices: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[int], None] | None = None,
    output: Literal["image", "latent"] = "image",
):
    """`fairbench.sampling.sample` through the pipeline's own ``__call__``.

    Sample j starts from ``initial_noise(seed, [indices[j]], latent shape)`` (passed as
    ``latents=``) and its scheduler draws the shared loop's per-step noise, so it is
    paired with every other method and path. Returns images in [-1, 1] ([N, 3, H, W],
    float32, CPU), or the final latents with ``output="latent"``. ``nfe`` counts noise
    predictions per sample (one per visited step; CFG's two halves are one batched call).
    `device` is accepted for the shared signature: the pipeline stays where it was built.
    """
    requested = torch.as_tensor(requested, dtype=torch.long)
    indices = list(range(len(requested))) if indices is None else list(indices)
    k = model.num_attributes
    pipe = model.pipe
    prediction = model.scheduler_config()["prediction_type"]
    guided = getattr(method, "correct", None) is not None
    if guided and prediction != "epsilon":
        raise FairbenchError(f"classifier_guidance needs an epsilon-prediction model; this pipeline predicts {prediction!r}")
    outputs, nfe, classifier_evals = [], 0, [0]
    start = time.perf_counter()
    for lo in range(0, len(requested), batch_size):
        batch = indices[lo : lo + batch_size]
        wanted = requested[lo : lo + batch_size].to(model.device)
        size = len(batch)
        pipe.scheduler = bind_step_noise(make_scheduler(scheduler_name, **model.scheduler_config()), StepNoise(seed, batch))
        timesteps = visited_timesteps(make_scheduler(scheduler_name, **model.scheduler_config()), steps)
        current = [method.weights(timesteps[0], wanted, k)]
        cond = model.condition(current[0])

        def on_step_end(pipeline, i, t, tensors):
            # Runs after step i, before step i + 1's UNet call: set step i + 1's condition.
            if i + 1 >= len(timesteps):
                return {}
            weights = method.weights(timesteps[i + 1], wanted, k)
            if torch.equal(weights, current[0]):
                return {}
            current[0] = weights
            updates = {}
            for name, value in model.condition(weights).items():
                key = model.family.callback_tensors[name]
                # Under CFG the pipeline holds cat([negative, conditional]): swap only the conditional half.
                updates[key] = torch.cat([tensors[key][:size], value]) if model.cfg else value
            return updates

        counter = _UNetCalls()
        hooks = [pipe.unet.register_forward_pre_hook(counter)]
        if guided:
            hooks.append(pipe.unet.register_forward_hook(_guidance_hook(model, method, size, classifier_evals), with_kwargs=True))
        try:
            result = pipe(
                **model.family.call_kwargs(cond, model.negative_rows(size)),
                latents=initial_noise(seed, batch, model.sample_shape, dtype=model.dtype).to(model.device),
                num_inference_steps=steps,
                guidance_scale=model.guidance_scale,
                height=model.height,
                width=model.width,
                output_type="latent" if output == "latent" else "pt",
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=list(model.family.callback_tensors.values()),
            )
        finally:
            for hook in hooks:
                hook.remove()
        images = result.images.float().cpu()
        if not torch.isfinite(images).all():
            raise NumericalFault(f"non-finite {output}s from the pipeline under method {method.name} {method.params()}")
        outputs.append(images if output == "latent" else (images * 2.0 - 1.0).clamp(-1.0, 1.0))
        nfe += counter.calls * size
        if progress is not None:
            progress(size)
    return SampleOutput(
        samples=torch.cat(outputs), requested=requested, final=method.final(requested, k), nfe=nfe,
        wall_s=time.perf_counter() - start, classifier_evals=classifier_evals[0],
    )


# ---------------------------------------------------------------------------------------------
# The guidance classifier: noise-aware, on latents.


class LatentClassifier(torch.nn.Module):
    """``p_phi(s | x_t, t)`` on latents: a small time-conditioned convolutional network.

    Two stride-2 convolution blocks (GroupNorm, SiLU) whose features are shifted by an
    embedding of t, global average pooling and a linear head over the k values.
    """

    def __init__(self, channels: int, k: int, *, width: int = 32, num_train_timesteps: int = 1000):
        super().__init__()
        self.num_train_timesteps = num_train_timesteps
        self.time = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.SiLU(), torch.nn.Linear(width, 4 * width))
        self.stem = torch.nn.Conv2d(channels, width, 3, padding=1)
        self.down1 = torch.nn.Sequential(torch.nn.GroupNorm(8, width), torch.nn.SiLU(), torch.nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.down2 = torch.nn.Sequential(torch.nn.GroupNorm(8, width), torch.nn.SiLU(), torch.nn.Conv2d(width, 2 * width, 3, stride=2, padding=1))
        self.head = torch.nn.Sequential(torch.nn.GroupNorm(8, 2 * width), torch.nn.SiLU(), torch.nn.Linear(2 * width, k))
        self.width = width

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        from diffusers.models.embeddings import get_timestep_embedding

        shift, scale = self.time(get_timestep_embedding(t.float(), self.width)).chunk(2, dim=1)
        h = self.down1(self.stem(x))
        h = self.down2(h) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        h = self.head[1](self.head[0](h)).mean(dim=(2, 3))
        return self.head[2](h)

    def log_prob(self, x: torch.Tensor, t: int) -> torch.Tensor:
        param = next(self.parameters())
        times = torch.full((len(x),), int(t), device=param.device)
        return torch.log_softmax(self(x.to(param.device, param.dtype), times), dim=1)


def train_latent_classifier(
    latents: torch.Tensor,
    labels: torch.Tensor,
    *,
    k: int,
    alphas_cumprod: torch.Tensor,
    iters: int,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> LatentClassifier:
    """Fit ``p_phi(s | x_t, t)`` on noised clean latents: ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) n``.

    Each step draws a batch of ``(x_0, s)``, ``t ~ U{0..T-1}`` and ``n ~ N(0, I)`` from a seeded
    generator and takes an Adam step on the cross-entropy ``-log p_phi(s | x_t, t)``.
    """
    generator = torch.Generator("cpu").manual_seed(seed)
    T = len(alphas_cumprod)
    classifier = LatentClassifier(latents.shape[1], k, num_train_timesteps=T).to(device)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-3)
    x0, labels, abar = latents.float(), labels.long(), alphas_cumprod.float()
    for _ in range(iters):
        pick = torch.randint(len(x0), (min(batch_size, len(x0)),), generator=generator)
        t = torch.randint(T, (len(pick),), generator=generator)
        noise = torch.randn(x0[pick].shape, generator=generator)
        a = abar[t].view(-1, *([1] * (x0.ndim - 1)))
        x_t = a.sqrt() * x0[pick] + (1 - a).sqrt() * noise
        loss = torch.nn.functional.cross_entropy(classifier(x_t.to(device), t.to(device)), labels[pick].to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return classifier.eval().requires_grad_(False)


def guidance_from_own_samples(model: TextToImageModel, *, samples_per_value: int, iters: int, seed: int = 0) -> LatentClassifier:
    """Train the guidance classifier on the model's own conditional samples, labelled by prompt.

    No real data is needed: ``samples_per_value`` latents per prompt from conditional
    sampling (DDIM, `GUIDANCE_DATA_STEPS` steps, noise indices from 2**40 on, disjoint from
    any benchmark's 0..N-1), then `train_latent_classifier`.
    """
    from ..methods import Conditional

    k = model.num_attributes
    labels = torch.arange(samples_per_value * k) % k
    offset = 1 << 40  # noise indices no benchmark uses
    out = sample_pipeline(
        model, Conditional(), labels, scheduler_name="ddim", steps=GUIDANCE_DATA_STEPS, seed=seed,
        batch_size=max(k, 8), indices=[offset + i for i in range(len(labels))], output="latent",
    )
    abar = make_scheduler("ddim", **model.scheduler_config()).alphas_cumprod
    return train_latent_classifier(out.samples, labels, k=k, alphas_cumprod=abar, iters=iters, seed=seed, device=model.device)


# ---------------------------------------------------------------------------------------------
# Judges: attribute classifiers for generated images (pluggable; never the guidance classifier).


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


def _clip_judge(spec: "TextToImageSpec", *, device: str) -> ClipZeroShotJudge:
    return ClipZeroShotJudge(spec.judge_path, spec.judge_prompts or spec.prompts, device=device)


JUDGES: dict[str, Callable[..., Any] | None] = {"clip": _clip_judge, "none": None}


def register_judge(name: str, build: Callable[..., Any]) -> None:
    """``build(spec, device=)`` returns an object with ``log_prob(images)`` ([N, k]) and ``features(images)``."""
    JUDGES[name] = build


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """Images average-pooled to at most ``PIXEL_FEATURE_SIZE`` per side, flattened."""
    size = min(PIXEL_FEATURE_SIZE, images.shape[-1], images.shape[-2])
    return torch.nn.functional.adaptive_avg_pool2d(images.float(), size).reshape(len(images), -1)


# ---------------------------------------------------------------------------------------------
# The config kind.


@dataclass(frozen=True)
class TextToImageSpec:
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
        extras: dict[str, Any] = {}
        if judge is not None:
            # Direct tau search on latents: balance the judge's attribute probabilities of the decoded images.
            extras["balance_features"] = lambda latents: judge.log_prob(model.decode(latents)).exp()
        return Setup(
            model=model,
            guidance=guidance,
            features=judge.features if judge is not None else pixel_features,
            feature_name=f"{judge.name} image embeddings" if judge is not None else f"pixels pooled to {PIXEL_FEATURE_SIZE}x{PIXEL_FEATURE_SIZE}",
            sample=sample_pipeline,
            judge=judge.log_prob if judge is not None else None,
            extras=extras,
        )


register_model_kind("text_to_image", TextToImageSpec)
