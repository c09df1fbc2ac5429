"""The zoom-in crop that accompanies a small region in mask-understanding prompts.

A region is *small* when its tight box covers less than ``area_ratio`` (0.3) of the image. Its
box is then enlarged (about its centre, kept inside the image) to at least ``min_box`` (140) pixels
a side, cropped, and up-scaled so the short side is at least ``min_short_side`` (280) pixels. The
crop goes to the model as an extra image, with the region's mask words computed on the crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from masktok.masks import as_mask, mask_to_box, resize_mask


@dataclass(frozen=True)
class ZoomConfig:
    """When and how to zoom (DESIGN §6 defaults)."""

    area_ratio: float = 0.3
    min_box: int = 140
    min_short_side: int = 280

    def __post_init__(self) -> None:
        if not 0.0 < self.area_ratio <= 1.0:
            raise ValueError(f"area_ratio: expected a value in (0, 1], got {self.area_ratio}")
        if self.min_box < 1 or self.min_short_side < 1:
            raise ValueError(f"min_box / min_short_side: expected positive sizes, got "
                             f"{self.min_box} / {self.min_short_side}")


@dataclass(frozen=True)
class ZoomCrop:
    """A zoomed-in view of one region.

    Attributes:
        image: the crop, up-scaled (RGB, ``size`` = (w', h')).
        mask: (h', w') bool, the region on the crop.
        box: the crop window in the original image, inclusive xyxy pixels.
        scale: up-scaling factor from the window to ``image`` (≥ 1).
    """

    image: Image.Image
    mask: np.ndarray
    box: tuple[int, int, int, int]
    scale: float


def box_area_ratio(mask: np.ndarray) -> float:
    """Area of the mask's tight box over the image area. ValueError for an empty mask."""
    mask = as_mask(mask)
    x1, y1, x2, y2 = mask_to_box(mask)
    return (x2 - x1 + 1) * (y2 - y1 + 1) / float(mask.shape[0] * mask.shape[1])


def needs_zoom(mask: np.ndarray, config: ZoomConfig = ZoomConfig()) -> bool:
    """Whether a region is small enough to get a zoom-in crop."""
    return box_area_ratio(mask) < config.area_ratio


def _grow(low: int, high: int, minimum: int, extent: int) -> tuple[int, int]:
    """Grow the inclusive interval [low, high] to ``minimum`` pixels inside [0, extent)."""
    size = high - low + 1
    target = min(max(size, minimum), extent)
    if target == size:
        return low, high
    start = low - (target - size) // 2
    start = min(max(start, 0), extent - target)
    return start, start + target - 1


def zoom_window(mask: np.ndarray, config: ZoomConfig = ZoomConfig()) -> tuple[int, int, int, int]:
    """The crop window (inclusive xyxy) of a region: its box grown to ``min_box`` a side."""
    mask = as_mask(mask)
    height, width = mask.shape
    x1, y1, x2, y2 = mask_to_box(mask)
    x1, x2 = _grow(x1, x2, config.min_box, width)
    y1, y2 = _grow(y1, y2, config.min_box, height)
    return x1, y1, x2, y2


def zoom_in(image: Image.Image, mask: np.ndarray, config: ZoomConfig = ZoomConfig()) -> ZoomCrop:
    """Crop ``image`` around ``mask`` (H, W) and up-scale the crop (see module docstring).

    Raises:
        ValueError: the mask is empty or its size differs from the image's.
    """
    mask = as_mask(mask)
    if (image.height, image.width) != mask.shape:
        raise ValueError(f"mask: shape {mask.shape} does not match the image size "
                         f"(H, W) = {(image.height, image.width)}")
    x1, y1, x2, y2 = zoom_window(mask, config)
    crop_w, crop_h = x2 - x1 + 1, y2 - y1 + 1
    scale = max(1.0, config.min_short_side / min(crop_w, crop_h))
    out_w, out_h = math.ceil(crop_w * scale), math.ceil(crop_h * scale)
    crop = image.convert("RGB").crop((x1, y1, x2 + 1, y2 + 1))
    crop_mask = mask[y1:y2 + 1, x1:x2 + 1]
    if (out_w, out_h) != (crop_w, crop_h):
        crop = crop.resize((out_w, out_h), Image.BICUBIC)
        crop_mask = resize_mask(crop_mask, size=(out_h, out_w))
    return ZoomCrop(image=crop, mask=np.asarray(crop_mask, dtype=bool), box=(x1, y1, x2, y2),
                    scale=scale)
