"""Residual VQ as a HiMTok token quantizer (quantizer ablation, SAMTok seed tables A4/A5).

Wraps the shared :class:`masktok.tokenizers.quantizers.residual_vq.ResidualVQ` (EMA codebooks,
``depth`` levels of ``codebook_size`` codes). Every latent slot gets ``depth`` codes; the code
sequence is slot-major — slot 0 level 0, slot 0 level 1, …, slot 1 level 0, … — so any prefix of
T codes decodes: slots fully covered use all their levels, the slot cut in the middle uses its
first levels (a coarser residual sum), and the slots after it are zero-filled by the decoder.
"""

from __future__ import annotations

import torch
from torch import nn

from masktok.tokenizers.quantizers.residual_vq import ResidualVQ
from masktok.tokenizers.quantizers.vq import QuantizerOutput, check_codes, check_probabilities


class ResidualTokenQuantizer(nn.Module):
    """Latent tokens (B, K, D) → codes (B, K · depth), slot-major."""

    def __init__(self, codebook_size: int, dim: int, depth: int, commitment_cost: float):
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.codes_per_position = depth
        self.commitment_cost = commitment_cost
        self.rvq = ResidualVQ(dim, codebook_size, depth)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """z (B, K, D) → quantized (B, K, D), codes (B, K · depth), commitment_cost · RVQ loss."""
        if z.ndim != 3 or z.shape[-1] != self.dim:
            raise ValueError(f"z must have shape (B, L, {self.dim}), got {tuple(z.shape)}")
        out = self.rvq(z)
        codes = out.codes.reshape(z.shape[0], -1)
        return QuantizerOutput(quantized=out.quantized, codes=codes, loss=self.commitment_cost * out.loss)

    def _slots(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, T) → (B, ⌈T / depth⌉, depth), the trailing levels of a cut slot marked −1."""
        depth = self.codes_per_position
        batch, length = codes.shape
        pad = (-length) % depth
        if pad:
            codes = torch.cat([codes, codes.new_full((batch, pad), -1)], dim=1)
        return codes.view(batch, -1, depth)

    def lookup(self, codes: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """codes (B, T) → slot vectors (B, ⌈T / depth⌉, D) float32.

        ``lengths`` (B,): row b uses only its first ``lengths[b]`` codes (later levels of its
        last slot are left out; slots after it are returned as code-0 vectors, which the decoder
        zero-fills).
        """
        codes = check_codes(codes, self.codebook_size)
        if lengths is not None:
            positions = torch.arange(codes.shape[1], device=codes.device).unsqueeze(0)
            codes = torch.where(positions < lengths.to(codes.device).unsqueeze(1), codes, -1)
        slots = self._slots(codes)
        unused = slots[..., 0] == -1  # whole slot beyond the kept prefix
        slots = torch.where(unused.unsqueeze(-1), torch.zeros_like(slots), slots)
        return self.rvq.lookup(slots)

    def soft_lookup(self, probs: torch.Tensor, renormalize: bool = True) -> torch.Tensor:
        """probs (B, T, V) → (B, ⌈T / depth⌉, D): per slot, the sum over its levels of the
        probability-weighted codewords. ``renormalize`` has no effect (RVQ vectors are not
        normalised)."""
        probs = check_probabilities(probs, self.codebook_size)
        depth = self.codes_per_position
        batch, length, _ = probs.shape
        slots = -(-length // depth)
        out = torch.zeros(batch, slots, self.dim, device=probs.device, dtype=torch.float32)
        for level, book in enumerate(self.rvq.codebooks):
            level_probs = probs[:, level::depth].float()
            out[:, :level_probs.shape[1]] += level_probs @ book.codewords.float()
        return out
