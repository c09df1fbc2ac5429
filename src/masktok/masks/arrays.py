"""Binary mask validation: anything mask-like → a checked numpy bool array.

Every other function in :mod:`masktok.masks` calls :func:`as_mask` or :func:`as_mask_stack`
first, so a float probability map, a NaN, a stray label value or a wrong rank is reported where
it enters instead of turning into a silently wrong mask later.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = ["as_mask", "as_mask_stack", "to_numpy", "is_tensor"]


def is_tensor(x: Any) -> bool:
    """True for a torch tensor, without importing torch (a tensor can only exist once torch is
    imported, so code that never sees tensors never pays torch's import)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: Any, name: str) -> np.ndarray:
    """A numpy view/copy of a numpy array, torch tensor (any device) or nested sequence."""
    torch = sys.modules.get("torch")  # a tensor can only exist once torch is imported
    if torch is not None and isinstance(x, torch.Tensor):
        t = x.detach()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return t.cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    if x is None or isinstance(x, (str, bytes, dict)):
        raise ValueError(f"{name}: expected an array or tensor, got {type(x).__name__}")
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot be read as an array ({exc})") from exc


def _check_binary_values(arr: np.ndarray, name: str) -> np.ndarray:
    kind = arr.dtype.kind
    if kind == "b":
        return arr.astype(bool, copy=False)
    if kind not in "uif":
        raise ValueError(f"{name}: dtype {arr.dtype} is not a mask dtype (use bool, uint8 or int "
                         "holding 0/1)")
    if arr.size == 0:
        return arr.astype(bool)
    if kind == "f":
        nan = np.isnan(arr)
        if nan.any():
            raise ValueError(f"{name}: contains {int(nan.sum())} NaN value(s)")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        values = np.unique(arr[bad])[:5].tolist()
        hint = " (threshold probabilities/logits first, e.g. probs > 0.5)" if kind == "f" else ""
        raise ValueError(f"{name}: a binary mask holds only 0 and 1, found {values}{hint}")
    return arr != 0


def as_mask(x: Any, name: str = "mask") -> np.ndarray:
    """Validate one binary mask.

    Args:
        x: (H, W) bool, or uint8/int/float holding only 0 and 1; numpy, torch or nested lists.
        name: how the input is called in error messages.

    Returns:
        (H, W) bool numpy array (a copy when the input was not already bool numpy).

    Raises:
        ValueError: wrong rank, empty height or width, non-mask dtype, NaN, values other than 0/1.
    """
    arr = to_numpy(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D mask (H, W), got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: empty image size {tuple(arr.shape)}")
    return _check_binary_values(arr, name)


def as_mask_stack(x: Any, name: str = "masks") -> np.ndarray:
    """Validate a stack of binary masks.

    Args:
        x: (N, H, W) binary (N may be 0; H and W may not); numpy, torch or nested lists.
        name: how the input is called in error messages.

    Returns:
        (N, H, W) bool numpy array.
    """
    arr = to_numpy(x, name)
    if arr.ndim != 3:
        hint = " (use as_mask for one mask or add a leading axis)" if arr.ndim == 2 else ""
        raise ValueError(f"{name}: expected a mask stack (N, H, W), got shape "
                         f"{tuple(arr.shape)}{hint}")
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"{name}: empty image size {tuple(arr.shape[1:])}")
    return _check_binary_values(arr, name)


def check_size(size: Any, name: str = "size") -> tuple[int, int]:
    """(height, width) as two positive ints; anything else → ValueError."""
    try:
        h, w = size
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (height, width), got {size!r}") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name}: height and width must be integers, got {size!r}")
    if h <= 0 or w <= 0:
        raise ValueError(f"{name}: empty image size {(int(h), int(w))}")
    return int(h), int(w)
