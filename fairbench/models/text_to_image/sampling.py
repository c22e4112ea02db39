"""Fair sampling through the pipeline's own ``__call__``; nothing of its loop is copied.

- The first visited timestep's condition is passed in as the initial ``prompt_embeds``.
- ``callback_on_step_end`` runs after step ``i`` (after ``scheduler.step``) and before the
  UNet call of step ``i + 1``; it returns the condition of timestep ``t_{i+1}``. Under CFG the
  pipeline holds ``cat([negative, conditional])`` and only the conditional half is replaced.
  Attribute switching thus swaps the prompt at the first step with ``t <= tau``, at no extra
  model evaluation.
- Corrections (classifier guidance; semantic guidance, which calls the model again): the callback cannot change the noise prediction of a step (it runs
  after the step has used it), and shifting the stepped latents instead is exact only for
  single-step schedulers. The correction is therefore applied where the prediction is made:
  a forward hook on the UNet adds ``delta = -w sqrt(1 - abar_t) grad_x sum_a (1/k) log
  p_phi(a | x_t, t)`` to both CFG halves of its output, so the guided prediction becomes
  ``eps_cfg + delta`` (CFG is affine: ``(u + d) + g((c + d) - (u + d)) = u + g(c - u) + d``), exactly
  the shared loop's ``ClassifierGuidance.correct`` for every scheduler. ``x_t`` is the
  UNet's (scaled) latent input and ``p_phi`` a noise-aware classifier on latents
  (`fairbench.models.text_to_image.guidance`), a different network from the judge.

- Prompt queuing's attention amplification: for the call, every cross-attention layer gets
  a processor (`fairbench.models.text_to_image.attention`) whose per-token factors are set
  with each step's condition; steps without amplified tokens run the layer's own processor.

The pipeline is always run with fairbench's scheduler (`fairbench.schedulers.make_scheduler`
over the pipeline's own noise schedule), so this path and the shared loop on
`TextToImageModel` visit the same timesteps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Literal

import torch

from ...errors import FairbenchError, NumericalFault
from ...noise import StepNoise, initial_noise
from ...sampling import SampleOutput, bind_step_noise
from ...schedulers import make_scheduler, visited_timesteps
from .attention import amplified_cross_attention
from .model import TextToImageModel


class _UNetCalls:
    """Counts UNet forward calls (one per step per batch, whatever CFG does inside)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, module, args):
        self.calls += 1


def _guidance_hook(model: TextToImageModel, method, batch: int, requested: torch.Tensor, counter: list[int]):
    """Forward hook adding a method's correction to both CFG halves (module docstring).

    A classifier's correction is additive and independent of the prediction, so it is taken
    as ``correct(0)``. A correction that calls the model (``method.correction_nfe > 0``)
    gets this step's guided prediction and adds ``correct(eps) - eps``; its own UNet calls
    pass through this hook unchanged (and are counted as model evaluations by the caller).
    """
    abar = model.pipe.scheduler.alphas_cumprod
    busy = [False]

    def hook(module, args, kwargs, output):
        if busy[0]:
            return output
        x = args[0] if args else kwargs["sample"]
        t = int(args[1] if len(args) > 1 else kwargs["timestep"])
        sample = output[0] if isinstance(output, tuple) else output.sample
        x_t = x[-batch:]  # both CFG halves share the latents
        if method.correction_nfe:
            if model.cfg:
                uncond, text = sample.chunk(2)
                eps = uncond + model.guidance_scale * (text - uncond)
            else:
                eps = sample
            busy[0] = True
            try:
                delta = method.correct(eps, x_t, t, float(abar[t]), requested) - eps
            finally:
                busy[0] = False
        else:
            zero = torch.zeros_like(sample[-batch:])
            delta = method.correct(zero, x_t, t, float(abar[t]), requested)  # = correct(eps) - eps, exactly
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
    guided = method.correct is not None
    if guided and prediction != "epsilon":
        raise FairbenchError(f"{method.name} needs an epsilon-prediction model; this pipeline predicts {prediction!r}")
    # Prompt queuing's attention amplification: factors on the attribute tokens of the value
    # each sample conditions on (`TextToImageModel.token_scale`), set with every condition.
    amplification = method.attention_amplification()
    set_scale = None

    def amplify(weights: torch.Tensor) -> None:
        if set_scale is None:
            return
        scale = model.token_scale(weights, amplification)
        if scale is not None and model.cfg:  # the negative half is never amplified
            scale = torch.cat([torch.ones_like(scale), scale])
        set_scale(scale)

    outputs, nfe, classifier_evals = [], 0, [0]
    start = time.perf_counter()
    for lo in range(0, len(requested), batch_size):
        batch = indices[lo : lo + batch_size]
        wanted = requested[lo : lo + batch_size].to(model.device)
        size = len(batch)
        pipe.scheduler = bind_step_noise(make_scheduler(scheduler_name, **model.scheduler_config()), StepNoise(seed, batch))
        timesteps = visited_timesteps(make_scheduler(scheduler_name, **model.scheduler_config()), steps)
        method = method.visiting(timesteps)
        if method.mixes_predictions and any(int((method.weights(t, wanted, k) != 0).sum(1).max()) > 1 for t in timesteps):
            # the callback can only swap the condition: a mixture of predictions needs the shared loop
            raise FairbenchError(f"{method.name} {method.params()} mixes two noise predictions at a step between its "
                                 "points, which the pipeline's own call cannot do; give points on visited timesteps")
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
            amplify(weights)
            updates = {}
            for name, value in model.condition(weights).items():
                key = model.family.callback_tensors[name]
                # Under CFG the pipeline holds cat([negative, conditional]): swap only the conditional half.
                updates[key] = torch.cat([tensors[key][:size], value]) if model.cfg else value
            return updates

        counter = _UNetCalls()
        hooks = [pipe.unet.register_forward_pre_hook(counter)]
        if guided:
            hooks.append(pipe.unet.register_forward_hook(_guidance_hook(model, method, size, wanted, classifier_evals), with_kwargs=True))
        amplifying = amplified_cross_attention(pipe.unet) if amplification != 1.0 else nullcontext()
        try:
            with amplifying as setter:
                set_scale = setter
                amplify(current[0])
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
            set_scale = None
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
