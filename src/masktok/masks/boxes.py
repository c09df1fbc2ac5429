"""Tight boxes around masks, inclusive pixel convention (as SAM): ``(x1, y1, x2, y2)`` where
x1/x2 are the first/last foreground column and y1/y2 the first/last foreground row.

COCO's ``bbox`` is ``[x, y, w, h]`` with exclusive extent: ``x2 = x + w - 1`` for a tight box.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from masktok.masks.arrays import as_mask, as_mask_stack
from masktok.masks.rle import check_rle

__all__ = ["mask_to_box", "masks_to_boxes", "rle_to_box", "coco_bbox_to_xyxy"]


def mask_to_box(mask: Any) -> tuple[int, int, int, int]:
    """(H, W) binary mask → inclusive ``(x1, y1, x2, y2)``; ValueError for an empty mask."""
    m = as_mask(mask)
    cols = np.flatnonzero(m.any(axis=0))
    if cols.size == 0:
        raise ValueError("mask: empty mask has no box")
    rows = np.flatnonzero(m.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def masks_to_boxes(masks: Any) -> np.ndarray:
    """(N, H, W) binary masks (numpy, or torch on any device) → (N, 4) int64 inclusive xyxy.

    Torch input is reduced on its own device; only the (N, 4) result is copied back.

    Raises:
        ValueError: an empty mask (naming its index), or an invalid stack.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(masks, torch.Tensor):
        if masks.ndim != 3 or masks.shape[1] == 0 or masks.shape[2] == 0:
            raise ValueError(f"masks: expected (N, H, W) with non-empty H, W, got "
                             f"{tuple(masks.shape)}")
        if masks.dtype != torch.bool:
            if masks.is_floating_point() and bool(torch.isnan(masks).any()):
                raise ValueError("masks: contains NaN value(s)")
            if bool(((masks != 0) & (masks != 1)).any()):
                raise ValueError("masks: a binary mask holds only 0 and 1")
            masks = masks != 0
        n, h, w = masks.shape
        cols = masks.any(dim=1)  # (N, W)
        rows = masks.any(dim=2)  # (N, H)
        empty = ~cols.any(dim=1)
        if bool(empty.any()):
            raise ValueError(f"masks: mask {int(empty.nonzero()[0, 0])} is empty and has no box")
        xr = torch.arange(w, device=masks.device)
        yr = torch.arange(h, device=masks.device)
        x1 = torch.where(cols, xr, w).amin(dim=1)
        x2 = torch.where(cols, xr, -1).amax(dim=1)
        y1 = torch.where(rows, yr, h).amin(dim=1)
        y2 = torch.where(rows, yr, -1).amax(dim=1)
        return torch.stack([x1, y1, x2, y2], dim=1).cpu().numpy().astype(np.int64)
    m = as_mask_stack(masks)
    n, h, w = m.shape
    cols = m.any(axis=1)
    rows = m.any(axis=2)
    empty = np.flatnonzero(~cols.any(axis=1))
    if empty.size:
        raise ValueError(f"masks: mask {int(empty[0])} is empty and has no box")
    x1 = cols.argmax(axis=1)
    x2 = w - 1 - cols[:, ::-1].argmax(axis=1)
    y1 = rows.argmax(axis=1)
    y2 = h - 1 - rows[:, ::-1].argmax(axis=1)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.int64)


def rle_to_box(rle: Any) -> tuple[int, int, int, int] | None:
    """Tight inclusive box of a COCO RLE without decoding it; None for an empty RLE."""
    checked = check_rle(rle)
    if coco_mask.area(checked) == 0:
        return None
    x, y, w, h = (int(v) for v in coco_mask.toBbox(checked))
    return x, y, x + w - 1, y + h - 1


def coco_bbox_to_xyxy(bbox: Any) -> tuple[float, float, float, float]:
    """COCO ``[x, y, w, h]`` → inclusive ``(x1, y1, x2, y2) = (x, y, x + w - 1, y + h - 1)``."""
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise ValueError(f"bbox: expected [x, y, w, h], got {bbox!r}") from None
    if not all(np.isfinite([x, y, w, h])) or w <= 0 or h <= 0:
        raise ValueError(f"bbox: expected finite [x, y, w, h] with w, h > 0, got {bbox!r}")
    return x, y, x + w - 1, y + h - 1
