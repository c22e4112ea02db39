"""Attention amplification of chosen prompt tokens in the UNet's cross-attention layers.

Prompt queuing (FairQueue, Teo et al. 2024) multiplies the cross-attention probabilities of
the attribute tokens by a constant c after its switch, the reweighting of Prompt-to-Prompt
(Hertz et al. 2023): ``A'[q, j] = c_j A[q, j]`` with ``A = softmax(Q K^T / sqrt(d))`` and no
renormalisation, per text token ``j``. `TokenAmplification` replaces the processor of every
cross-attention layer (``attn2``) while a pipeline call runs; with no factors set it hands
each call to the layer's original processor, so an unamplified step is the pipeline's own
computation bitwise.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ...errors import FairbenchError


class TokenAmplification:
    """Cross-attention processor with per-row, per-token factors on the attention probabilities.

    ``scale`` is ``None`` (the original processor runs) or ``[rows, tokens]``: one row per
    sample of the UNet batch (under classifier-free guidance the negative half first).
    """

    def __init__(self, original):
        self.original = original
        self.scale: torch.Tensor | None = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if self.scale is None or encoder_hidden_states is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        batch, tokens = encoder_hidden_states.shape[:2]
        attention_mask = attn.prepare_attention_mask(attention_mask, tokens, batch)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, attention_mask)  # [batch * heads, queries, tokens]
        # head_to_batch_dim orders rows batch-major (sample 0's heads first).
        probs = probs * self.scale.to(probs).repeat_interleave(attn.heads, dim=0)[:, None, :]
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


def _cross_attention_layers(unet) -> list[str]:
    names = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    for name in names:
        module = unet.get_submodule(name[: -len(".processor")])
        if (module.spatial_norm is not None or module.group_norm is not None or module.residual_connection
                or getattr(module, "norm_q", None) is not None):
            raise FairbenchError(f"attention amplification supports plain cross-attention layers; {name} is not one")
    return names


@contextmanager
def amplified_cross_attention(unet):
    """Install one shared `TokenAmplification` on every cross-attention layer; yields a setter.

    ``set_scale(None | [rows, tokens])`` applies to the following UNet calls. The original
    processors are restored on exit.
    """
    originals = unet.attn_processors
    names = _cross_attention_layers(unet)
    processors = {name: TokenAmplification(originals[name]) for name in names}

    def set_scale(scale: torch.Tensor | None) -> None:
        for processor in processors.values():
            processor.scale = scale

    unet.set_attn_processor({name: processors.get(name, processor) for name, processor in originals.items()})
    try:
        yield set_scale
    finally:
        unet.set_attn_processor(originals)
