"""Convolutional pixel decoder (MaskGIT-VQGAN layout): (grid × grid) features → full-size map.

``conv_in`` → ``mid`` residual blocks → stages ``up[n−1] … up[0]`` (each: residual blocks, then
nearest ×2 upsampling + 3×3 conv except stage 0) → GroupNorm → SiLU → ``conv_out`` (optionally
followed by a pixel shuffle). Residual block convolutions have no bias; norms are GroupNorm(eps 1e-6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masktok.tokenizers.himtok.config import PixelDecoderConfig


class ResnetBlock(nn.Module):
    """norm → SiLU → conv3×3 → norm → SiLU → conv3×3, plus a shortcut.

    When the width changes, ``legacy_shortcut=True`` adds ``nin_shortcut(h)`` with h the block's
    own output (an (out, out) 1×1 conv: the official layout); otherwise the shortcut projects the
    input with an (out, in) 1×1 conv.
    """

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int, legacy_shortcut: bool):
        super().__init__()
        self.legacy_shortcut = legacy_shortcut
        self.norm1 = nn.GroupNorm(norm_groups, in_channels, eps=1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(norm_groups, out_channels, eps=1e-6)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.nin_shortcut: nn.Module | None = None
        if in_channels != out_channels:
            shortcut_in = out_channels if legacy_shortcut else in_channels
            self.nin_shortcut = nn.Conv2d(shortcut_in, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in, H, W) → (B, out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.nin_shortcut is None:
            return h + x
        if self.legacy_shortcut:
            return h + self.nin_shortcut(h)
        return h + self.nin_shortcut(x)


class UpsamplingBlock(nn.Module):
    """Stage ``index``: residual blocks at its width, then ×2 upsampling unless index == 0."""

    def __init__(self, config: PixelDecoderConfig, index: int):
        super().__init__()
        mult = config.channel_mult
        block_in = config.hidden_channels * (mult[-1] if index == len(mult) - 1 else mult[index + 1])
        block_out = config.hidden_channels * mult[index]
        blocks = []
        for _ in range(config.num_res_blocks):
            blocks.append(ResnetBlock(block_in, block_out, config.norm_groups, config.legacy_shortcut))
            block_in = block_out
        self.block = nn.ModuleList(blocks)
        self.upsample_conv = nn.Conv2d(block_out, block_out, 3, padding=1) if index != 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        if self.upsample_conv is not None:
            x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class PixelDecoder(nn.Module):
    """(B, z_channels, g, g) → (B, out_channels, g·f, g·f), f = 2^(n−1) · pixel_shuffle."""

    def __init__(self, config: PixelDecoderConfig):
        super().__init__()
        top = config.hidden_channels * config.channel_mult[-1]
        self.conv_in = nn.Conv2d(config.z_channels, top, 3, padding=1)
        self.mid = nn.ModuleList(
            ResnetBlock(top, top, config.norm_groups, config.legacy_shortcut)
            for _ in range(config.num_res_blocks))
        self.up = nn.ModuleList(UpsamplingBlock(config, i) for i in range(len(config.channel_mult)))
        bottom = config.hidden_channels * config.channel_mult[0]
        self.norm_out = nn.GroupNorm(config.norm_groups, bottom, eps=1e-6)
        self.pixel_shuffle = config.pixel_shuffle
        self.conv_out = nn.Conv2d(bottom, config.out_channels * config.pixel_shuffle ** 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.mid:
            x = block(x)
        for stage in reversed(self.up):
            x = stage(x)
        x = self.conv_out(F.silu(self.norm_out(x)))
        return F.pixel_shuffle(x, self.pixel_shuffle) if self.pixel_shuffle > 1 else x
