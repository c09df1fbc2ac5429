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


def blur_and_renormalize(masks: torch.Tensor, sigma: float) -> torch.Tensor:
    """masks (B, 1, H, W) float → float32 Gaussian-blurred (zero padding), each rescaled to max 1.

    The 2-D kernel exp(−(x² + y²) / 2σ²) / Σ is separable, so two 1-D passes give the same
    result as the reference's 2-D convolution. All-zero masks stay all zero.
    """
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must have shape (B, 1, H, W), got {tuple(masks.shape)}")
    kernel = gaussian_kernel1d(sigma, masks.device)
    radius = kernel.numel() // 2
    with torch.autocast(device_type=masks.device.type, enabled=False):  # float32 targets under autocast too
        x = masks.float()
        x = F.conv2d(x, kernel.view(1, 1, 1, -1), padding=(0, radius))
        x = F.conv2d(x, kernel.view(1, 1, -1, 1), padding=(radius, 0))
        peak = x.amax(dim=(2, 3), keepdim=True).clamp(min=1e-6)
        return x / peak


def level_targets(masks: torch.Tensor, prefix_lengths: torch.Tensor, num_latent_tokens: int) -> torch.Tensor:
    """masks (B, 1, H, W) in [0, 1], prefix_lengths (B, n) in [1, K] → targets (B, n, H, W) float32.

    Level K (the full level) is the mask itself; a level l < K is the blurred, renormalised mask
    with σ = level_sigma(l) (levels with σ ≤ 0, i.e. l ≥ 49 when K > 49, need no blur).
    """
    if prefix_lengths.ndim != 2 or prefix_lengths.shape[0] != masks.shape[0]:
        raise ValueError(f"prefix_lengths must have shape (B, n) with B = {masks.shape[0]}, "
                         f"got {tuple(prefix_lengths.shape)}")
    if int(prefix_lengths.min()) < 1 or int(prefix_lengths.max()) > num_latent_tokens:
        raise ValueError(f"prefix_lengths must lie in [1, {num_latent_tokens}]")
    batch, n = prefix_lengths.shape
    targets = masks.float().expand(batch, n, *masks.shape[2:]).clone()
    lengths = prefix_lengths.to(masks.device)
    for level in torch.unique(lengths).tolist():
        sigma = level_sigma(level)
        if level >= num_latent_tokens or sigma <= 0:
            continue
        rows, cols = torch.nonzero(lengths == level, as_tuple=True)
        blurred = blur_and_renormalize(masks[rows].float(), sigma)
        targets[rows, cols] = blurred[:, 0]
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
    """Sum over sampled levels of (bce_weight · BCE + dice_weight · Dice).

    BCE is the mean over pixels and masks of one level; Dice is the per-mask soft Dice averaged
    over masks. Both are computed from logits in float32.
    """

    def __init__(self, num_latent_tokens: int, bce_weight: float = 1.0, dice_weight: float = 1.0):
        self.num_latent_tokens = num_latent_tokens
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight

    def __call__(self, logits: torch.Tensor, masks: torch.Tensor,
                 prefix_lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """logits (B, n, H, W), masks (B, 1, H, W) in [0, 1], prefix_lengths (B, n) →
        dict(loss, bce, dice, per_level (n,)) — ``bce``/``dice`` are summed over levels too."""
        if logits.ndim != 4 or logits.shape[:2] != prefix_lengths.shape:
            raise ValueError(f"logits (B, n, H, W) must match prefix_lengths (B, n); got "
                             f"{tuple(logits.shape)} and {tuple(prefix_lengths.shape)}")
        if masks.shape[0] != logits.shape[0] or masks.shape[2:] != logits.shape[2:]:
            raise ValueError(f"masks {tuple(masks.shape)} must be (B, 1, H, W) matching logits {tuple(logits.shape)}")
        targets = level_targets(masks, prefix_lengths, self.num_latent_tokens)
        bce = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none").mean(dim=(0, 2, 3))
        dice = dice_loss(logits, targets).mean(dim=0)
        per_level = self.bce_weight * bce + self.dice_weight * dice
        return {"loss": per_level.sum(), "bce": bce.sum(), "dice": dice.sum(), "per_level": per_level.detach()}
