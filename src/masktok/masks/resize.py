"""Resizing masks to a target size, stretching or keeping the aspect ratio (letterbox)."""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
from PIL import Image

from masktok.masks.arrays import as_mask, check_size

__all__ = ["resize_mask", "fit_size"]


def fit_size(size: Sequence[int], target: Sequence[int]) -> tuple[int, int]:
    """The largest (h, w) with the aspect ratio of ``size`` that fits inside ``target``.

    The side that limits is matched exactly; the other is rounded to the nearest pixel (≥ 1).
    With target (1024, 1024) this is SAM's "resize longest side".
    """
    h, w = check_size(size, "size")
    th, tw = check_size(target, "target")
    scale = min(th / h, tw / w)
    return (max(1, min(th, int(round(h * scale)))), max(1, min(tw, int(round(w * scale)))))


def resize_mask(mask: Any, size: Sequence[int], keep_aspect: bool = False,
                mode: Literal["nearest", "bilinear"] = "nearest") -> np.ndarray:
    """Resize a binary mask.

    Args:
        mask: (H, W) binary.
        size: target (h, w).
        keep_aspect: False stretches to (h, w). True scales by the same factor on both axes so the
            mask fits inside (h, w) (see :func:`fit_size`) and pads bottom/right with False, the
            layout SAM uses for its padded square input.
        mode: ``"nearest"`` (pixel-centre sampling) or ``"bilinear"`` (area-aware on downscale)
            followed by a 0.5 threshold: smoother edges.

    Returns:
        (h, w) bool.
    """
    m = as_mask(mask)
    th, tw = check_size(size, "size")
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"mode: expected 'nearest' or 'bilinear', got {mode!r}")
    rh, rw = fit_size(m.shape, (th, tw)) if keep_aspect else (th, tw)
    img = Image.fromarray(m.astype(np.uint8) * 255, mode="L")
    resample = Image.Resampling.NEAREST if mode == "nearest" else Image.Resampling.BILINEAR
    resized = np.asarray(img.resize((rw, rh), resample=resample)) >= 128
    if (rh, rw) == (th, tw):
        return resized
    out = np.zeros((th, tw), dtype=bool)
    out[:rh, :rw] = resized
    return out
