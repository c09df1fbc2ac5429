"""The latent decoder: quantized tokens → a (grid × grid) feature map for the pixel decoder.

Sequence: ``[cls] + grid² learned mask queries + K latent slots``, bidirectional attention. The
quantized tokens go through ``decoder_embed`` (token_dim → width); slots beyond a mask's kept
prefix are zeros *after* that linear (then the slot positional embedding is added, as in the
official model). The grid outputs pass ``ln_post`` and a 1×1 conv head (width → 2·width → tanh →
z_channels).
"""

from __future__ import annotations

import torch
from torch import nn

from masktok.tokenizers.himtok.config import HiMTokConfig
from masktok.tokenizers.himtok.transformer import build_blocks


class LatentDecoder(nn.Module):
    """Quantized tokens (B, P, token_dim), P ≤ K, + kept lengths → features (B, z, grid, grid)."""

    def __init__(self, config: HiMTokConfig):
        super().__init__()
        width, grid = config.decoder_width, config.grid_size
        self.width = width
        self.grid_size = grid
        self.num_latent_tokens = config.num_latent_tokens
        scale = width ** -0.5
        self.decoder_embed = nn.Linear(config.token_dim, width, bias=True)
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.mask_token = nn.Parameter(scale * torch.randn(1, 1, width))
        self.latent_token_positional_embedding = nn.Parameter(
            scale * torch.randn(config.num_latent_tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = build_blocks(width, config.decoder_depth, config.decoder_heads, config.mlp_ratio)
        self.ln_post = nn.LayerNorm(width)
        self.ffn = nn.Sequential(
            nn.Conv2d(width, 2 * width, 1, bias=True),
            nn.Tanh(),
            nn.Conv2d(2 * width, config.pixel_decoder.z_channels, 1, bias=True),
        )

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, P, D) with P ≤ K; lengths (B,) int in [1, P] or None (= P for every row).

        Returns (B, z_channels, grid, grid).
        """
        batch, positions, _ = tokens.shape
        if positions > self.num_latent_tokens:
            raise ValueError(f"at most {self.num_latent_tokens} latent slots, got {positions}")
        x = self.decoder_embed(tokens)
        if lengths is not None:
            keep = torch.arange(positions, device=x.device).unsqueeze(0) < lengths.to(x.device).unsqueeze(1)
            x = x * keep.unsqueeze(-1).to(x.dtype)
        if positions < self.num_latent_tokens:
            pad = x.new_zeros(batch, self.num_latent_tokens - positions, self.width)
            x = torch.cat([x, pad], dim=1)
        x = x + self.latent_token_positional_embedding.to(x.dtype)
        queries = self.mask_token.to(x.dtype).expand(batch, self.grid_size ** 2, -1)
        cls = self.class_embedding.to(x.dtype).expand(batch, -1, -1)
        queries = torch.cat([cls, queries], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(torch.cat([queries, x], dim=1))
        for block in self.transformer:
            x = block(x)
        x = self.ln_post(x[:, 1:1 + self.grid_size ** 2])
        x = x.transpose(1, 2).reshape(batch, self.width, self.grid_size, self.grid_size)
        return self.ffn(x.contiguous())
