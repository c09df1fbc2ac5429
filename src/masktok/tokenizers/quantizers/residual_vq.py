"""Residual vector quantization with EMA codebooks (SAMTok: 2 levels × 256 codes, not shared).

Level d picks, for the current residual r_d, the code of codebook d at the smallest squared L2
distance, subtracts that codeword and hands the rest to level d + 1 (r_0 = x). The quantized vector
is the sum of the chosen codewords, so any *prefix* of the codes is itself a coarser quantization.

Layout (the one of SAMTok's ``mask_tokenizer_256x2.pth``), per level ``codebooks.<d>``:

- ``weight`` (K + 1, D): the K codewords plus an all-zero padding row K (never chosen, never
  updated by EMA), kept for checkpoint compatibility;
- ``cluster_size_ema`` (K,) and ``embed_ema`` (K, D): exponential moving averages of how many
  vectors each code received and of their sum.

Training (``module.train()``) updates the codebooks by EMA instead of gradients: with decay γ
(0.99), ``cluster_size_ema ← γ·cluster_size_ema + (1−γ)·counts`` and likewise for ``embed_ema``;
codes whose EMA count falls below ``dead_code_threshold`` (1) are restarted from vectors of the
current batch; the codewords are then ``embed_ema / n_k`` with Laplace smoothing
``n_k = N·(c_k + ε) / (N + K·ε)`` (ε = 1e-5). Under ``torch.distributed`` the counts and sums are
all-reduced and the restart vectors are drawn on rank 0 and broadcast, so every rank keeps the same
codebooks; without a process group it runs in a single process. The commitment loss is the mean
over levels of ‖x − sg(x̂_≤d)‖² (x̂_≤d: the cumulative quantization after level d) and the
quantized output carries straight-through gradients.

Distances are computed in float32 with ``‖r‖² + ‖c‖² − 2 r·c`` (the reference's formula, so near
ties break the same way), whatever the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class ResidualVQOutput:
    """What :class:`ResidualVQ` returns for a batch of vectors.

    Attributes:
        quantized: (..., D) the full quantization with straight-through gradients (input dtype).
        codes: (..., depth) int64 code ids, position d in [0, codebook_size(d)).
        loss: scalar float32 commitment loss (mean over levels of ‖x − sg(x̂_≤d)‖²).
        partial_quantized: per level d, (..., D) float32 cumulative quantization x̂_≤d (no grad).
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    loss: torch.Tensor
    partial_quantized: list[torch.Tensor]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class EMACodebook(nn.Module):
    """One codebook of K codewords of dimension D with a zero padding row and EMA statistics."""

    def __init__(self, codebook_size: int, dim: int, *, decay: float = 0.99, eps: float = 1e-5,
                 dead_code_threshold: float = 1.0, restart_dead_codes: bool = True) -> None:
        super().__init__()
        if codebook_size < 1 or dim < 1:
            raise ValueError(f"codebook_size and dim must be ≥ 1, got {codebook_size} and {dim}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.codebook_size = codebook_size
        self.dim = dim
        self.decay = decay
        self.eps = eps
        self.dead_code_threshold = dead_code_threshold
        self.restart_dead_codes = restart_dead_codes
        weight = torch.randn(codebook_size + 1, dim)
        weight[codebook_size].zero_()
        # EMA-updated, never trained by gradient descent.
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.register_buffer("cluster_size_ema", torch.zeros(codebook_size))
        self.register_buffer("embed_ema", weight[:codebook_size].clone())

    @property
    def codewords(self) -> torch.Tensor:
        """(K, D) the codewords, without the padding row."""
        return self.weight[: self.codebook_size]

    @torch.no_grad()
    def distances(self, vectors: torch.Tensor) -> torch.Tensor:
        """(..., D) vectors → (..., K) float32 squared L2 distances to every codeword."""
        flat = vectors.reshape(-1, self.dim).float()
        codebook_t = self.codewords.float().t()
        dist_sq = torch.addmm(flat.pow(2).sum(dim=1, keepdim=True) + codebook_t.pow(2).sum(dim=0, keepdim=True),
                              flat, codebook_t, alpha=-2.0)
        return dist_sq.reshape(*vectors.shape[:-1], self.codebook_size)

    @torch.no_grad()
    def nearest(self, vectors: torch.Tensor) -> torch.Tensor:
        """(..., D) → (...,) int64 index of the nearest codeword."""
        return self.distances(vectors).argmin(dim=-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(...,) int64 codes in [0, K] (K = the zero padding row) → (..., D) codewords."""
        return nn.functional.embedding(codes, self.weight)

    @torch.no_grad()
    def ema_update(self, vectors: torch.Tensor, codes: torch.Tensor) -> None:
        """Fold a batch (N, D) with its assigned codes (N,) into the EMA statistics and restart
        dead codes. The codewords themselves change in :meth:`refresh_weight`."""
        vectors = vectors.reshape(-1, self.dim).float()
        codes = codes.reshape(-1)
        counts = torch.zeros(self.codebook_size, device=vectors.device, dtype=torch.float32)
        counts.index_add_(0, codes, torch.ones_like(codes, dtype=torch.float32))
        sums = torch.zeros(self.codebook_size, self.dim, device=vectors.device, dtype=torch.float32)
        sums.index_add_(0, codes, vectors)
        if _distributed():
            dist.all_reduce(counts, op=dist.ReduceOp.SUM)
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        self.cluster_size_ema.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
        self.embed_ema.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        if self.restart_dead_codes and vectors.shape[0] > 0:
            self._restart_dead_codes(vectors)

    @torch.no_grad()
    def _restart_dead_codes(self, vectors: torch.Tensor) -> None:
        """Codes with EMA count < threshold take a random vector of the batch (rank 0's choice)."""
        candidates = vectors
        if candidates.shape[0] < self.codebook_size:  # tile with a little noise to have K rows
            repeats = -(-self.codebook_size // candidates.shape[0])
            candidates = candidates.repeat(repeats, 1)
            candidates = candidates + torch.rand_like(candidates) * (0.01 / self.dim ** 0.5)
        order = torch.randperm(candidates.shape[0], device=candidates.device)[: self.codebook_size]
        replacements = candidates[order].contiguous()
        if _distributed():
            dist.broadcast(replacements, src=0)
        alive = (self.cluster_size_ema >= self.dead_code_threshold).float()
        # A restarted code holds one replacement vector at count = threshold (official: 1).
        count = self.dead_code_threshold
        self.embed_ema.mul_(alive[:, None]).add_(replacements * (count * (1.0 - alive[:, None])))
        self.cluster_size_ema.mul_(alive).add_(count * (1.0 - alive))

    @torch.no_grad()
    def refresh_weight(self) -> None:
        """Codewords ← embed_ema / Laplace-smoothed counts (padding row stays zero)."""
        total = self.cluster_size_ema.sum()
        smoothed = total * (self.cluster_size_ema + self.eps) / (total + self.codebook_size * self.eps)
        self.weight[: self.codebook_size] = (self.embed_ema / smoothed[:, None]).to(self.weight.dtype)


class ResidualVQ(nn.Module):
    """Residual VQ over ``depth`` levels, each with its own (or one shared) :class:`EMACodebook`.

    Args:
        dim: vector dimension D.
        codebook_size: K, an int for every level or one int per level (separate codebooks only).
        depth: number of levels (codes per vector).
        shared: one codebook used at every level (its state-dict entries repeat per level).
        decay, eps, dead_code_threshold, restart_dead_codes: EMA settings (module docstring).
    """

    def __init__(self, dim: int, codebook_size: int | list[int] = 256, depth: int = 2, *,
                 shared: bool = False, decay: float = 0.99, eps: float = 1e-5,
                 dead_code_threshold: float = 1.0, restart_dead_codes: bool = True) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be ≥ 1, got {depth}")
        sizes = [codebook_size] * depth if isinstance(codebook_size, int) else list(codebook_size)
        if len(sizes) != depth:
            raise ValueError(f"codebook_size lists {len(sizes)} sizes for depth {depth}")
        if shared and len(set(sizes)) != 1:
            raise ValueError(f"a shared codebook needs one size for every level, got {sizes}")
        settings = dict(decay=decay, eps=eps, dead_code_threshold=dead_code_threshold,
                        restart_dead_codes=restart_dead_codes)
        if shared:
            book = EMACodebook(sizes[0], dim, **settings)
            self.codebooks = nn.ModuleList([book] * depth)
        else:
            self.codebooks = nn.ModuleList([EMACodebook(k, dim, **settings) for k in sizes])
        self.dim = dim
        self.depth = depth
        self.shared = shared
        self.codebook_sizes = sizes

    @torch.no_grad()
    def quantize(self, x: torch.Tensor, update_codebooks: bool | None = None
                 ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(..., D) → codes (..., depth) and the cumulative quantizations x̂_≤d (float32).

        ``update_codebooks`` (default: ``self.training``) folds each level's assignment into its
        EMA statistics; the codeword used for a vector is the one before this batch's update.
        """
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected vectors of dimension {self.dim}, got shape {tuple(x.shape)}")
        update = self.training if update_codebooks is None else update_codebooks
        residual = x.detach().float()
        cumulative = torch.zeros_like(residual)
        codes, partial = [], []
        for book in self.codebooks:
            level_codes = book.nearest(residual)
            chosen = book.lookup(level_codes).float()
            if update:
                book.ema_update(residual, level_codes)
                book.refresh_weight()
            residual = residual - chosen
            cumulative = cumulative + chosen
            codes.append(level_codes)
            partial.append(cumulative)
        return torch.stack(codes, dim=-1), partial

    def forward(self, x: torch.Tensor, update_codebooks: bool | None = None) -> ResidualVQOutput:
        """(..., D) → :class:`ResidualVQOutput`; gradients reach ``x`` through the straight-through
        estimator and the commitment loss."""
        codes, partial = self.quantize(x, update_codebooks)
        x32 = x.float()
        loss = torch.stack([(x32 - q).pow(2).mean() for q in partial]).mean()
        quantized = x + (partial[-1].to(x.dtype) - x).detach()
        return ResidualVQOutput(quantized=quantized, codes=codes, loss=loss, partial_quantized=partial)

    def check_codes(self, codes: torch.Tensor, name: str = "codes") -> torch.Tensor:
        """Validate codes (..., L) with 1 ≤ L ≤ depth: level-d entries in [0, K_d), or −1 for a
        level left out, allowed only after the last present level (a prefix). Returns int64."""
        if not isinstance(codes, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of integer code ids, got {type(codes).__name__}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool or codes.is_complex():
            raise ValueError(f"{name} must hold integer code ids, got dtype {codes.dtype}")
        if codes.dim() == 0 or not 1 <= codes.shape[-1] <= self.depth:
            raise ValueError(f"{name} must have shape (..., L) with 1 ≤ L ≤ {self.depth}, "
                             f"got {tuple(codes.shape)}")
        codes = codes.long()
        if codes.numel() == 0:
            return codes
        for level in range(codes.shape[-1]):
            column = codes[..., level]
            bad = (column < -1) | (column >= self.codebook_sizes[level])
            if level == 0:
                bad = bad | (column == -1)
            if bad.any():
                where = bad.nonzero()[0].tolist()
                raise ValueError(f"{name}{where}: level-{level} code {int(column[tuple(where)])} is "
                                 f"outside [0, {self.codebook_sizes[level]})")
            if level > 0:
                reopened = (codes[..., level - 1] == -1) & (column != -1)
                if reopened.any():
                    where = reopened.nonzero()[0].tolist()
                    raise ValueError(f"{name}{where}: level {level} is given but level {level - 1} "
                                     "is missing (−1); only a prefix of levels may be given")
        return codes

    def lookup(self, codes: torch.Tensor, *, check: bool = True) -> torch.Tensor:
        """Codes (..., L), L ≤ depth (a prefix; −1 marks a trailing level left out) → (..., D)
        float32 sum of the chosen codewords. Invalid codes raise ``ValueError``; ``check=False``
        skips that validation (for codes already checked with :meth:`check_codes`, e.g. on the
        host before an upload, since checking device tensors synchronises with the device)."""
        codes = self.check_codes(codes) if check else codes.long()
        out = torch.zeros(*codes.shape[:-1], self.dim, device=self.codebooks[0].weight.device)
        for level in range(codes.shape[-1]):
            column = codes[..., level].to(out.device)
            book = self.codebooks[level]
            present = column >= 0
            chosen = book.lookup(column.clamp(min=0)).float()
            out = out + torch.where(present[..., None], chosen, torch.zeros_like(chosen))
        return out
