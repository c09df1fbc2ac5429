"""Training objectives of the two tokenizer families.

HiMTok (:class:`HiMTokObjective`): the hierarchical mask loss over a few randomly drawn prefix
lengths plus the full length, summed, plus the quantizer loss.

SAMTok (:func:`point_sampled_mask_loss`): 2·BCE + 0.5·Dice on the chosen 256² mask logits,
evaluated at PointRend-style uncertainty-sampled points (12544 points, oversample 3,
importance 0.75), plus the quantizer's commitment loss (weight 1).

Each objective is an ``nn.Module`` whose ``forward`` runs the model, so ``DistributedDataParallel``
can wrap it and synchronise gradients as usual.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masktok.tokenizers.himtok.loss import HierarchicalMaskLoss, sample_prefix_lengths


class HiMTokObjective(nn.Module):
    """Wraps a :class:`HiMTokModel`; ``forward(masks, generator)`` → (loss, metrics).

    Args:
        model: the HiMTok network (trained in full).
        num_partial: random partial prefix lengths per mask (drawn ∝ 1 / (l + 8)), plus the full one.
        quant_weight: weight of the quantizer loss.
        sigma_scale: scales the target blur of the partial levels (1: the official schedule).
    """

    def __init__(self, model: nn.Module, num_partial: int = 3, quant_weight: float = 1.0, sigma_scale: float = 1.0):
        super().__init__()
        self.model = model
        self.num_partial = num_partial
        self.quant_weight = quant_weight
        self.loss = HierarchicalMaskLoss(model.config.num_latent_tokens, sigma_scale=sigma_scale)

    def forward(self, masks: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """masks (B, 1, S, S) float in [0, 1] → scalar loss and detached metrics."""
        slots = self.model.config.num_latent_tokens
        # Drawn and kept on the CPU: the model and the loss check and group them there, without
        # waiting for the accelerator.
        lengths = sample_prefix_lengths(masks.shape[0], slots, self.num_partial, generator=generator)
        out = self.model.forward_train(masks, lengths)
        losses = self.loss(out["logits"], masks, lengths)
        total = losses["loss"] + self.quant_weight * out["quant_loss"]
        with torch.no_grad():
            full = out["logits"][:, -1].float() > 0
            target = masks[:, 0] > 0.5
            inter = (full & target).flatten(1).sum(1).float()
            union = (full | target).flatten(1).sum(1).float()
            iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).mean()
            codes = out["codes"]
            usage = torch.bincount(codes.flatten(), minlength=self.model.config.codebook_size).float()
            probs = usage / usage.sum()
            perplexity = torch.exp(-(probs * torch.log(probs.clamp(min=1e-12))).sum())
        metrics = {"loss": total.detach(), "mask_loss": losses["loss"].detach(), "bce": losses["bce"].detach(),
                   "dice": losses["dice"].detach(), "quant_loss": out["quant_loss"].detach(),
                   "train_iou_full": iou, "code_perplexity": perplexity}
        return total, metrics


# ---- SAMTok: PointRend-style point-sampled mask loss ------------------------------------------
def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """maps (N, C, H, W), coords (N, P, 2) in [0, 1] (x, y) → bilinear samples (N, C, P)."""
    grid = (2.0 * coords - 1.0).unsqueeze(2)
    return F.grid_sample(maps, grid.to(maps.dtype), mode="bilinear", align_corners=False).squeeze(3)


def uncertain_point_coords(logits: torch.Tensor, num_points: int = 12544, oversample_ratio: float = 3.0,
                           importance_sample_ratio: float = 0.75,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """PointRend training points: of ``oversample_ratio · num_points`` uniform candidates keep the
    ``importance_sample_ratio · num_points`` most uncertain (|logit| smallest), add uniform ones.

    logits (N, 1, H, W) → coords (N, num_points, 2) in [0, 1].
    """
    n, device = logits.shape[0], logits.device
    candidates = torch.rand(n, int(num_points * oversample_ratio), 2, device=device, generator=generator)
    with torch.no_grad():
        uncertainty = -point_sample(logits.detach().float(), candidates).abs()[:, 0]
    num_uncertain = int(importance_sample_ratio * num_points)
    top = uncertainty.topk(num_uncertain, dim=1).indices
    picked = torch.gather(candidates, 1, top.unsqueeze(-1).expand(-1, -1, 2))
    uniform = torch.rand(n, num_points - num_uncertain, 2, device=device, generator=generator)
    return torch.cat([picked, uniform], dim=1)


def point_sampled_mask_loss(logits: torch.Tensor, targets: torch.Tensor, num_points: int = 12544,
                            oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75,
                            bce_weight: float = 2.0, dice_weight: float = 0.5,
                            generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """logits (N, 1, H, W), targets (N, 1, h, w) in [0, 1] → dict(loss, bce, dice) (means over masks)."""
    if logits.ndim != 4 or targets.ndim != 4 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"logits and targets must be (N, 1, H, W) with equal N; got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    coords = uncertain_point_coords(logits, num_points, oversample_ratio, importance_sample_ratio, generator)
    point_logits = point_sample(logits.float(), coords)[:, 0]
    with torch.no_grad():
        point_targets = point_sample(targets.float(), coords)[:, 0]
    bce = F.binary_cross_entropy_with_logits(point_logits, point_targets, reduction="none").mean(1)
    probs = point_logits.sigmoid()
    dice = 1 - (2 * (probs * point_targets).sum(1) + 1) / (probs.sum(1) + point_targets.sum(1) + 1)
    bce, dice = bce.mean(), dice.mean()
    return {"loss": bce_weight * bce + dice_weight * dice, "bce": bce, "dice": dice}
