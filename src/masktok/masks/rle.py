"""COCO run-length encoding (RLE): masks ↔ ``{"size": [H, W], "counts": ...}``.

Runs are taken over the mask in column-major (Fortran) order and alternate background /
foreground, starting with background (a leading 0 when the first pixel is set). ``counts`` is a
list of ints (*uncompressed*) or pycocotools' compact string (*compressed*). Encoding and
decoding go through pycocotools; :func:`masks_to_rles_torch` computes the runs on the tensor's
own device (GPU-friendly: only the run lengths leave the device) and gives byte-identical RLE.

pycocotools trusts its input: a string whose runs do not add up to H·W decodes to garbage or
reads past the buffer. :func:`check_rle` therefore parses every RLE first and refuses one whose
runs disagree with its size.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as coco_mask

from masktok.masks.arrays import as_mask, as_mask_stack, check_size

__all__ = [
    "check_rle",
    "rle_counts",
    "mask_to_rle",
    "masks_to_rles",
    "masks_to_rles_torch",
    "rle_to_mask",
    "rles_to_masks",
    "rle_area",
]


def decode_checked(rles: dict | list[dict]) -> np.ndarray:
    """pycocotools decode of already checked RLE(s): (H, W) or (H, W, N) uint8.

    pycocotools' decode raises a DeprecationWarning under numpy 2 about its own ``__array__``
    (the result is correct); it is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept",
                                category=DeprecationWarning)
        return coco_mask.decode(rles)


def _parse_compressed_counts(counts: bytes, name: str) -> np.ndarray:
    """pycocotools' compact string → run lengths (int64), validated character by character.

    Each count is stored as 5-bit groups (low group first) in characters ``chr(48 + c)``; bit 5
    says another group follows, bit 4 of the last group is the sign. From the third count on the
    value is stored as a difference to the count two places earlier.
    """
    if len(counts) == 0:
        return np.zeros(0, dtype=np.int64)
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if c.min() < 0 or c.max() > 63:
        raise ValueError(f"{name}: counts string holds characters outside the RLE alphabet")
    last = (c & 0x20) == 0  # the group that ends each count
    if not last[-1]:
        raise ValueError(f"{name}: counts string ends in the middle of a count")
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    group_index = np.arange(len(c)) - np.repeat(starts, ends - starts + 1)
    if group_index.max() > 11:
        raise ValueError(f"{name}: counts string holds a count longer than 64 bits")
    values = np.add.reduceat((c & 0x1F) << (5 * group_index), starts)
    n_groups = ends - starts + 1
    negative = (c[ends] & 0x10) != 0
    values = values - (negative.astype(np.int64) << (5 * n_groups))
    # undo the difference coding: from index 3 on, counts[i] += counts[i - 2]
    runs = values.copy()
    if len(runs) > 3:
        runs[3::2] = np.cumsum(values[1::2])[1:]
    if len(runs) > 4:
        runs[4::2] = np.cumsum(values[2::2])[1:]
    return runs


def check_rle(rle: Any, size: Sequence[int] | None = None, name: str = "rle") -> dict:
    """Validate a COCO RLE and return it in the form pycocotools reads.

    Args:
        rle: ``{"size": [H, W], "counts": str | bytes | list[int]}``.
        size: the image size (H, W) the RLE must have; None accepts the RLE's own size.
        name: how the input is called in error messages.

    Returns:
        ``{"size": [H, W], "counts": bytes}`` (compressed; uncompressed input is compressed).

    Raises:
        ValueError: not a dict, missing keys, bad size, negative runs, runs not summing to H·W,
            a malformed counts string, or a ``size`` that disagrees with the RLE's.
    """
    if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
        raise ValueError(f"{name}: expected a COCO RLE dict with 'size' and 'counts', got "
                         f"{type(rle).__name__}{sorted(rle) if isinstance(rle, dict) else ''}")
    h, w = check_size(rle["size"], f"{name}['size']")
    if size is not None:
        expected = check_size(size, "size")
        if (h, w) != expected:
            raise ValueError(f"{name}: RLE size {[h, w]} disagrees with the image size "
                             f"{list(expected)}")
    counts = rle["counts"]
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"{name}: counts string is not ASCII") from None
    if isinstance(counts, (bytes, bytearray)):
        compressed = bytes(counts)
        if (compressed, h, w) in _RECENTLY_VALID:  # readers check an RLE, then take its area and box
            return {"size": [h, w], "counts": compressed}
        runs = _parse_compressed_counts(compressed, name)
    elif isinstance(counts, (list, tuple, np.ndarray)):
        runs = np.asarray(counts)
        if runs.ndim != 1 or (runs.size and runs.dtype.kind not in "iu"):
            raise ValueError(f"{name}: uncompressed counts must be a flat list of integers")
        runs = runs.astype(np.int64)
        compressed = None
    else:
        raise ValueError(f"{name}: counts must be a string or a list of ints, got "
                         f"{type(counts).__name__}")
    if runs.size and runs.min() < 0:
        raise ValueError(f"{name}: counts hold a negative run length")
    if int(runs.sum()) != h * w:
        raise ValueError(f"{name}: runs add up to {int(runs.sum())} pixels but size {[h, w]} "
                         f"has {h * w}")
    if compressed is None:
        uncompressed = {"size": [h, w], "counts": runs.tolist()}
        compressed = coco_mask.frPyObjects(uncompressed, h, w)["counts"]
    else:
        _RECENTLY_VALID[(compressed, h, w)] = None
        if len(_RECENTLY_VALID) > _RECENTLY_VALID_SIZE:
            _RECENTLY_VALID.popitem(last=False)
    return {"size": [h, w], "counts": compressed}


# compressed RLEs that passed check_rle lately (validation is a pure function of counts and size)
_RECENTLY_VALID: OrderedDict[tuple[bytes, int, int], None] = OrderedDict()
_RECENTLY_VALID_SIZE = 64


def rle_counts(rle: Any, name: str = "rle") -> list[int]:
    """The run lengths of a (compressed or uncompressed) RLE as a list of ints."""
    checked = check_rle(rle, name=name)
    return _parse_compressed_counts(checked["counts"], name).tolist()


def _runs_numpy(flat: np.ndarray) -> list[int]:
    """Column-major flattened bool mask (H·W,) → COCO run lengths (starting with background)."""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds)
    if flat[0]:
        runs = np.concatenate([[0], runs])
    return runs.tolist()


def mask_to_rle(mask: Any, compressed: bool = True) -> dict:
    """One binary mask (H, W) → COCO RLE.

    Returns:
        ``{"size": [H, W], "counts": str}`` (compressed, JSON-ready) or, with
        ``compressed=False``, ``{"size": [H, W], "counts": list[int]}``.
    """
    m = as_mask(mask)
    h, w = m.shape
    if not compressed:
        return {"size": [h, w], "counts": _runs_numpy(m.ravel(order="F"))}
    rle = coco_mask.encode(np.asfortranarray(m, dtype=np.uint8))
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def masks_to_rles(masks: Any, compressed: bool = True) -> list[dict]:
    """A stack (N, H, W) of binary masks → N COCO RLEs (see :func:`mask_to_rle`)."""
    m = as_mask_stack(masks)
    n, h, w = m.shape
    if n == 0:
        return []
    if not compressed:
        return [{"size": [h, w], "counts": _runs_numpy(x.ravel(order="F"))} for x in m]
    encoded = coco_mask.encode(np.asfortranarray(m.transpose(1, 2, 0), dtype=np.uint8))
    return [{"size": [h, w], "counts": r["counts"].decode("ascii")} for r in encoded]


def masks_to_rles_torch(masks: Any, compressed: bool = True) -> list[dict]:
    """(N, H, W) torch masks → N COCO RLEs, run lengths computed on the tensor's device.

    Only the run lengths (not the N·H·W pixels) are copied to the host; the compact string is
    then written by pycocotools, so the result is identical to :func:`masks_to_rles`.

    Args:
        masks: (N, H, W) torch tensor, bool or integer/float holding 0 and 1, on any device.
        compressed: string counts (default) or lists of ints.
    """
    import torch

    if not isinstance(masks, torch.Tensor):
        raise ValueError(f"masks: expected a torch tensor, got {type(masks).__name__} "
                         "(use masks_to_rles for numpy input)")
    if masks.ndim != 3:
        raise ValueError(f"masks: expected a mask stack (N, H, W), got shape {tuple(masks.shape)}")
    n, h, w = masks.shape
    if h == 0 or w == 0:
        raise ValueError(f"masks: empty image size {(h, w)}")
    if masks.dtype != torch.bool:
        if masks.is_complex():
            raise ValueError(f"masks: dtype {masks.dtype} is not a mask dtype")
        if masks.is_floating_point() and bool(torch.isnan(masks).any()):
            raise ValueError("masks: contains NaN value(s)")
        if bool(((masks != 0) & (masks != 1)).any()):
            raise ValueError("masks: a binary mask holds only 0 and 1")
        masks = masks != 0
    if n == 0:
        return []
    hw = h * w
    flat = masks.transpose(1, 2).reshape(n, hw)  # column-major pixel order, as COCO counts
    change = torch.ones((n, hw + 1), dtype=torch.bool, device=masks.device)
    change[:, 1:hw] = flat[:, 1:] != flat[:, :-1]
    rows, pos = change.nonzero(as_tuple=True)  # row-major: sorted by mask, then position
    same_mask = rows[1:] == rows[:-1]
    lengths = (pos[1:] - pos[:-1])[same_mask]
    runs_per_mask = torch.bincount(rows, minlength=n) - 1
    starts_on = flat[:, 0]
    lengths, runs_per_mask, starts_on = (t.cpu().numpy() for t in (lengths, runs_per_mask,
                                                                   starts_on))
    split = np.split(lengths.astype(np.int64), np.cumsum(runs_per_mask)[:-1])
    counts = [([0] + r.tolist()) if on else r.tolist() for r, on in zip(split, starts_on)]
    uncompressed = [{"size": [h, w], "counts": c} for c in counts]
    if not compressed:
        return uncompressed
    encoded = coco_mask.frPyObjects(uncompressed, h, w)
    return [{"size": [h, w], "counts": r["counts"].decode("ascii")} for r in encoded]


def rle_to_mask(rle: Any, size: Sequence[int] | None = None, name: str = "rle") -> np.ndarray:
    """COCO RLE (compressed or uncompressed counts) → (H, W) bool.

    Args:
        rle: ``{"size": [H, W], "counts": str | bytes | list[int]}``.
        size: expected (H, W); a disagreeing RLE size raises ValueError.
    """
    checked = check_rle(rle, size=size, name=name)
    return decode_checked(checked).astype(bool)


def rles_to_masks(rles: Sequence[Any], size: Sequence[int] | None = None) -> np.ndarray:
    """N COCO RLEs of one size → (N, H, W) bool. ``size`` is required when ``rles`` is empty."""
    if isinstance(rles, dict):
        raise ValueError("rles: expected a list of RLE dicts, got one dict (use rle_to_mask)")
    rles = list(rles)
    if not rles:
        if size is None:
            raise ValueError("rles: empty list and no size given; cannot tell (H, W)")
        h, w = check_size(size)
        return np.zeros((0, h, w), dtype=bool)
    first = check_rle(rles[0], size=size, name="rles[0]")
    checked = [first] + [check_rle(r, size=first["size"], name=f"rles[{i}]")
                         for i, r in enumerate(rles[1:], start=1)]
    return decode_checked(checked).astype(bool).transpose(2, 0, 1)


def rle_area(rle: Any, name: str = "rle") -> int:
    """Number of foreground pixels of a COCO RLE."""
    return int(coco_mask.area(check_rle(rle, name=name)))
