"""The classifier-guidance classifier on latents, trained on the model's own samples.

``p_phi(s | x_t, t)`` is `fairbench.classifiers.NoiseAwareClassifier` (the network the image
kinds guide with) applied to latents, fitted by `fairbench.train.fit_guidance_classifier` (the
same loss, optimiser, warm-up and per-step seeding as the image kinds' guidance classifier).
It is a different network from the judge.
"""

from __future__ import annotations

import torch

from ...classifiers import NoiseAwareClassifier
from ...methods import Conditional
from ...schedulers import make_scheduler
from ...train import GuidanceTraining, LabelledImages, fit_guidance_classifier
from .model import TextToImageModel
from .sampling import sample_pipeline

GUIDANCE_DATA_STEPS = 25  # DDIM steps of the conditional samples a guidance classifier learns from
GUIDANCE_BATCH = 64
GUIDANCE_LEARNING_RATE = 1e-3


def train_latent_classifier(
    latents: torch.Tensor,
    labels: torch.Tensor,
    *,
    k: int,
    alphas_cumprod: torch.Tensor,
    iters: int,
    seed: int = 0,
    batch_size: int = GUIDANCE_BATCH,
    device: str | torch.device = "cpu",
) -> NoiseAwareClassifier:
    """Fit ``p_phi(s | x_t, t)`` on noised clean latents ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) n``.

    `iters` steps of `fairbench.train.fit` on the cross-entropy ``-log p_phi(s | x_t, t)``, each
    on a batch drawn uniformly over the values of `labels` with ``t ~ U{0..T-1}``; no checkpoints
    (the fit is short and repeated from the samples on every build).
    """
    data = LabelledImages(
        images=latents.float(), sensitive=labels.long(), sensitive_values=tuple(str(value) for value in range(k))
    )
    spec = GuidanceTraining(steps=iters, batch_size=batch_size, learning_rate=GUIDANCE_LEARNING_RATE, seed=seed)
    classifier = fit_guidance_classifier(data, spec, alphas_cumprod, device=str(device), checkpoint_dir=None)
    return classifier.requires_grad_(False)


def guidance_from_own_samples(
    model: TextToImageModel, *, samples_per_value: int, iters: int, seed: int = 0
) -> NoiseAwareClassifier:
    """Train the guidance classifier on the model's own conditional samples, labelled by prompt.

    No real data is needed: ``samples_per_value`` latents per prompt from conditional
    sampling (DDIM, `GUIDANCE_DATA_STEPS` steps, noise indices from 2**40 on, disjoint from
    any benchmark's 0..N-1), then `train_latent_classifier`.
    """
    k = model.num_attributes
    labels = torch.arange(samples_per_value * k) % k
    offset = 1 << 40  # noise indices no benchmark uses
    out = sample_pipeline(
        model, Conditional(), labels, scheduler_name="ddim", steps=GUIDANCE_DATA_STEPS, seed=seed,
        batch_size=max(k, 8), indices=[offset + i for i in range(len(labels))], output="latent",
    )
    abar = make_scheduler("ddim", **model.scheduler_config()).alphas_cumprod
    return train_latent_classifier(out.samples, labels, k=k, alphas_cumprod=abar, iters=iters, seed=seed, device=model.device)
