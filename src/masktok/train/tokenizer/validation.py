"""Validation pass: reconstruction mIoU per prefix length on held-out masks.

The protocol is the tokenizer's own: each mask is stretched (bilinear) to the model frame,
encoded, decoded from its first ``l`` codes, stretched back to the mask's size and thresholded at
probability 0.5; its score is the IoU with the original mask, and the metric is the mean over
masks. :func:`himtok_reconstruction_miou` runs it on a training model (without converting it),
:func:`tokenizer_reconstruction_miou` on any :class:`masktok.tokenizers.base.MaskTokenizer`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from masktok.masks.augment import apply_augment, identity_params
from masktok.data.mask_pools.sources import MaskPool


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> float:
    """IoU of two (H, W) bool tensors (1.0 when both are empty)."""
    union = (pred | target).sum().item()
    return 1.0 if union == 0 else (pred & target).sum().item() / union


@torch.no_grad()
def himtok_reconstruction_miou(model: torch.nn.Module, pool: MaskPool, prefix_lengths: Sequence[int],
                               batch_size: int = 128, autocast_dtype: torch.dtype | None = None
                               ) -> dict[int, float]:
    """Mean IoU per prefix length of a :class:`HiMTokModel` on every mask of ``pool``.

    Args:
        model: the network (its train/eval mode is restored afterwards).
        pool: held-out masks at their own sizes.
        prefix_lengths: code counts to decode from (each in [1, max_codes]).
        autocast_dtype: e.g. ``torch.bfloat16`` on CUDA; None runs in the weights' dtype.

    Returns:
        {length: mIoU}.
    """
    max_codes = model.config.max_codes
    lengths = sorted(set(int(l) for l in prefix_lengths))
    if not lengths or lengths[0] < 1 or lengths[-1] > max_codes:
        raise ValueError(f"prefix_lengths must lie in [1, {max_codes}], got {list(prefix_lengths)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    size = model.config.image_size
    scores: dict[int, list[float]] = {l: [] for l in lengths}
    autocast = (torch.autocast(device_type=device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    if model.config.box_prefix:
        try:
            with autocast:
                return _box_model_miou(model, pool, lengths)
        finally:
            model.train(was_training)
    try:
        for start in range(0, len(pool), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(pool)), device=pool.masks.device)
            masks = pool.masks[idx].to(device)
            sizes = pool.sizes[idx].to(device)
            frames = apply_augment(masks, identity_params(sizes), size)
            with autocast:
                codes = model.encode(frames.to(next(model.parameters()).dtype)).codes
                for length in lengths:
                    logits = model.decode_codes(codes[:, :length]).float()
                    for row in range(len(idx)):
                        h, w = sizes[row].tolist()
                        up = F.interpolate(logits[row:row + 1], size=(h, w), mode="bilinear", align_corners=False)
                        pred = up[0, 0] > 0
                        scores[length].append(mask_iou(pred, masks[row, :h, :w].bool()))
    finally:
        model.train(was_training)
    return {l: float(np.mean(v)) for l, v in scores.items()}


def _box_model_miou(model: torch.nn.Module, pool: MaskPool, lengths: list[int]) -> dict[int, float]:
    """Box-first models, through the tokenizer itself (its box codes depend on each mask's own
    size): the masks are grouped by size and encoded / decoded with :class:`HiMTok`."""
    from masktok.tokenizers.himtok import HiMTok

    weight = next(model.parameters())
    tokenizer = HiMTok(model=model, device=weight.device, dtype=weight.dtype)
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, (h, w) in enumerate(pool.sizes.tolist()):
        by_size.setdefault((h, w), []).append(index)
    samples = ((None, pool.masks[idx, :h, :w].bool()) for (h, w), idx in by_size.items())
    scores, _ = tokenizer_reconstruction_miou(tokenizer, samples, lengths)
    return scores


@torch.no_grad()
def tokenizer_reconstruction_miou(tokenizer, samples, prefix_lengths: Sequence[int]) -> tuple[dict[int, float], int]:
    """Mean IoU per prefix length through the public tokenizer interface.

    Args:
        tokenizer: any object with ``encode(image, masks)`` and ``decode(image, codes, size=)``.
        samples: iterable of (image or None, masks (N, H, W) bool).
        prefix_lengths: code counts to decode from.

    Returns:
        ({length: mIoU}, number of masks).
    """
    scores: dict[int, list[float]] = {int(l): [] for l in prefix_lengths}
    for image, masks in samples:
        masks = masks.cpu().bool() if isinstance(masks, torch.Tensor) else torch.as_tensor(np.asarray(masks)).bool()
        if masks.shape[0] == 0:
            continue
        codes = tokenizer.encode(image, masks)
        for length in scores:
            if length > codes.shape[1]:
                raise ValueError(f"prefix length {length} exceeds the tokenizer's {codes.shape[1]} codes")
            decoded = tokenizer.decode(image, codes[:, :length], size=tuple(masks.shape[1:]))
            scores[length].extend(mask_iou(d.cpu(), m) for d, m in zip(decoded, masks))
    count = len(next(iter(scores.values()))) if scores else 0
    return {l: float(np.mean(v)) if v else float("nan") for l, v in scores.items()}, count
