"""Finite scalar quantization (FSQ, Mentzer et al. 2023), for quantizer ablations.

Each of the D = len(levels) channels is squashed with tanh to a bounded range and rounded to one
of ``levels[i]`` values (straight-through); the code id is the mixed-radix number of the D
digits, so the implicit codebook has prod(levels) entries, e.g. (4, 4, 4, 4, 4) → 1024 codes.
Quantized values are scaled to [−1, 1]. There is no codebook to learn and no auxiliary loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from masktok.tokenizers.quantizers.vq import QuantizerOutput, check_codes, check_probabilities


def _round_straight_through(x: torch.Tensor) -> torch.Tensor:
    return x + (x.round() - x).detach()


class FiniteScalarQuantizer(nn.Module):
    """FSQ over the last dimension.

    Args:
        levels: number of values per channel, each ≥ 2; D = len(levels), V = prod(levels).
        eps: keeps tanh's range just inside the outermost rounding boundaries.
    """

    codes_per_position = 1

    def __init__(self, levels: Sequence[int] = (4, 4, 4, 4, 4), eps: float = 1e-3):
        super().__init__()
        levels = [int(level) for level in levels]
        if not levels or any(level < 2 for level in levels):
            raise ValueError(f"levels must be a non-empty sequence of integers ≥ 2, got {levels}")
        self.levels = levels
        self.dim = len(levels)
        self.eps = eps
        level_t = torch.tensor(levels, dtype=torch.float32)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1], dtype=torch.int64), dim=0)
        self.register_buffer("_levels", level_t, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)
        self.codebook_size = int(torch.prod(torch.tensor(levels)).item())

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        half_l = (self._levels - 1) * (1 + self.eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def _half_width(self) -> torch.Tensor:
        return torch.div(self._levels, 2, rounding_mode="floor")

    def codes_to_indices(self, values: torch.Tensor) -> torch.Tensor:
        """Quantized values (..., D) in [−1, 1] → code ids (...) int64."""
        half_width = self._half_width()
        digits = (values.float() * half_width + half_width).round().long()
        return (digits * self._basis).sum(dim=-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Code ids (...) → quantized values (..., D) float32 in [−1, 1]."""
        digits = (indices.long().unsqueeze(-1) // self._basis) % self._levels.long()
        half_width = self._half_width()
        return (digits.float() - half_width) / half_width

    def codebook(self) -> torch.Tensor:
        """The implicit codebook: (V, D) float32."""
        return self.indices_to_codes(torch.arange(self.codebook_size, device=self._levels.device))

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """z (B, L, D) → quantized (B, L, D), codes (B, L), loss 0."""
        if z.ndim != 3 or z.shape[-1] != self.dim:
            raise ValueError(f"z must have shape (B, L, {self.dim}), got {tuple(z.shape)}")
        with torch.autocast(device_type=z.device.type, enabled=False):
            q = _round_straight_through(self._bound(z.float())) / self._half_width()
            codes = self.codes_to_indices(q.detach())
        loss = torch.zeros((), device=z.device, dtype=torch.float32)
        return QuantizerOutput(quantized=q.to(z.dtype), codes=codes, loss=loss)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T) → code vectors (B, T, D) float32."""
        return self.indices_to_codes(check_codes(codes, self.codebook_size))

    def soft_lookup(self, probs: torch.Tensor, renormalize: bool = True) -> torch.Tensor:
        """Code probabilities (B, T, V) → expected code vectors (B, T, D) float32.

        ``renormalize`` is accepted for interface parity with the VQ and has no effect: FSQ
        vectors are not normalised.
        """
        probs = check_probabilities(probs, self.codebook_size)
        return probs.float() @ self.codebook()

    def extra_repr(self) -> str:
        return f"levels={self.levels}, codebook_size={self.codebook_size}"
