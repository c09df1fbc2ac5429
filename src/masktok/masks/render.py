"""Draw masks over an image: a coloured, half-transparent overlay with each mask's box."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

from masktok.masks import as_mask_stack, masks_to_boxes


def mask_colors(count: int) -> list[tuple[int, int, int]]:
    """``count`` well-separated RGB colours (golden-ratio hue steps)."""
    colors = []
    for i in range(count):
        r, g, b = colorsys.hsv_to_rgb((0.08 + i * 0.618034) % 1.0, 0.75, 0.95)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return colors


def render_masks(image: Image.Image, masks: np.ndarray, *, alpha: float = 0.5,
                 draw_boxes: bool = True) -> Image.Image:
    """``image`` with ``masks`` (N, H, W) blended in (one colour each) → a new RGB image.

    Raises:
        ValueError: masks whose (H, W) differs from the image's, or ``alpha`` outside [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a value in [0, 1], got {alpha}")
    stack = as_mask_stack(masks)
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    if stack.shape[0] and stack.shape[1:] != base.shape[:2]:
        raise ValueError(f"masks: size {stack.shape[1:]} differs from the image's "
                         f"(H, W) = {base.shape[:2]}")
    colors = mask_colors(stack.shape[0])
    for mask, color in zip(stack, colors):
        base[mask] = (1.0 - alpha) * base[mask] + alpha * np.asarray(color, dtype=np.float32)
    out = Image.fromarray(base.round().clip(0, 255).astype(np.uint8))
    if draw_boxes:
        nonempty = [i for i in range(stack.shape[0]) if stack[i].any()]
        if nonempty:
            boxes = masks_to_boxes(stack[nonempty])
            draw = ImageDraw.Draw(out)
            for i, box in zip(nonempty, boxes):
                x1, y1, x2, y2 = (int(v) for v in box)
                draw.rectangle((x1, y1, x2, y2), outline=colors[i], width=2)
                draw.text((x1 + 2, y1 + 1), str(i), fill=colors[i])
    return out
