"""SAMTok's input and output transforms, exactly as the official model expects them.

- image → RGB → stretched to S×S (aspect ratio not kept) with PIL bicubic → /255 → ImageNet
  mean/std. On the CPU the resize is PIL's; on a GPU it is :mod:`.pil_resize`, which gives the
  same bytes. The normalisation runs on the model's device in float32 (same operations, same
  order, as the reference, so the results are bit-identical).
- mask (H, W) → tight box (x1, y1 = smallest row/column index; x2, y2 = largest) normalised by
  (W, H, W, H) and × S; and the mask resized to m×m (bilinear, antialias) as a soft 0..1 map.
- decoded m×m logits → bilinear resize to (H, W) → ``logit > threshold`` (official: 0.5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from masktok.masks.bits import BitMasks
from masktok.masks.tensors import as_mask_tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MASK_RESIZE_CHUNK = 16  # masks resized at once (bounds the float32 copy of large masks)


def load_rgb(image: object, name: str = "image") -> np.ndarray:
    """A path, PIL image, or uint8 array/tensor (H, W, 3) or (H, W) → (H, W, 3) uint8 RGB array."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no image file at {path}")
        try:
            with Image.open(path) as opened:
                return np.array(opened.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as err:  # PIL: unknown format, truncated data
            raise ValueError(f"{name}: {path} is not a readable image ({type(err).__name__}: {err})") from None
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"{name} must be a uint8 RGB array (values 0..255), got dtype {image.dtype}")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{name} must have shape (H, W, 3) or (H, W), got {image.shape}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"{name} is empty: shape {image.shape}")
        return np.ascontiguousarray(image)
    raise ValueError(f"{name} must be a path, a PIL image or a uint8 (H, W, 3) array, got {type(image).__name__}")


def resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 → (size, size, 3) uint8, PIL bicubic, aspect ratio not kept."""
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC))


_CONSTANTS: dict[tuple[tuple[float, ...], str], torch.Tensor] = {}


def device_constant(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """A float32 tensor of ``values`` on ``device``, made once (creating tensors from host data
    on a GPU synchronises with it, which would stall a pipelined stream)."""
    key = (values, str(device))
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.tensor(values, dtype=torch.float32, device=device)
    return _CONSTANTS[key]


def normalize_pixels(batch: torch.Tensor) -> torch.Tensor:
    """(B, S, S, 3) uint8 → (B, 3, S, S) float32: /255, − mean, / std (on ``batch``'s device)."""
    pixels = batch.permute(0, 3, 1, 2).float() / 255.0
    pixels -= device_constant(IMAGENET_MEAN, batch.device)[:, None, None]
    pixels /= device_constant(IMAGENET_STD, batch.device)[:, None, None]
    return pixels


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool, every mask with foreground (see :func:`as_mask_batch`) → (N, 4) int64
    tight boxes x1, y1, x2, y2 (inclusive pixel indices)."""
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    height, width = masks.shape[1:]
    y1 = rows.to(torch.uint8).argmax(dim=1)
    y2 = height - 1 - rows.flip(1).to(torch.uint8).argmax(dim=1)
    x1 = cols.to(torch.uint8).argmax(dim=1)
    x2 = width - 1 - cols.flip(1).to(torch.uint8).argmax(dim=1)
    return torch.stack([x1, y1, x2, y2], dim=1).long()


def box_prompts(boxes: torch.Tensor, height: int, width: int, image_size: int) -> torch.Tensor:
    """(N, 4) pixel boxes of an H×W image → (N, 4) float32 boxes in model-input pixels:
    x / W · S and y / H · S in float32 (the reference's ``box / (W, H, W, H) * S``)."""
    scaled = boxes.float()
    scaled[:, 0::2] /= float(width)
    scaled[:, 1::2] /= float(height)
    return scaled * image_size


def soft_mask_prompts(masks: torch.Tensor, mask_size: int) -> torch.Tensor:
    """(N, H, W) bool → (N, 1, m, m) float32 in [0, 1]: bilinear resize with antialias."""
    parts = []
    for start in range(0, masks.shape[0], MASK_RESIZE_CHUNK):
        chunk = masks[start: start + MASK_RESIZE_CHUNK, None].float()
        parts.append(F.interpolate(chunk, size=(mask_size, mask_size), mode="bilinear",
                                   align_corners=False, antialias=True))
    if not parts:
        return torch.zeros(0, 1, mask_size, mask_size, device=masks.device)
    return torch.cat(parts)


def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, m, m) float32 → (N, H, W) float32, bilinear (no antialias, corners not aligned)."""
    if logits.shape[0] == 0:
        return logits.new_zeros(0, *size)
    return F.interpolate(logits[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def as_mask_batch(masks: object, size: tuple[int, int], name: str = "masks",
                  require_foreground: bool = True) -> torch.Tensor | BitMasks:
    """Binary masks (N, H, W) at the image's ``size`` → bool tensor (on the host for host inputs,
    else where they are), or :class:`~masktok.masks.BitMasks` returned as they are (packed, for the
    device to unpack); see :func:`masktok.masks.tensors.as_mask_tensor`. With
    ``require_foreground`` every mask needs a foreground pixel."""
    masks = as_mask_tensor(masks, name, size=size, keep_packed=True)
    if require_foreground and len(masks):
        _raise_if_empty(~masks.any() if isinstance(masks, BitMasks)
                        else ~masks.reshape(masks.shape[0], -1).any(dim=1), name)
    return masks


def _raise_if_empty(empty: torch.Tensor, name: str) -> None:
    if empty.any():
        raise ValueError(f"{name}[{int(empty.nonzero()[0])}] is empty (no foreground pixel): "
                         "an empty mask has no box and cannot be tokenized")
