"""The mask encoder: a ViT over ``[cls] + patches + K latent tokens`` with causal latents.

Attention pattern (the official ``attn_mask`` buffer, True = blocked): image tokens (cls and
patches) see each other only; latent k sees every image token and latents ≤ k. After the last
block the K latent outputs go through ``ln_post`` and a 1×1 projection to ``token_dim``.

The official model then runs TiTok's "legacy" reshape: (B, K, W) memory is reinterpreted as
(B, W, K) before the projection, so every output token mixes every latent slot and the causal
attention does not reach the quantizer. ``legacy_latent_reshape=False`` (masktok's models) uses a
permute instead: token k is a function of latent output k only, hence of latents ≤ k.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masktok.tokenizers.himtok.config import HiMTokConfig
from masktok.tokenizers.himtok.transformer import build_blocks


def causal_latent_attention_mask(num_image_tokens: int, num_latent_tokens: int) -> torch.Tensor:
    """(T, T) bool, True = blocked: image tokens never see latents, latent i never sees latent j > i."""
    total = num_image_tokens + num_latent_tokens
    index = torch.arange(total)
    first_blocked = torch.clamp(index + 1, min=num_image_tokens)
    return index.unsqueeze(0) >= first_blocked.unsqueeze(1)


class MaskEncoder(nn.Module):
    """Mask pixels (B, C, S, S) + latent tokens (K, W) → pre-quantization tokens (B, K, token_dim)."""

    def __init__(self, config: HiMTokConfig):
        super().__init__()
        width, grid = config.encoder_width, config.grid_size
        self.width = width
        self.grid_size = grid
        self.num_latent_tokens = config.num_latent_tokens
        self.legacy_latent_reshape = config.legacy_latent_reshape
        scale = width ** -0.5
        self.patch_embed = nn.Conv2d(config.in_channels, width, kernel_size=config.patch_size,
                                     stride=config.patch_size, bias=True)
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.latent_token_positional_embedding = nn.Parameter(
            scale * torch.randn(config.num_latent_tokens, width))
        self.register_buffer("attn_mask", causal_latent_attention_mask(grid * grid + 1, config.num_latent_tokens))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = build_blocks(width, config.encoder_depth, config.encoder_heads, config.mlp_ratio)
        self.ln_post = nn.LayerNorm(width)
        self.conv_out = nn.Conv2d(width, config.token_dim, kernel_size=1, bias=True)

    def forward(self, pixels: torch.Tensor, latent_tokens: torch.Tensor) -> torch.Tensor:
        """pixels (B, C, S, S), latent_tokens (K, W) → tokens (B, K, token_dim)."""
        batch = pixels.shape[0]
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)  # (B, grid², W)
        cls = self.class_embedding.to(x.dtype).expand(batch, -1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        latents = (latent_tokens + self.latent_token_positional_embedding).to(x.dtype)
        x = torch.cat([x, latents.expand(batch, -1, -1)], dim=1)
        x = self.ln_pre(x)
        allowed = ~self.attn_mask
        for block in self.transformer:
            x = block(x, allowed)
        latents = self.ln_post(x[:, 1 + self.grid_size ** 2:])  # (B, K, W)
        if self.legacy_latent_reshape:
            # Official TiTok "legacy" mode: reinterpret the (K, W) memory as (W, K).
            latents = latents.reshape(batch, self.width, self.num_latent_tokens).transpose(1, 2)
        return F.linear(latents, self.conv_out.weight.flatten(1), self.conv_out.bias)
