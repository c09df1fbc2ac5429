"""Pre-norm transformer block with the parameter names of CLIP/TiTok's ``ResidualAttentionBlock``.

The attention keeps ``torch.nn.MultiheadAttention``'s parameter layout (``in_proj_weight``,
``in_proj_bias``, ``out_proj``) so official checkpoints load unchanged, but runs batch-first
through ``scaled_dot_product_attention`` (flash / memory-efficient kernels, bf16-friendly).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head self-attention; ``allowed`` (T, T) bool marks which keys each query may see."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, W), allowed (T, T) bool or None → (B, T, W)."""
        batch, tokens, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=allowed)
        return self.out_proj(out.transpose(1, 2).reshape(batch, tokens, width))


class ResidualAttentionBlock(nn.Module):
    """x + attn(ln_1(x)), then x + mlp(ln_2(x)); MLP = Linear → GELU → Linear."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)),
            ("gelu", nn.GELU()),
            ("c_proj", nn.Linear(hidden, width)),
        ]))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, W) → (B, T, W)."""
        x = x + self.attn(self.ln_1(x), allowed)
        return x + self.mlp(self.ln_2(x))


def build_blocks(width: int, depth: int, heads: int, mlp_ratio: float) -> nn.ModuleList:
    """``depth`` residual attention blocks (the official key prefix is ``transformer.<i>``)."""
    return nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_ratio) for _ in range(depth))
