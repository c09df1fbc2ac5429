"""The hierarchical mask loss (HiMTok §3.2 and appendix B).

For a kept prefix of l of the K latent slots, the target is the mask blurred by a Gaussian of
σ_l = 100 / (l + 1) − 2 (kernel side 2·⌈3σ⌉ + 1, zero padding), renormalised so that each mask's
maximum is 1; the full level l = K uses the sharp mask. Each step trains the full level plus a few
partial levels drawn without replacement with p(l) ∝ 1 / (l + 8), 1 ≤ l < K. Every sampled level
contributes BCE + Dice and the levels are summed (the reference's released code only counted the
last sampled level).

Typical step::

    lengths = sample_prefix_lengths(B, K, num_partial=3)          # (B, 4), last column = K
    out = model.forward_train(masks, lengths)                     # logits (B, 4, S, S)
    losses = HierarchicalMaskLoss(K)(out["logits"], masks, lengths)
    total = losses["loss"] + out["quant_loss"]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def level_sigma(level: int) -> float:
    """σ of the Gaussian target blur for a prefix of ``level`` slots: 100 / (level + 1) − 2."""
    if level < 1:
        raise ValueError(f"level must be ≥ 1, got {level}")
    return 100.0 / (level + 1) - 2.0


def gaussian_kernel1d(sigma: float, device: torch.device | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian of side 2·⌈3σ⌉ + 1 (float32)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    radius = math.ceil(3 * sigma)
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    kernel = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return kernel / kernel.sum()


def gaussian_band_matrices(sigmas: torch.Tensor, size: int) -> torch.Tensor:
    """(M,) σ → (M, size, size) float32 matrices G with G[i, j] = k_σ(i − j), k_σ the normalised
    Gaussian of :func:`gaussian_kernel1d` (zero beyond its radius ⌈3σ⌉).

    ``G @ x`` blurs the columns of x with zero padding, ``x @ Gᵀ`` its rows: a band matrix per σ,
    so masks of different levels blur in one batched matmul.
    """
    sigmas = sigmas.float()
    if (sigmas <= 0).any():
        raise ValueError(f"sigmas must be > 0, got {sigmas.tolist()}")
    offsets = torch.arange(size, device=sigmas.device, dtype=torch.float32)
    offsets = offsets.view(1, -1, 1) - offsets.view(1, 1, -1)  # (1, S, S): i − j
    s = sigmas.view(-1, 1, 1)
    radius = torch.ceil(3 * s)
    band = torch.exp(-(offsets ** 2) / (2 * s ** 2)) * (offsets.abs() <= radius)
    # The full kernel's sum (radius ⌈3σ⌉ on both sides, boundary or not), as gaussian_kernel1d.
    taps = torch.arange(-int(radius.max()), int(radius.max()) + 1, device=sigmas.device, dtype=torch.float32)
    taps = taps.view(1, -1)
    total = (torch.exp(-(taps ** 2) / (2 * sigmas.view(-1, 1) ** 2)) * (taps.abs() <= radius.view(-1, 1))).sum(dim=1)
    return band / total.view(-1, 1, 1)


def blur_rows_and_renormalize(masks: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """masks (M, H, W) float, sigmas (M,) > 0 → float32 (M, H, W): mask m blurred by a Gaussian of
    σ = sigmas[m] (kernel side 2·⌈3σ⌉ + 1, zero padding), rescaled to max 1 (all-zero stays zero)."""
    if masks.ndim != 3 or sigmas.shape != masks.shape[:1]:
        raise ValueError(f"masks must be (M, H, W) with one sigma each, got {tuple(masks.shape)} and "
                         f"sigmas {tuple(sigmas.shape)}")
    with torch.autocast(device_type=masks.device.type, enabled=False):  # float32 targets under autocast too
        sigmas = sigmas.to(masks.device)
        height, width = masks.shape[1:]
        rows = gaussian_band_matrices(sigmas, height)
        cols = rows if width == height else gaussian_band_matrices(sigmas, width)
        x = torch.bmm(torch.bmm(rows, masks.float()), cols.transpose(1, 2))
        peak = x.amax(dim=(1, 2), keepdim=True).clamp(min=1e-6)
        return x / peak


def blur_and_renormalize(masks: torch.Tensor, sigma: float) -> torch.Tensor:
    """masks (B, 1, H, W) float → float32 Gaussian-blurred (zero padding), each rescaled to max 1.

    Same result as the reference's 2-D convolution with the kernel exp(−(x² + y²) / 2σ²) / Σ of
    side 2·⌈3σ⌉ + 1 (separable: a column pass and a row pass). All-zero masks stay all zero.
    """
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must have shape (B, 1, H, W), got {tuple(masks.shape)}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    sigmas = torch.full((masks.shape[0],), float(sigma), device=masks.device)
    return blur_rows_and_renormalize(masks[:, 0], sigmas).unsqueeze(1)


def level_targets(masks: torch.Tensor, prefix_lengths: torch.Tensor, num_latent_tokens: int,
                  sigma_scale: float = 1.0) -> torch.Tensor:
    """masks (B, 1, H, W) in [0, 1], prefix_lengths (B, n) in [1, K] → targets (B, n, H, W) float32.

    Level K (the full level) is the mask itself; a level l < K is the blurred, renormalised mask
    with σ = sigma_scale · level_sigma(l) (levels with σ ≤ 0, i.e. l ≥ 49 when K > 49, need no
    blur). ``sigma_scale`` < 1 suits small frames: the schedule's σ is in pixels of the official
    256² frame. All blurred maps of a batch are computed together; pass ``prefix_lengths`` on the
    CPU to keep the accelerator free of host synchronisation.
    """
    if prefix_lengths.ndim != 2 or prefix_lengths.shape[0] != masks.shape[0]:
        raise ValueError(f"prefix_lengths must have shape (B, n) with B = {masks.shape[0]}, "
                         f"got {tuple(prefix_lengths.shape)}")
    lengths = prefix_lengths.cpu()
    if int(lengths.min()) < 1 or int(lengths.max()) > num_latent_tokens:
        raise ValueError(f"prefix_lengths must lie in [1, {num_latent_tokens}]")
    batch, n = lengths.shape
    targets = masks.float().expand(batch, n, *masks.shape[2:]).clone()
    if not sigma_scale > 0:
        raise ValueError(f"sigma_scale must be > 0, got {sigma_scale}")
    sigmas = sigma_scale * (100.0 / (lengths.double() + 1) - 2.0)
    blurred = (lengths < num_latent_tokens) & (sigmas > 0)
    if blurred.any():
        rows, cols = torch.nonzero(blurred, as_tuple=True)
        out = blur_rows_and_renormalize(masks[rows.to(masks.device), 0].float(), sigmas[rows, cols].float())
        targets[rows.to(masks.device), cols.to(masks.device)] = out
    return targets


def sample_prefix_lengths(batch_size: int, num_latent_tokens: int, num_partial: int = 3,
                          generator: torch.Generator | None = None,
                          device: torch.device | str | None = None) -> torch.Tensor:
    """(B, num_partial + 1) int64: per row ``num_partial`` distinct levels l ∈ [1, K) drawn with
    p(l) ∝ 1 / (l + 8), sorted, then the full level K."""
    if num_partial < 0 or num_partial > num_latent_tokens - 1:
        raise ValueError(f"num_partial must be in [0, {num_latent_tokens - 1}] for K = {num_latent_tokens}, "
                         f"got {num_partial}")
    full = torch.full((batch_size, 1), num_latent_tokens, dtype=torch.long)
    if num_partial == 0:
        return full.to(device)
    levels = torch.arange(1, num_latent_tokens, dtype=torch.float32)
    weights = (1.0 / (levels + 8)).expand(batch_size, -1)
    picks = torch.multinomial(weights, num_partial, replacement=False, generator=generator) + 1
    return torch.cat([picks.sort(dim=1).values, full], dim=1).to(device)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Soft Dice per map: 1 − (2 Σ p·t + eps) / (Σ p + Σ t + eps), p = sigmoid(logits).

    logits, targets (..., H, W) → (...) float32.
    """
    probs = torch.sigmoid(logits.float())
    targets = targets.float()
    inter = (probs * targets).sum(dim=(-2, -1))
    total = probs.sum(dim=(-2, -1)) + targets.sum(dim=(-2, -1))
    return 1.0 - (2.0 * inter + eps) / (total + eps)


class HierarchicalMaskLoss:
    """Sum over sampled levels of (bce_weight · BCE + dice_weight · Dice); ``sigma_scale`` scales
    the blur of every partial level (see :func:`level_targets`).

    BCE is the mean over pixels and masks of one level; Dice is the per-mask soft Dice averaged
    over masks. Both are computed from logits in float32.
    """

    def __init__(self, num_latent_tokens: int, bce_weight: float = 1.0, dice_weight: float = 1.0,
                 sigma_scale: float = 1.0):
        self.num_latent_tokens = num_latent_tokens
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight
        self.sigma_scale = sigma_scale

    def __call__(self, logits: torch.Tensor, masks: torch.Tensor,
                 prefix_lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """logits (B, n, H, W), masks (B, 1, H, W) in [0, 1], prefix_lengths (B, n) →
        dict(loss, bce, dice, per_level (n,)) — ``bce``/``dice`` are summed over levels too."""
        if logits.ndim != 4 or logits.shape[:2] != prefix_lengths.shape:
            raise ValueError(f"logits (B, n, H, W) must match prefix_lengths (B, n); got "
                             f"{tuple(logits.shape)} and {tuple(prefix_lengths.shape)}")
        if masks.shape[0] != logits.shape[0] or masks.shape[2:] != logits.shape[2:]:
            raise ValueError(f"masks {tuple(masks.shape)} must be (B, 1, H, W) matching logits {tuple(logits.shape)}")
        targets = level_targets(masks, prefix_lengths, self.num_latent_tokens, self.sigma_scale)
        bce = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none").mean(dim=(0, 2, 3))
        dice = dice_loss(logits, targets).mean(dim=0)
        per_level = self.bce_weight * bce + self.dice_weight * dice
        return {"loss": per_level.sum(), "bce": bce.sum(), "dice": dice.sum(), "per_level": per_level.detach()}
