"""L2-normalised (cosine) vector quantization with a SimVQ linear codebook projection.

The codebook actually used is ``normalize(embedding_proj(embedding.weight))``: a (V, D) table passed
through one bias-free D×D linear layer (SimVQ), then L2-normalised. As in SimVQ, the table is a
frozen Gaussian draw (std D^-½) and only the projection learns: every code moves whenever the
projection does, so codes never die, and an optimizer step cannot drag the few codes in use away
from the rest (training the table too collapses a fresh model to a handful of codes in a few steps). Inputs are
L2-normalised too, so the nearest neighbour is the code of highest cosine similarity. This is the
HiMTok quantizer (1024 × 12, commitment 0.01); the parameter names ``embedding.weight`` and
``embedding_proj.weight`` are those of the official checkpoint.

Distances are always computed in float32, whatever the input dtype (bf16 under autocast or a bf16
model), so the argmin does not depend on the compute dtype's rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizerOutput:
    """What a token quantizer returns for a batch of latent sequences.

    Attributes:
        quantized: (B, L, D) quantized vectors with straight-through gradients, in the input dtype.
        codes: (B, L * codes_per_position) int64 code ids in [0, codebook_size).
        loss: scalar float32 quantizer loss (commitment + codebook terms; 0 for FSQ).
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    loss: torch.Tensor


def check_codes(codes: torch.Tensor, codebook_size: int, name: str = "codes") -> torch.Tensor:
    """Validate an integer code tensor: every id in [0, codebook_size). Returns it as int64."""
    if not isinstance(codes, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of integer code ids, got {type(codes).__name__}")
    if codes.dtype.is_floating_point or codes.dtype == torch.bool or codes.is_complex():
        raise ValueError(f"{name} must hold integer code ids, got dtype {codes.dtype}")
    if codes.numel() > 0:
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= codebook_size:
            raise ValueError(f"{name} must lie in [0, {codebook_size}); got values in [{low}, {high}]")
    return codes.long()


def check_probabilities(probs: torch.Tensor, codebook_size: int, name: str = "code_probs") -> torch.Tensor:
    """Validate per-position code probabilities (..., V): finite, non-negative, last dim = V."""
    if not isinstance(probs, torch.Tensor) or not probs.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point torch.Tensor of shape (..., {codebook_size})")
    if probs.shape[-1] != codebook_size:
        raise ValueError(f"{name} must have last dimension {codebook_size} (the codebook size), "
                         f"got shape {tuple(probs.shape)}")
    if not torch.isfinite(probs).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if (probs < 0).any():
        raise ValueError(f"{name} contains negative values; pass probabilities, not logits")
    return probs


class CosineVectorQuantizer(nn.Module):
    """Cosine nearest-neighbour VQ with a SimVQ projection, straight-through gradients.

    Args:
        codebook_size: number of codes V.
        dim: code dimension D.
        commitment_cost: weight β of ‖sg(q) − z‖² (the codebook term ‖q − sg(z)‖² has weight 1
            and trains the projection).
    """

    codes_per_position = 1

    def __init__(self, codebook_size: int = 1024, dim: int = 12, commitment_cost: float = 0.01):
        super().__init__()
        if codebook_size < 2 or dim < 1:
            raise ValueError(f"codebook_size must be ≥ 2 and dim ≥ 1, got {codebook_size}, {dim}")
        self.codebook_size = codebook_size
        self.dim = dim
        self.commitment_cost = commitment_cost
        self.embedding = nn.Embedding(codebook_size, dim)
        nn.init.normal_(self.embedding.weight, std=dim ** -0.5)
        self.embedding.weight.requires_grad_(False)
        self.embedding_proj = nn.Linear(dim, dim, bias=False)

    def codebook(self) -> torch.Tensor:
        """The projected, L2-normalised codebook: (V, D) float32."""
        projected = F.linear(self.embedding.weight.float(), self.embedding_proj.weight.float())
        return F.normalize(projected, dim=-1)

    def projected_codebook(self) -> torch.Tensor:
        """The projected codebook before normalisation: (V, D) float32."""
        return F.linear(self.embedding.weight.float(), self.embedding_proj.weight.float())

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """z (B, L, D) → quantized (B, L, D), codes (B, L), loss."""
        if z.ndim != 3 or z.shape[-1] != self.dim:
            raise ValueError(f"z must have shape (B, L, {self.dim}), got {tuple(z.shape)}")
        out_dtype = z.dtype
        with torch.autocast(device_type=z.device.type, enabled=False):
            z_n = F.normalize(z.float(), dim=-1)
            codebook = self.codebook()
            # For unit vectors argmin ‖z − e‖² = argmax z·e; the float32 matmul keeps it exact enough.
            codes = torch.einsum("bld,vd->blv", z_n, codebook).argmax(dim=-1)
            q = F.embedding(codes, codebook)
            commitment = torch.mean((q.detach() - z_n) ** 2)
            codebook_term = torch.mean((q - z_n.detach()) ** 2)
            loss = self.commitment_cost * commitment + codebook_term
            q = z_n + (q - z_n).detach()
        return QuantizerOutput(quantized=q.to(out_dtype), codes=codes, loss=loss)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T) int → code vectors (B, T, D) float32."""
        codes = check_codes(codes, self.codebook_size)
        return F.embedding(codes, self.codebook())

    def soft_lookup(self, probs: torch.Tensor, renormalize: bool = True) -> torch.Tensor:
        """Per-position code probabilities (B, T, V) → expected code vectors (B, T, D) float32.

        ``renormalize=True`` L2-normalises the mixture ``probs @ projected_codebook`` (what the
        official quantizer does for probability inputs); a one-hot row then gives exactly the
        hard code's vector. ``renormalize=False`` returns the raw mixture of projected rows, which
        is what the official LMM feeds its de-tokenizer.
        """
        probs = check_probabilities(probs, self.codebook_size)
        mixed = probs.float() @ self.projected_codebook()
        return F.normalize(mixed, dim=-1) if renormalize else mixed

    def extra_repr(self) -> str:
        return f"codebook_size={self.codebook_size}, dim={self.dim}, commitment_cost={self.commitment_cost}"
