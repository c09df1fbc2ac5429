"""Intersection and union pixel counts of binary masks: batched, dense or COCO RLE, CPU or GPU.

Every segmentation metric in :mod:`masktok.eval` reduces to two integers per (prediction, ground
truth) pair: the intersection ``I`` and the union ``U``. This module computes them fast:

* dense masks (numpy): one ``count_nonzero`` per mask on cache-sized slices;
* dense masks (torch): batched on any device, results stay on that device so sums over a whole
  benchmark can be accumulated there (``device="cuda"``);
* COCO RLE: directly in run-length space with pycocotools (no decoding at all), which is the
  fastest path for prediction files.

Masks of different sizes are always a :class:`ValueError` — pycocotools itself would silently
return an empty merge or a zero IoU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from pycocotools import mask as mask_utils

from masktok.masks import check_rle, check_rles
from masktok.masks.arrays import is_tensor

if TYPE_CHECKING:
    import torch

# pycocotools' ``area`` overflows on lists longer than 255 RLEs; feed it in chunks.
_AREA_CHUNK = 200


def coco_rle(rle: Any, name: str = "rle") -> dict:
    """One COCO RLE (compressed ``str``/``bytes`` counts or an uncompressed ``list``), validated
    (runs must add up to H·W) → the compressed form pycocotools works on:
    ``{"size": [H, W], "counts": bytes}``. Already-validated RLEs pass through cheaply."""
    if isinstance(rle, _CheckedRLE):
        return rle
    return _CheckedRLE(check_rle(rle, name=name))


class _CheckedRLE(dict):
    """A dict RLE that :func:`check_rle` has accepted (so it is not parsed twice)."""


def coco_rle_groups(groups: Sequence[Sequence[Any]], name: Callable[[int, int], str]
                    ) -> list[list[dict]]:
    """Validate lists of RLEs (e.g. the masks of every record of a file) in one batch
    (:func:`masktok.masks.check_rles`, vectorised over all of them) → the same lists in
    :func:`coco_rle`'s form. ``name(g, i)`` names mask ``i`` of group ``g`` in errors."""
    flat: list[Any] = []
    where: list[tuple[int, int]] = []
    for g, group in enumerate(groups):
        for i, rle in enumerate(group):
            if not isinstance(rle, _CheckedRLE):
                flat.append(rle)
                where.append((g, i))
    checked = check_rles(flat, name=lambda k: name(*where[k]))
    out = [list(group) for group in groups]
    for (g, i), rle in zip(where, checked):
        out[g][i] = _CheckedRLE(rle)
    return out


def rle_size(rle: dict) -> tuple[int, int]:
    """(H, W) of a COCO RLE."""
    return int(rle["size"][0]), int(rle["size"][1])


def empty_rle(height: int, width: int) -> dict:
    """The compressed RLE of an all-false (height, width) mask."""
    return _CheckedRLE(_empty_rle(int(height), int(width)))


@lru_cache(maxsize=16)
def _empty_rle(height: int, width: int) -> dict:
    return mask_utils.encode(np.zeros((height, width, 1), dtype=np.uint8, order="F"))[0]


def encode_masks(masks: np.ndarray) -> list[dict]:
    """masks (N, H, W) bool → N compressed RLEs (bytes counts), one pycocotools call."""
    if masks.ndim != 3:
        raise ValueError(f"masks: expected (N, H, W), got shape {tuple(masks.shape)}")
    if masks.shape[0] == 0:
        return []
    encoded = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [_CheckedRLE(r) for r in encoded]


def union_rle(rles: Sequence[dict], size: tuple[int, int], name: str = "masks") -> dict:
    """Pixel-wise OR of RLEs that all have ``size`` (H, W); the empty mask when there are none."""
    check_rle_sizes(rles, size, name)
    if len(rles) == 0:
        return empty_rle(*size)
    if len(rles) == 1:
        return rles[0]
    return _CheckedRLE(mask_utils.merge(list(rles), intersect=False))


def rle_areas(rles: Sequence[dict]) -> np.ndarray:
    """Pixel counts of RLEs → (N,) int64."""
    out = np.zeros(len(rles), dtype=np.int64)
    for start in range(0, len(rles), _AREA_CHUNK):
        chunk = list(rles[start:start + _AREA_CHUNK])
        out[start:start + len(chunk)] = mask_utils.area(chunk)
    return out


def check_rle_sizes(rles: Sequence[dict], size: tuple[int, int], name: str) -> None:
    """ValueError when any RLE's size differs from ``size`` (H, W)."""
    for i, rle in enumerate(rles):
        if rle_size(rle) != tuple(size):
            raise ValueError(f"{name}[{i}] has size {rle_size(rle)} but {tuple(size)} was expected "
                             "(masks of different sizes cannot be compared)")


def rle_intersection_union(pred: Sequence[dict], gt: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise I and U of ``pred[i]`` vs ``gt[i]`` in RLE space (no decoding).

    Args:
        pred, gt: N compressed RLEs each (see :func:`coco_rle`); pair i must share its size.
    Returns:
        I (N,) int64, U (N,) int64.
    """
    if len(pred) != len(gt):
        raise ValueError(f"got {len(pred)} predicted masks but {len(gt)} ground-truth masks")
    for i, (p, g) in enumerate(zip(pred, gt)):
        if rle_size(p) != rle_size(g):
            raise ValueError(f"sample {i}: predicted mask is {rle_size(p)} but ground truth is "
                             f"{rle_size(g)} (masks of different sizes cannot be compared)")
    area_p, area_g = rle_areas(pred), rle_areas(gt)
    inter = np.zeros(len(pred), dtype=np.int64)
    both = np.flatnonzero((area_p > 0) & (area_g > 0))
    for i in both:
        inter[i] = mask_utils.area(mask_utils.merge([pred[i], gt[i]], intersect=True))
    return inter, area_p + area_g - inter


def _is_bool(dtype: Any) -> bool:
    """numpy's or torch's bool dtype."""
    return dtype == np.bool_ or str(dtype) == "torch.bool"


def _check_dense_pair(pred: Any, gt: Any) -> None:
    if tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(f"predicted masks have shape {tuple(pred.shape)} but ground truth has "
                         f"{tuple(gt.shape)} (masks of different sizes cannot be compared)")
    if pred.ndim != 3:
        raise ValueError(f"expected (N, H, W) mask stacks, got shape {tuple(pred.shape)}")
    if not (_is_bool(pred.dtype) and _is_bool(gt.dtype)):
        raise ValueError(f"masks must be boolean, got {pred.dtype} and {gt.dtype}")


def dense_intersection_union(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise I and U of bool mask stacks on the CPU.

    Args:
        pred, gt: (N, H, W) bool numpy arrays of equal shape.
    Returns:
        I (N,) int64, U (N,) int64.
    """
    _check_dense_pair(pred, gt)
    n = pred.shape[0]
    inter = np.empty(n, dtype=np.int64)
    union = np.empty(n, dtype=np.int64)
    # One mask at a time keeps the operands in cache; much faster than whole-stack reductions.
    for i in range(n):
        p, g = pred[i], gt[i]
        a = np.count_nonzero(p & g)
        inter[i] = a
        union[i] = np.count_nonzero(p) + np.count_nonzero(g) - a
    return inter, union


def torch_intersection_union(pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray,
                             device: str | torch.device | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise I and U computed by torch on ``device`` (default: the tensors' own device).

    Args:
        pred, gt: (N, H, W) bool tensors or arrays of equal shape.
    Returns:
        I (N,) int64, U (N,) int64 — on ``device``, so callers can keep accumulating there.
    """
    import torch

    pred_t = torch.as_tensor(pred)
    gt_t = torch.as_tensor(gt)
    _check_dense_pair(pred_t, gt_t)
    target = torch.device(device) if device is not None else pred_t.device
    pred_t = pred_t.to(target, non_blocking=True).flatten(1)
    gt_t = gt_t.to(target, non_blocking=True).flatten(1)
    # count_nonzero reduces bool directly (a dtype=int64 sum would materialise an int64 copy)
    inter = torch.count_nonzero(pred_t & gt_t, dim=1)
    union = torch.count_nonzero(pred_t, dim=1) + torch.count_nonzero(gt_t, dim=1) - inter
    return inter, union


def iou_from_counts(inter: np.ndarray, union: np.ndarray, empty: float) -> np.ndarray:
    """I / U elementwise as float64, with ``empty`` where U = 0 (both masks empty)."""
    inter = np.asarray(inter, dtype=np.float64)
    union = np.asarray(union, dtype=np.float64)
    out = np.full(inter.shape, float(empty), dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def rle_iou_matrix(pred: Sequence[dict], gt: Sequence[dict]) -> np.ndarray:
    """IoU of every predicted RLE against every ground-truth RLE → (M, N) float64.

    A pair of empty masks has IoU 0 here (nothing to match), as in pycocotools.
    """
    if len(pred) == 0 or len(gt) == 0:
        return np.zeros((len(pred), len(gt)), dtype=np.float64)
    size = rle_size(gt[0])
    check_rle_sizes(gt, size, "ground-truth masks")
    check_rle_sizes(pred, size, "predicted masks")
    # pycocotools' iou type-checks for plain dicts
    return np.asarray(mask_utils.iou([dict(p) for p in pred], [dict(g) for g in gt], [0] * len(gt)),
                      dtype=np.float64)


def dense_iou_matrix(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of every predicted mask against every ground-truth mask → (M, N) float64.

    Args:
        pred: (M, H, W) bool; gt: (N, H, W) bool. A pair of empty masks has IoU 0.
    """
    if pred.ndim != 3 or gt.ndim != 3 or pred.shape[1:] != gt.shape[1:]:
        raise ValueError(f"predicted masks {tuple(pred.shape)} and ground-truth masks "
                         f"{tuple(gt.shape)} must be (M, H, W) and (N, H, W) of one size")
    pixels = pred.shape[1] * pred.shape[2]
    a = pred.reshape(pred.shape[0], pixels).astype(np.float64)
    b = gt.reshape(gt.shape[0], pixels).astype(np.float64)
    inter = a @ b.T  # exact: counts < 2**53
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return iou_from_counts(inter, union, empty=0.0)


def is_rle_list(masks: Any) -> bool:
    """True for a list/tuple of COCO RLE dicts (an empty list counts as RLE)."""
    return isinstance(masks, (list, tuple)) and all(isinstance(m, dict) for m in masks)


def decode_rles(rles: Sequence[dict], size: tuple[int, int] | None = None) -> np.ndarray:
    """RLEs → (N, H, W) bool. ``size`` is required when ``rles`` is empty."""
    if len(rles) == 0:
        if size is None:
            raise ValueError("cannot decode an empty list of RLEs without a size")
        return np.zeros((0, *size), dtype=bool)
    first = rle_size(rles[0])
    check_rle_sizes(rles, size if size is not None else first, "masks")
    return mask_utils.decode(list(rles)).transpose(2, 0, 1).astype(bool)


def intersection_union(pred: Any, gt: Any, device: str | torch.device | None = None
                       ) -> tuple[np.ndarray, np.ndarray] | tuple[torch.Tensor, torch.Tensor]:
    """Pairwise I and U of ``pred[i]`` vs ``gt[i]``, choosing the fastest path for the inputs.

    Args:
        pred, gt: N masks each, as (N, H, W) bool numpy arrays, (N, H, W) bool torch tensors, or
            lists of COCO RLE dicts.
        device: an accelerator (e.g. ``"cuda"``) computes there with torch and returns tensors
            there, so sums can be accumulated on it. Default: the tensors' own device. On the
            CPU (``"cpu"`` or CPU tensors) the numpy kernel runs; RLE lists without a device
            stay in run-length space.
    Returns:
        I (N,) and U (N,): int64 numpy arrays, or torch tensors on an accelerator.
    """
    if device is None and is_rle_list(pred) and is_rle_list(gt):
        return rle_intersection_union([coco_rle(p, f"pred[{i}]") for i, p in enumerate(pred)],
                                      [coco_rle(g, f"gt[{i}]") for i, g in enumerate(gt)])
    if is_rle_list(pred):
        pred = decode_rles([coco_rle(p, f"pred[{i}]") for i, p in enumerate(pred)],
                           None if len(pred) else tuple(gt.shape[1:]))
    if is_rle_list(gt):
        gt = decode_rles([coco_rle(g, f"gt[{i}]") for i, g in enumerate(gt)],
                         None if len(gt) else tuple(pred.shape[1:]))
    if device is None:
        device = next((m.device for m in (pred, gt) if is_tensor(m)), None)
    if device is not None and str(device) != "cpu":
        import torch

        if torch.device(device).type != "cpu":
            return torch_intersection_union(pred, gt, device)
    # On the CPU numpy's per-mask count_nonzero is several times faster than torch's reductions.
    return dense_intersection_union(_cpu_numpy(pred), _cpu_numpy(gt))


def _cpu_numpy(masks: Any) -> np.ndarray:
    if is_tensor(masks):
        return masks.detach().cpu().numpy()
    return np.asarray(masks)


def mask_areas(masks: Any) -> np.ndarray:
    """Pixel count of each mask → (N,) int64 numpy, for (N, H, W) numpy / torch or RLE lists."""
    if is_rle_list(masks):
        return rle_areas([coco_rle(m, f"masks[{i}]") for i, m in enumerate(masks)])
    if is_tensor(masks) and masks.device.type != "cpu":
        import torch

        return torch.count_nonzero(masks.flatten(1), dim=1).cpu().numpy() if masks.shape[0] else \
            np.zeros(0, dtype=np.int64)
    masks = _cpu_numpy(masks)
    return np.array([np.count_nonzero(m) for m in masks], dtype=np.int64)


def greedy_matched_ious(iou: np.ndarray) -> list[float]:
    """GLaMM's one-to-one greedy matching on an (M, N) IoU matrix → the matched IoUs in order
    (a NaN anywhere makes the maximum NaN, so nothing is matched, as in GLaMM)."""
    work = np.array(iou, dtype=np.float64)
    matched: list[float] = []
    while work.size > 0 and work.max() > 0:
        r, c = np.unravel_index(int(np.argmax(work)), work.shape)
        matched.append(float(work[r, c]))
        work = np.delete(np.delete(work, r, axis=0), c, axis=1)
    return matched
