"""Tokenizer reconstruction accuracy (r-Acc): how well encode → decode gives a mask back.

For each mask, ``codes = tokenizer.encode(image, masks)`` (N, L) and, for each prefix length l,
``tokenizer.decode(image, codes[:, :l], size=(H, W))``; the mask's score is the IoU of the
decoded mask with the original (1.0 when both are empty). r-Acc at l is the mean over all masks.
For SAMTok l ∈ {1, 2} (level 0 alone, both levels); for HiMTok l ∈ 1..32 shows how quality grows
along the coarse-to-fine sequence. Works with any object following
:class:`masktok.tokenizers.base.MaskTokenizer`; IoU is computed by torch on the device the
decoded masks live on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from masktok.eval.protocol import STRICT
from masktok.masks.arrays import is_tensor
from masktok.masks.iou import torch_intersection_union

if TYPE_CHECKING:
    import torch
from masktok.eval.res import res_sample_iou


@dataclass(frozen=True)
class ReconMetrics:
    """Mean IoU per prefix length (fractions in [0, 1]); ``full_length`` is the longest."""

    r_acc: dict[int, float]
    num_masks: int
    full_length: int

    def as_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"r-Acc": self.r_acc[self.full_length]}
        out.update({f"r-Acc@{length}": v for length, v in self.r_acc.items()})
        out["num_masks"] = self.num_masks
        return out


def _as_bool_tensor(masks: Any, name: str) -> torch.Tensor:
    import torch

    t = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks)
    if t.ndim != 3:
        raise ValueError(f"{name}: expected (N, H, W), got shape {tuple(t.shape)}")
    if t.dtype != torch.bool:
        if t.dtype.is_floating_point or bool(((t != 0) & (t != 1)).any()):
            raise ValueError(f"{name}: masks must be boolean or 0/1 integers, got {t.dtype}")
        t = t.bool()
    return t


def reconstruction_ious(tokenizer: Any, image: Any, masks: Any,
                        prefix_lengths: Sequence[int] | None = None) -> dict[int, np.ndarray]:
    """IoU of each mask with its reconstruction, per prefix length.

    Args:
        tokenizer: a :class:`~masktok.tokenizers.base.MaskTokenizer`.
        image: whatever the tokenizer's ``encode``/``decode`` take (ignored by image-free ones).
        masks: (N, H, W) bool masks at the image's size.
        prefix_lengths: code lengths to decode (default: every length 1..L).
    Returns:
        prefix length → (N,) float64 IoUs.
    """
    gt = _as_bool_tensor(masks, "masks")
    n, h, w = gt.shape
    if n == 0:
        return {}
    codes = tokenizer.encode(image, gt)
    if not is_tensor(codes) or codes.ndim != 2 or codes.shape[0] != n:
        raise ValueError(f"tokenizer.encode returned {type(codes).__name__} "
                         f"{tuple(getattr(codes, 'shape', ()))}; expected an (N={n}, L) tensor")
    full = int(codes.shape[1])
    lengths = list(range(1, full + 1)) if prefix_lengths is None else [int(x) for x in prefix_lengths]
    for length in lengths:
        if not 1 <= length <= full:
            raise ValueError(f"prefix length {length} is outside 1..{full} (the tokenizer's code length)")
    out: dict[int, np.ndarray] = {}
    for length in lengths:
        decoded = tokenizer.decode(image, codes[:, :length], size=(h, w))
        decoded = _as_bool_tensor(decoded, "tokenizer.decode output")
        if tuple(decoded.shape) != (n, h, w):
            raise ValueError(f"tokenizer.decode returned {tuple(decoded.shape)}, expected {(n, h, w)}")
        inter, union = torch_intersection_union(decoded, gt, device=decoded.device)
        out[length] = res_sample_iou(inter, union, STRICT).cpu().numpy()
    return out


def evaluate_reconstruction(tokenizer: Any, samples: Iterable[tuple[Any, Any]],
                            prefix_lengths: Sequence[int] | None = None,
                            per_mask: list[dict] | None = None) -> ReconMetrics:
    """r-Acc over ``(image, masks (N, H, W))`` samples; ``per_mask`` receives one row per mask."""
    sums: dict[int, list[np.ndarray]] = {}
    for index, (image, masks) in enumerate(samples):
        ious = reconstruction_ious(tokenizer, image, masks, prefix_lengths)
        for length, values in ious.items():
            sums.setdefault(length, []).append(values)
        if ious and per_mask is not None:
            for j in range(len(next(iter(ious.values())))):
                per_mask.append({"sample": index, "mask": j,
                                 **{f"iou@{length}": float(v[j]) for length, v in ious.items()}})
    if not sums:
        raise ValueError("reconstruction accuracy needs at least one mask")
    r_acc = {length: float(np.concatenate(v).mean()) for length, v in sorted(sums.items())}
    num = int(sum(len(v) for v in sums[next(iter(sums))]))
    return ReconMetrics(r_acc=r_acc, num_masks=num, full_length=max(r_acc))
