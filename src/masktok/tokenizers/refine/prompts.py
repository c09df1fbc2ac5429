"""The prompts HiMTok's refinement gives SAM for a batch of soft masks (the official
``MaskDecoder.decode`` / ``calculate_mask_properties`` in LMM-HiMTok ``himt/himt.py``):

- dense: the mask at SAM's mask-input size m×m (m = S/4: 256 for 1024² inputs) as logits
  (2p − 1) · 6 of its probabilities p;
- one point at the mask's centroid (probability-weighted) in the S×S input frame;
- its label: background (0) when the mask touches the frame border and is not compact
  (4π·area / perimeter² < 0.1, a thin or ragged region), else foreground (1); an empty mask gets
  the frame centre as a foreground point.

The official code applies the border/compactness rule to the soft map itself, where nearly every
pixel is non-zero, so nearly every prompt there is a background point; here the rule reads the
mask thresholded at 0.5, which is what it describes. Refiners fine-tuned with
:mod:`masktok.train.refine` see the same rule in training and inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MASK_LOGIT_SCALE = 6.0
COMPACTNESS_LIMIT = 0.1


@dataclass
class RefinePrompts:
    """Prompts for N masks.

    Attributes:
        mask_logits: (N, 1, m, m) float32 dense prompts.
        points: (N, 1, 1, 2) float32 (x, y) in the S×S input frame.
        labels: (N, 1, 1) int32, 1 foreground / 0 background.
    """

    mask_logits: torch.Tensor
    points: torch.Tensor
    labels: torch.Tensor


def _perimeter(binary: torch.Tensor) -> torch.Tensor:
    """(N, m, m) bool → (N,) pixels outside each mask that touch it (3×3 dilation ring)."""
    dilated = F.max_pool2d(binary.float().unsqueeze(1), 3, stride=1, padding=1)[:, 0] > 0
    return (dilated & ~binary).flatten(1).sum(1).float()


def refine_prompts(probs: torch.Tensor, *, mask_size: int, image_size: int) -> RefinePrompts:
    """probs (N, h, w) float in [0, 1] in the stretched image frame (any size) → prompts."""
    if probs.ndim != 3:
        raise ValueError(f"probs must have shape (N, H, W), got {tuple(probs.shape)}")
    if probs.is_floating_point() and (probs.min() < 0 or probs.max() > 1):
        raise ValueError("probs must be probabilities in [0, 1]")
    maps = probs.float().unsqueeze(1)
    if maps.shape[-2:] != (mask_size, mask_size) and maps.shape[0] > 0:
        maps = F.interpolate(maps, size=(mask_size, mask_size), mode="bilinear", align_corners=False)
    maps = maps[:, 0].clamp(0, 1)
    n = maps.shape[0]
    grid = torch.arange(mask_size, dtype=torch.float32, device=maps.device)
    mass = maps.flatten(1).sum(1)
    safe = mass.clamp_min(1e-12)
    cx = (maps.sum(1) * grid).sum(1) / safe
    cy = (maps.sum(2) * grid).sum(1) / safe
    centre = torch.full_like(cx, mask_size * 0.5)
    empty = mass <= 0
    cx, cy = torch.where(empty, centre, cx), torch.where(empty, centre, cy)
    binary = maps > 0.5
    border = binary[:, 0].any(1) | binary[:, -1].any(1) | binary[:, :, 0].any(1) | binary[:, :, -1].any(1)
    perimeter = _perimeter(binary)
    area = binary.flatten(1).sum(1).float()
    compact = torch.where(perimeter > 0, 4 * math.pi * area / perimeter.clamp_min(1) ** 2, torch.zeros_like(area))
    background = border & (compact < COMPACTNESS_LIMIT) & ~empty
    scale = image_size / mask_size
    points = torch.stack([cx, cy], dim=-1).view(n, 1, 1, 2) * scale
    labels = (~background).to(torch.int32).view(n, 1, 1)
    return RefinePrompts((maps * 2 - 1).unsqueeze(1) * MASK_LOGIT_SCALE, points, labels)
