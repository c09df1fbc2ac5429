"""The zoom-in crop for small regions (box area / image area < 0.3, box ≥ 140 px, short side ≥ 280)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from masktok.masks.zoom import ZoomConfig, box_area_ratio, needs_zoom, zoom_in, zoom_window
from mllm_fixtures import box_mask


def gradient_image(height: int, width: int) -> Image.Image:
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack([xs % 256, ys % 256, (xs + ys) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def test_small_region_gets_a_centered_window_and_upscaled_crop():
    image = gradient_image(400, 600)
    mask = box_mask(400, 600, (300, 200, 319, 229))  # 20 × 30 box
    assert box_area_ratio(mask) == pytest.approx(20 * 30 / (400 * 600))
    assert needs_zoom(mask)
    x1, y1, x2, y2 = zoom_window(mask)
    assert (x2 - x1 + 1, y2 - y1 + 1) == (140, 140)
    assert x1 <= 300 and x2 >= 319 and y1 <= 200 and y2 >= 229
    assert abs((x1 + x2) / 2 - 309.5) <= 1 and abs((y1 + y2) / 2 - 214.5) <= 1
    crop = zoom_in(image, mask)
    assert crop.box == (x1, y1, x2, y2)
    assert min(crop.image.size) >= 280 and crop.scale == pytest.approx(2.0)
    assert crop.mask.shape == (crop.image.height, crop.image.width)
    # The region sits where it should on the crop: its box scales with the crop.
    ys, xs = np.nonzero(crop.mask)
    assert abs(xs.min() - (300 - x1) * crop.scale) <= 2 and abs(ys.max() - (229 - y1 + 1) * crop.scale) <= 3
    assert crop.mask.sum() == pytest.approx(mask.sum() * crop.scale ** 2, rel=0.1)
    # The crop shows the original pixels (no up-scaling at scale 1).
    big = zoom_in(image, mask, ZoomConfig(min_short_side=100))
    assert big.scale == 1.0
    np.testing.assert_array_equal(np.asarray(big.image), np.asarray(image)[y1:y2 + 1, x1:x2 + 1])


def test_window_stays_inside_the_image_and_large_regions_do_not_zoom():
    mask = box_mask(400, 600, (0, 390, 9, 399))  # corner region
    x1, y1, x2, y2 = zoom_window(mask)
    assert (x1, y1) == (0, 260) and (x2, y2) == (139, 399)
    small_image_mask = box_mask(100, 120, (10, 10, 20, 20))
    assert zoom_window(small_image_mask) == (0, 0, 119, 99)  # the image is smaller than 140
    crop = zoom_in(gradient_image(100, 120), small_image_mask)
    assert min(crop.image.size) == 280
    large = box_mask(400, 600, (0, 0, 399, 299))
    assert not needs_zoom(large)
    assert needs_zoom(large, ZoomConfig(area_ratio=0.9))


def test_bad_inputs_are_rejected():
    image = gradient_image(50, 60)
    with pytest.raises(ValueError):
        needs_zoom(np.zeros((50, 60), dtype=bool))  # empty mask has no box
    with pytest.raises(ValueError, match="does not match the image size"):
        zoom_in(image, box_mask(40, 60, (1, 1, 5, 5)))
    with pytest.raises(ValueError, match="area_ratio"):
        ZoomConfig(area_ratio=0.0)
