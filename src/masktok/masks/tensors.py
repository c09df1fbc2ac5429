"""Binary mask stacks as torch tensors, checked where they are (a GPU input stays on the GPU).

The tokenizers take masks as numpy arrays, torch tensors, lists of (H, W) arrays or
:class:`~masktok.masks.BitMasks`; :func:`as_mask_tensor` is the one check they share. (Host-only
code uses :func:`masktok.masks.arrays.as_mask_stack`.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from masktok.masks.bits import BitMasks


def as_mask_tensor(masks: Any, name: str = "masks", size: tuple[int, int] | None = None,
                   keep_packed: bool = False) -> torch.Tensor | BitMasks:
    """Binary masks (N, H, W) — bool, or integer/float holding only 0 and 1; numpy, torch, a list
    of (H, W) arrays, or :class:`BitMasks` — → a bool tensor (N, H, W) on the input's device
    (the host for host inputs); :class:`BitMasks` stay packed with ``keep_packed``.

    Args:
        name: how messages call the input.
        size: the (H, W) the masks must have (e.g. their image's), or None for any non-empty size.

    Raises:
        ValueError: naming ``name``: another type or rank, an object array, a zero or wrong
            (H, W), a complex dtype, NaN, or values other than 0 and 1.
    """
    if isinstance(masks, BitMasks):
        _check_size(masks.shape, size, name)
        return masks if keep_packed else masks.unpack()
    if isinstance(masks, (list, tuple)):
        if len(masks) == 0:
            if size is None:
                raise ValueError(f"{name}: an empty list has no mask size; give an (0, H, W) array")
            return torch.zeros(0, *size, dtype=torch.bool)
        masks = np.stack([np.asarray(m.detach().cpu() if isinstance(m, torch.Tensor) else m) for m in masks])
    if isinstance(masks, np.ndarray):
        if masks.dtype == object:
            raise ValueError(f"{name} must be a numeric or bool array, got dtype object")
        masks = torch.from_numpy(np.ascontiguousarray(masks))
    if not isinstance(masks, torch.Tensor):
        raise ValueError(f"{name} must be an (N, H, W) array or tensor of binary masks, got {type(masks).__name__}")
    if masks.dim() != 3:
        raise ValueError(f"{name} must have shape (N, H, W), got {tuple(masks.shape)}")
    _check_size(tuple(masks.shape), size, name)
    if masks.dtype == torch.bool:
        return masks
    if masks.is_complex():
        raise ValueError(f"{name} must be real-valued, got dtype {masks.dtype}")
    if masks.dtype.is_floating_point and torch.isnan(masks).any():
        raise ValueError(f"{name} contain NaN; masks must be binary (only 0 and 1)")
    if ((masks != 0) & (masks != 1)).any():
        raise ValueError(f"{name} must be binary (only 0 and 1), found other values")
    return masks != 0


def _check_size(shape: tuple[int, ...], size: tuple[int, int] | None, name: str) -> None:
    if size is not None and tuple(shape[1:]) != tuple(size):
        raise ValueError(f"{name} have size {tuple(shape[1:])} but the image is {tuple(size)} (H, W); "
                         "masks must be given at the image's size")
    if shape[1] == 0 or shape[2] == 0:
        raise ValueError(f"{name} must have a non-empty height and width, got {tuple(shape)}")
