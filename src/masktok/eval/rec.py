"""Referring expression comprehension (REC): box accuracy.

A prediction is correct at threshold t when IoU(predicted box, ground-truth box) ≥ t
(Acc@0.5 is the standard number; Acc@0.7 and Acc@0.9 are stricter). Boxes are continuous
``(x1, y1, x2, y2)`` pixel corners of the original image; a COCO box ``[x, y, w, h]`` is
``(x, y, x + w, y + h)``. Model answers are read into boxes by :mod:`masktok.eval.rec_answers`
(the box forms each model family's published scorer accepts).

IoU is ``inter / (area_pred + area_gt - inter)`` without a +1 pixel, as InternVL's and Qwen-VL's
scorers (``torchvision.ops.box_area``) compute it; with ``float32=True`` every step is done in
float32, as their torch tensors are.

Mask-only models are scored through the tight box of their mask: a mask's box is
``(min col, min row, max col + 1, max row + 1)`` (pixel edges, the convention of COCO boxes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from masktok.eval.rec_answers import ParsedBox
from masktok.masks.iou import coco_rle

REC_THRESHOLDS: tuple[float, ...] = (0.5, 0.7, 0.9)


def mask_box(rle: dict) -> ParsedBox:
    """Tight box of a mask (COCO RLE) as xyxy pixel edges; an empty mask has no box."""
    rle = coco_rle(rle)
    x, y, w, h = mask_utils.toBbox(rle).tolist()
    if w <= 0 or h <= 0:
        return ParsedBox(None, "empty_mask", 0)
    return ParsedBox(np.array([x, y, x + w, y + h], dtype=np.float64), "ok", 1)


def xywh_to_xyxy(box: Sequence[float]) -> np.ndarray:
    """COCO ``[x, y, w, h]`` → ``(x1, y1, x2, y2)``."""
    x, y, w, h = (float(v) for v in box)
    if w < 0 or h < 0:
        raise ValueError(f"box {list(box)} has a negative width or height")
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def box_iou(pred: np.ndarray, gt: np.ndarray, float32: bool = False) -> np.ndarray:
    """Elementwise IoU of continuous xyxy boxes: (N, 4) × (N, 4) → (N,) float64.

    Rows of ``pred`` that are all NaN (no usable box) score 0. ``float32`` computes every step
    in float32 (the reference scorers' arithmetic); the result is returned as float64.
    """
    dtype = np.float32 if float32 else np.float64
    pred = np.asarray(pred, dtype=dtype).reshape(-1, 4)
    gt = np.asarray(gt, dtype=dtype).reshape(-1, 4)
    if pred.shape != gt.shape:
        raise ValueError(f"got {pred.shape[0]} predicted boxes for {gt.shape[0]} ground-truth boxes")
    if np.isnan(gt).any():
        raise ValueError("ground-truth boxes contain NaN")
    zero = dtype(0)
    with np.errstate(invalid="ignore"):
        iw = np.maximum(np.minimum(pred[:, 2], gt[:, 2]) - np.maximum(pred[:, 0], gt[:, 0]), zero)
        ih = np.maximum(np.minimum(pred[:, 3], gt[:, 3]) - np.maximum(pred[:, 1], gt[:, 1]), zero)
        inter = iw * ih
        union = ((pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
                 + (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])) - inter
    out = np.zeros(pred.shape[0], dtype=np.float64)
    valid = ~np.isnan(pred).any(axis=1) & (union > 0)
    out[valid] = (inter[valid] / union[valid]).astype(np.float64)
    return out


@dataclass(frozen=True)
class RECMetrics:
    """Accuracy at each IoU threshold, plus the mean IoU (fractions in [0, 1])."""

    accuracy: dict[float, float]
    mean_iou: float
    num_samples: int
    num_without_box: int

    def as_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {f"Acc@{t:g}": v for t, v in self.accuracy.items()}
        out.update({"mIoU": self.mean_iou, "num_samples": self.num_samples,
                    "num_without_box": self.num_without_box})
        return out


def rec_metrics(pred_boxes: np.ndarray, gt_boxes: np.ndarray,
                thresholds: tuple[float, ...] = REC_THRESHOLDS, float32: bool = False) -> RECMetrics:
    """REC accuracy. pred_boxes (N, 4) xyxy with NaN rows for answers without a usable box;
    gt_boxes (N, 4) xyxy; ``float32`` as in :func:`box_iou`."""
    ious = box_iou(pred_boxes, gt_boxes, float32=float32)
    if ious.size == 0:
        raise ValueError("REC metrics need at least one sample")
    missing = int(np.isnan(np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)).any(axis=1).sum())
    return RECMetrics(accuracy={float(t): float(np.mean(ious >= t)) for t in thresholds},
                      mean_iou=float(ious.mean()), num_samples=int(ious.size), num_without_box=missing)
