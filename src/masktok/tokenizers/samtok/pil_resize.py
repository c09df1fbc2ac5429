"""Pillow's bicubic ``Image.resize``, bit for bit, as tensor operations (for the GPU).

SAMTok's reference stretches every image to 1024² with PIL bicubic on the CPU, which costs
5–25 ms per image — more than the image encoder on an H100. This module reproduces Pillow's
separable resampler exactly (``libImaging/Resample.c``): per output pixel the bicubic (a = −0.5)
weights are computed in float64 over a support widened by the downscale factor, normalised,
rounded to 22-bit fixed point; the horizontal pass accumulates ``pixel · weight`` in integers from
``1 << 21``, clips to 0..255 and keeps the uint8 result, then the vertical pass does the same.
Integer sums of integer products are exact in float64, so each pass is one float64 matmul with an
(out × in) weight matrix — exact on any device and in any summation order.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache

import numpy as np
import torch

PRECISION_BITS = 32 - 8 - 2
_HALF = float(1 << (PRECISION_BITS - 1))
_ONE = float(1 << PRECISION_BITS)
_SUPPORT = 2.0  # bicubic


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@lru_cache(maxsize=64)
def pil_bicubic_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) int64 fixed-point weights of Pillow's bicubic resampling of one axis."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _SUPPORT * filterscale
    ksize = int(np.ceil(support)) * 2 + 1
    centers = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum(np.trunc(centers - support + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc(centers + support + 0.5), in_size).astype(np.int64) - xmin
    taps = np.arange(ksize)
    weights = _bicubic(((taps[None, :] + xmin[:, None]).astype(np.float64) - centers[:, None] + 0.5)
                       * (1.0 / filterscale))
    weights = np.where(taps[None, :] < xmax[:, None], weights, 0.0)
    total = np.zeros(out_size)
    for tap in range(ksize):  # Pillow sums the taps in order
        total = total + weights[:, tap]
    weights = np.where(total[:, None] != 0.0, weights / np.where(total == 0.0, 1.0, total)[:, None], weights)
    fixed = np.trunc(np.where(weights < 0, -0.5 + weights * _ONE, 0.5 + weights * _ONE)).astype(np.int64)
    matrix = np.zeros((out_size, in_size), dtype=np.int64)
    rows = np.repeat(np.arange(out_size), ksize)
    cols = (xmin[:, None] + taps[None, :]).reshape(-1)
    keep = (taps[None, :] < xmax[:, None]).reshape(-1)
    np.add.at(matrix, (rows[keep], cols[keep]), fixed.reshape(-1)[keep])
    return matrix


_DEVICE_WEIGHTS: OrderedDict[tuple[int, int, str], torch.Tensor] = OrderedDict()
_DEVICE_WEIGHTS_CAPACITY = 32  # (out × in) float64 matrices: ≤ 32 MB each for 4000-pixel sides


def _weights_on(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    key = (in_size, out_size, str(device))
    if key in _DEVICE_WEIGHTS:
        _DEVICE_WEIGHTS.move_to_end(key)
        return _DEVICE_WEIGHTS[key]
    weights = torch.from_numpy(pil_bicubic_weights(in_size, out_size).astype(np.float64))
    if device.type == "cuda":  # pinned + non-blocking: no stall of the compute stream
        weights = weights.pin_memory()
    _DEVICE_WEIGHTS[key] = weights = weights.to(device, non_blocking=True)
    while len(_DEVICE_WEIGHTS) > _DEVICE_WEIGHTS_CAPACITY:
        _DEVICE_WEIGHTS.popitem(last=False)
    return weights


def _clip8(acc: torch.Tensor) -> torch.Tensor:
    acc = acc + _HALF
    return torch.where(acc >= 255.0 * _ONE + _ONE, 255.0,
                       torch.where(acc <= 0.0, 0.0, torch.floor(acc / _ONE))).to(torch.uint8)


def pil_bicubic_resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(H, W, C) uint8 → (height, width, C) uint8, equal to ``PIL.Image.resize((width, height),
    BICUBIC)`` of the same image, on ``image``'s device."""
    if image.dtype != torch.uint8 or image.dim() != 3:
        raise ValueError(f"image must be an (H, W, C) uint8 tensor, got {image.dtype} {tuple(image.shape)}")
    out = image
    in_height, in_width, channels = image.shape
    if in_width != width:  # horizontal pass first, as Pillow does
        weights = _weights_on(in_width, width, image.device)
        acc = weights @ out.permute(1, 0, 2).reshape(in_width, -1).double()  # (width, H*C)
        out = _clip8(acc).reshape(width, in_height, channels).permute(1, 0, 2)
    if in_height != height:
        weights = _weights_on(in_height, height, image.device)
        acc = weights @ out.reshape(in_height, -1).double()  # (height, width*C)
        out = _clip8(acc).reshape(height, width, channels)
    return out.contiguous()
