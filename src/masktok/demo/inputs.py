"""What a user hands the demo (uploaded files, the image editor's value) → checked images and masks.

Every problem becomes a :class:`DemoInputError` whose message names the input and says what is
wrong, so the app can show it as is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from masktok.masks import as_mask, read_mask_png, rle_to_mask

RLE_SUFFIXES = (".json",)


class DemoInputError(ValueError):
    """A user input the demo cannot use; the message is meant for the user."""


def file_name(path: str | Path) -> str:
    """The name a user recognises (gradio hands over copies in its cache under the same name)."""
    return Path(path).name


def read_image_file(path: str | Path, name: str = "image file") -> Image.Image:
    """An uploaded image file → RGB ``PIL.Image``.

    Raises:
        DemoInputError: the file is missing, not an image PIL can read, or has an empty size.
    """
    path = Path(path)
    if not path.is_file():
        raise DemoInputError(f"{name}: {file_name(path)} is missing")
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise DemoInputError(f"{name}: {file_name(path)} is not an image (PNG, JPEG, WebP, …): "
                             f"{err}") from err
    if image.width == 0 or image.height == 0:
        raise DemoInputError(f"{name}: {file_name(path)} has an empty size")
    return image


def _rle_from_json(data: Any, source: str) -> dict:
    """The one COCO RLE in a JSON document: an RLE dict, ``{"segmentation"|"rle": RLE}``, or a
    list holding exactly one of those."""
    if isinstance(data, list):
        if len(data) != 1:
            raise DemoInputError(f"mask file: {source} holds {len(data)} entries; give exactly one "
                                 "mask (one COCO RLE)")
        data = data[0]
    if isinstance(data, dict):
        for key in ("segmentation", "rle"):
            if key in data and isinstance(data[key], dict):
                data = data[key]
                break
    if not (isinstance(data, dict) and "size" in data and "counts" in data):
        raise DemoInputError(f"mask file: {source} is JSON but not a COCO RLE: expected "
                             '{"size": [H, W], "counts": ...} (alone, in a one-item list, or under '
                             '"segmentation" / "rle")')
    return data


def read_mask_file(path: str | Path) -> np.ndarray:
    """An uploaded mask file → (H, W) bool.

    Accepts a binary PNG (or any 1-bit / 8-bit grey image holding two levels, 0/1 or 0/255) and
    COCO RLE JSON (``.json``, see :func:`_rle_from_json`).

    Raises:
        DemoInputError: a missing or unreadable file, JSON that is not one RLE, an invalid RLE,
            or an image that is not a binary mask (colour, or more than two grey levels).
    """
    path = Path(path)
    source = file_name(path)
    if not path.is_file():
        raise DemoInputError(f"mask file: {source} is missing")
    if path.suffix.lower() in RLE_SUFFIXES:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise DemoInputError(f"mask file: {source} is not valid JSON: {err}") from err
        rle = _rle_from_json(data, source)
        try:
            return rle_to_mask(rle, name=f"mask file {source}")
        except ValueError as err:
            raise DemoInputError(str(err)) from err
    try:
        with Image.open(path) as opened:
            mode = opened.mode
    except (UnidentifiedImageError, OSError) as err:
        raise DemoInputError(f"mask file: {source} is neither a mask image (binary PNG) nor COCO "
                             f"RLE JSON (.json)") from err
    if mode not in ("1", "L"):
        raise DemoInputError(f"mask file: {source} is a {mode} image; a mask file is a binary "
                             "(black and white, one channel) PNG")
    try:
        return read_mask_png(path)
    except ValueError as err:
        raise DemoInputError(f"mask file: {source} is not binary: it holds more than two grey "
                             "levels; save it with only 0 (background) and 255 (mask)") from err


def check_mask_size(mask: np.ndarray, image: Image.Image, name: str = "mask") -> np.ndarray:
    """``mask`` (H, W) bool, checked to have ``image``'s size (never resized)."""
    mask = as_mask(mask, name)
    if mask.shape != (image.height, image.width):
        raise DemoInputError(f"{name}: {mask.shape[0]}×{mask.shape[1]} (H×W) but the image is "
                             f"{image.height}×{image.width}; a mask must have its image's size")
    return mask


def check_not_empty(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """``mask`` unchanged; an all-background mask raises (there is nothing to tokenize)."""
    if not mask.any():
        raise DemoInputError(f"{name}: empty (no foreground pixel); draw or upload a mask that "
                             "covers part of the image")
    return mask


def editor_value(image: Image.Image) -> dict:
    """The image editor's value showing ``image`` with no strokes."""
    return {"background": image, "layers": [], "composite": image}


def editor_image(value: Any) -> Image.Image:
    """The image under the editor's strokes (its background) as RGB.

    Raises:
        DemoInputError: no image loaded yet.
    """
    background = value.get("background") if isinstance(value, dict) else None
    if background is None:
        raise DemoInputError("image: none loaded; pick a sample or upload an image file")
    if isinstance(background, np.ndarray):
        background = Image.fromarray(background)
    if not isinstance(background, Image.Image):
        raise DemoInputError(f"image: the editor holds a {type(background).__name__}, not an image")
    return background.convert("RGB")


def editor_masks(value: Any, image: Image.Image) -> np.ndarray:
    """Brush strokes → masks (N, H, W) bool, one per editor layer that holds strokes.

    A pixel belongs to a layer's mask where the layer is not fully transparent. Layers with no
    stroke are not regions; N may be 0.

    Raises:
        DemoInputError: a layer whose size differs from the image's.
    """
    layers = value.get("layers") if isinstance(value, dict) else None
    masks = []
    for index, layer in enumerate(layers or []):
        if layer is None:
            continue
        array = np.asarray(layer.convert("RGBA") if isinstance(layer, Image.Image) else layer)
        if array.ndim != 3 or array.shape[2] != 4:
            raise DemoInputError(f"brush layer {index + 1}: expected an RGBA image, got shape "
                                 f"{array.shape}")
        if array.shape[:2] != (image.height, image.width):
            raise DemoInputError(f"brush layer {index + 1}: {array.shape[0]}×{array.shape[1]} (H×W) "
                                 f"but the image is {image.height}×{image.width}; undo any crop or "
                                 "resize of the canvas")
        mask = array[..., 3] > 0
        if mask.any():
            masks.append(mask)
    if not masks:
        return np.zeros((0, image.height, image.width), dtype=bool)
    return np.stack(masks)
