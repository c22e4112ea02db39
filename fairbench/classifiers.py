"""Attribute classifiers on images: the judge (evaluation) and the guidance classifier (sampling).

They are different networks on purpose (METHOD.md, classifier guidance): a method guided by
the same network that grades it would be graded on its own terms.

- `AttributeJudge`: a CNN on clean images with a head for the sensitive attribute and one
  for the target attribute. Its penultimate activations are fairbench's domain feature
  extractor (`JudgeFeatures`) for the epsilon estimate and for FID where Inception weights
  are not available.
- `NoiseAwareClassifier`: a timestep-conditioned CNN trained on noised images ``x_t``; it
  gives ``log p_phi(s | x_t, t)`` to classifier guidance.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn

EVAL_BATCH = 2048  # rows per forward pass when a wrapper evaluates many samples


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(min(8, c_out), c_out), nn.SiLU()]


class AttributeJudge(nn.Module):
    """CNN with two heads. Inputs are images in ``[-1, 1]``; samples are clamped to that range
    first, as they would be when saved as images."""

    def __init__(self, in_channels: int, num_sensitive: int, num_target: int, *, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.config = {"in_channels": in_channels, "num_sensitive": num_sensitive, "num_target": num_target,
                       "width": width, "feature_dim": feature_dim}
        self.body = nn.Sequential(
            *_conv(in_channels, width), *_conv(width, 2 * width), *_conv(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, feature_dim), nn.SiLU(),
        )
        self.dropout = nn.Dropout(0.2)
        self.sensitive_head = nn.Linear(feature_dim, num_sensitive)
        self.target_head = nn.Linear(feature_dim, max(num_target, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations, ``[B, feature_dim]``."""
        return self.body(x.clamp(-1.0, 1.0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(sensitive [B, k], target [B, m])``."""
        h = self.dropout(self.features(x))
        return self.sensitive_head(h), self.target_head(h)


class NoiseAwareClassifier(nn.Module):
    """``p_phi(s | x_t, t)``: a CNN whose channels are shifted by an embedding of t."""

    def __init__(self, in_channels: int, num_classes: int, *, width: int = 32, time_dim: int = 64):
        super().__init__()
        self.config = {"in_channels": in_channels, "num_classes": num_classes, "width": width, "time_dim": time_dim}
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, 2 * width), nn.SiLU(), nn.Linear(2 * width, 2 * width))
        self.stem = nn.Sequential(*_conv(in_channels, width), nn.Conv2d(width, 2 * width, 3, padding=1))
        self.trunk = nn.Sequential(
            nn.GroupNorm(min(8, 2 * width), 2 * width), nn.SiLU(), *_conv(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, 128), nn.SiLU(), nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, k]`` for noised images `x` at training timesteps `t` ([B])."""
        emb = self.time_mlp(get_timestep_embedding(t.to(x.device), self.time_dim).to(x.dtype))
        return self.trunk(self.stem(x) + emb[:, :, None, None])

    def log_prob(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """``log p_phi(a | x_t, t)`` for every value a, ``[B, k]`` (differentiable in x)."""
        parameter = next(self.parameters())
        timesteps = torch.full((len(x),), int(t), device=parameter.device)
        return torch.log_softmax(self(x.to(parameter.device, parameter.dtype), timesteps), dim=1).to(x.device)


def _batched(function: Callable[[torch.Tensor], torch.Tensor], network: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`function` over chunks of x on the network's device, without gradients; result on x's device."""
    parameter = next(network.parameters())
    with torch.no_grad():
        parts = [function(chunk.to(parameter.device, parameter.dtype)).to(x.device) for chunk in x.split(EVAL_BATCH)]
    return torch.cat(parts)


class JudgeFeatures(nn.Module):
    """The judge's penultimate features as a feature extractor: samples ``[N, C, H, W]`` -> ``[N, D]``.

    `name` identifies the extractor (dataset and the judge's cache key), so features, FID or
    epsilon numbers are only compared when computed by the same judge.
    """

    def __init__(self, judge: AttributeJudge, name: str):
        super().__init__()
        self.judge = judge
        self.name = name
        self.dim = judge.config["feature_dim"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _batched(self.judge.features, self.judge, x)


class Judge:
    """Evaluation-time access to an `AttributeJudge` (eval mode, batched, inputs on any device)."""

    def __init__(self, network: AttributeJudge, name: str):
        self.network = network.eval()
        self.features = JudgeFeatures(self.network, name)

    def sensitive_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(s | x)`` over the k sensitive values, ``[N, k]``."""
        return _batched(lambda c: torch.log_softmax(self.network(c)[0], dim=1), self.network, x)

    def target_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(y | x)`` over the target values, ``[N, m]``."""
        return _batched(lambda c: torch.log_softmax(self.network(c)[1], dim=1), self.network, x)

    def sensitive_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``p(s | x)``, ``[N, k]``: the balance features of the direct tau search."""
        return self.sensitive_log_prob(x).exp()


class HSpaceClassifier(nn.Module):
    """``p_psi(s | h_t, t)`` on a UNet's mid-block output ``h_t`` (its "h-space"): a small MLP on
    the flattened features and an embedding of t, the attribute distribution predictor of
    distribution guidance (Parihar et al., CVPR 2024)."""

    def __init__(self, in_features: int, num_classes: int, *, hidden: int = 256, time_dim: int = 64):
        super().__init__()
        self.config = {"in_features": in_features, "num_classes": num_classes, "hidden": hidden, "time_dim": time_dim}
        self.time_dim = time_dim
        self.net = nn.Sequential(nn.Linear(in_features + time_dim, hidden), nn.SiLU(), nn.Linear(hidden, num_classes))

    def forward(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, k]`` for features `h` ([B, ...]) at training timesteps `t` ([B])."""
        emb = get_timestep_embedding(t.to(h.device), self.time_dim).to(h.dtype)
        return self.net(torch.cat([h.flatten(start_dim=1), emb], dim=1))


class _Stop(Exception):
    """Raised by a forward hook to end a UNet's forward pass once its mid-block output is known."""


def mid_block_features(unet, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
    """``h_t``: the output of ``unet.mid_block`` at ``(x_t, t)`` (the up path is not run)."""
    found: list[torch.Tensor] = []

    def stop(module, inputs, output):
        found.append(output)
        raise _Stop

    handle = unet.mid_block.register_forward_hook(stop)
    try:
        unet(x, t, class_labels=class_labels)
    except _Stop:
        pass
    finally:
        handle.remove()
    return found[0]
