"""Hiera's multi-scale attention computed with one fused SDPA call.

``transformers``' ``Sam2MultiScaleAttention`` first materialises the full softmax attention matrix
and then discards it before calling the attention kernel; in the global-attention blocks of
Hiera-L (4096 tokens, 8 heads) that is a 512 MB float32 tensor per image and most of the encoder's
eager run time. :class:`FusedMultiScaleAttention` has the same parameters (``qkv``, ``proj``) and the
same output (queries max-pooled at stage transitions, SDPA with the default 1/√d scale, as in
Meta's Hiera), without that detour. :func:`use_fused_attention` swaps it into a built model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.sam2.modeling_sam2 import Sam2MultiScaleAttention


class FusedMultiScaleAttention(nn.Module):
    """Drop-in replacement of ``Sam2MultiScaleAttention``: (B, H, W, C_in) → (B, H', W', C_out)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, query_stride: tuple[int, int] | None) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.num_attention_heads = num_heads
        self.query_stride = tuple(query_stride) if query_stride else None
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, hidden_states: torch.Tensor, **_: object) -> torch.Tensor:
        batch, height, width, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch, height * width, 3, self.num_attention_heads, -1)
        query, key, value = torch.unbind(qkv, 2)  # (B, HW, heads, d)
        if self.query_stride:
            query = query.reshape(batch, height, width, -1).permute(0, 3, 1, 2)
            query = F.max_pool2d(query, kernel_size=self.query_stride, stride=self.query_stride)
            height, width = query.shape[-2:]
            query = query.permute(0, 2, 3, 1).reshape(batch, height * width, self.num_attention_heads, -1)
        out = F.scaled_dot_product_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2))
        out = out.transpose(1, 2).reshape(batch, height, width, -1)
        return self.proj(out)


def use_fused_attention(backbone: nn.Module) -> int:
    """Replace every ``Sam2MultiScaleAttention`` in ``backbone`` (parameters carried over, on
    whatever device they are, meta included). Returns how many were replaced."""
    replaced = 0
    for block in getattr(backbone, "blocks", []):
        old = block.attn
        if not isinstance(old, Sam2MultiScaleAttention):
            continue
        new = FusedMultiScaleAttention(old.dim, old.dim_out, old.num_attention_heads, old.query_stride)
        new.qkv, new.proj = old.qkv, old.proj
        block.attn = new
        replaced += 1
    return replaced
