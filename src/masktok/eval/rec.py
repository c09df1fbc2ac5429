"""Referring expression comprehension (REC): box accuracy and the box formats models answer in.

A prediction is correct at threshold t when IoU(predicted box, ground-truth box) ≥ t
(Acc@0.5 is the standard number; Acc@0.7 and Acc@0.9 are stricter). Boxes are continuous
``(x1, y1, x2, y2)`` pixel corners of the original image; a COCO box ``[x, y, w, h]`` is
``(x, y, x + w, y + h)``.

Answer formats (:data:`BOX_FORMATS`):

* ``"internvl"`` — InternVL / HiMTok ``<box>[[x1, y1, x2, y2]]</box>``, integers in 0–999 of the
  image (pixel = value / 1000 × width or height, as InternVL's evaluation converts).
* ``"qwen_norm"`` — Qwen-VL / Qwen2-VL / Qwen3-VL normalised boxes in 0–1000:
  ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``, ``<box>(x1,y1),(x2,y2)</box>`` or JSON
  ``"bbox_2d": [x1, y1, x2, y2]`` (pixel = value / 1000 × size).
* ``"qwen_abs"`` — Qwen2.5-VL absolute pixels, JSON ``"bbox_2d": [x1, y1, x2, y2]`` or the
  same tag forms, in the frame the model saw: ``input_size=(width, height)`` of that frame
  rescales to the original image (default: the original image itself).
* ``"pixels"`` — plain ``[x1, y1, x2, y2]`` in original-image pixels.

Mask-only models are scored through the tight box of their mask: a mask's box is
``(min col, min row, max col + 1, max row + 1)`` (pixel edges, the convention of COCO boxes).

An answer with no box, or whose first box has x2 ≤ x1 or y2 ≤ y1, scores IoU 0 and is reported
with its status; nothing is clamped or repaired.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from masktok.masks.iou import coco_rle

BOX_FORMATS: tuple[str, ...] = ("internvl", "qwen_norm", "qwen_abs", "pixels")
REC_THRESHOLDS: tuple[float, ...] = (0.5, 0.7, 0.9)

_NUMBER = r"-?\d+(?:\.\d+)?"
_FOUR = re.compile(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]")
_PAIRS = re.compile(rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)\s*,?\s*\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)")
_BOX_TAG = re.compile(r"<box>(.*?)</box>", re.S)
_QWEN_TAG = re.compile(r"<\|box_start\|>(.*?)<\|box_end\|>", re.S)
_BBOX_2D = re.compile(rf'"bbox_2d"\s*:\s*(\[[^\]]*\])')


def parse_boxes(text: str, box_format: str) -> list[tuple[float, float, float, float]]:
    """Every box in ``text`` in the format's own units (0–999, 0–1000 or pixels), in order."""
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
    if not isinstance(text, str):
        raise ValueError(f"answer must be a string, got {type(text).__name__}")
    boxes: list[tuple[float, float, float, float]] = []
    if box_format == "internvl":
        for body in _BOX_TAG.findall(text):
            boxes.extend(tuple(map(float, m)) for m in _FOUR.findall(body))
        return boxes
    if box_format == "pixels":
        return [tuple(map(float, m)) for m in _FOUR.findall(text)]
    # Qwen family: tags holding corner pairs or lists, or JSON bbox_2d entries, in text order.
    found: list[tuple[int, tuple[float, float, float, float]]] = []
    for tag in (_QWEN_TAG, _BOX_TAG):
        for m in tag.finditer(text):
            body = m.group(1)
            for pat in (_PAIRS, _FOUR):
                found.extend((m.start(), tuple(map(float, g))) for g in pat.findall(body))
    for m in _BBOX_2D.finditer(text):
        found.extend((m.start(), tuple(map(float, g))) for g in _FOUR.findall(m.group(1)))
    return [box for _, box in sorted(found, key=lambda item: item[0])]


def box_to_pixels(box: Sequence[float], box_format: str, width: int, height: int,
                  input_size: tuple[int, int] | None = None) -> np.ndarray:
    """One parsed box → (4,) float64 xyxy in original-image pixels."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if box_format in ("internvl", "qwen_norm"):
        sx, sy = width / 1000.0, height / 1000.0
    elif box_format == "qwen_abs":
        in_w, in_h = input_size if input_size is not None else (width, height)
        if in_w <= 0 or in_h <= 0:
            raise ValueError(f"input_size must be positive, got {input_size}")
        sx, sy = width / in_w, height / in_h
    elif box_format == "pixels":
        sx = sy = 1.0
    else:
        raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
    return np.array([x1 * sx, y1 * sy, x2 * sx, y2 * sy], dtype=np.float64)


@dataclass(frozen=True)
class ParsedBox:
    """The box an answer gives (xyxy pixels) or ``None``, with a status: ``ok``, ``no_box``,
    ``invalid_box`` (x2 ≤ x1 or y2 ≤ y1) or ``empty_mask``."""

    box: np.ndarray | None
    status: str
    num_boxes: int = 0


def answer_box(text: str, box_format: str, width: int, height: int,
               input_size: tuple[int, int] | None = None) -> ParsedBox:
    """The first box of an answer, in original-image pixels (REC scores the first box)."""
    boxes = parse_boxes(text, box_format)
    if not boxes:
        return ParsedBox(None, "no_box", 0)
    box = box_to_pixels(boxes[0], box_format, width, height, input_size)
    if box[2] <= box[0] or box[3] <= box[1]:
        return ParsedBox(None, "invalid_box", len(boxes))
    return ParsedBox(box, "ok", len(boxes))


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


def box_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Elementwise IoU of continuous xyxy boxes: (N, 4) × (N, 4) → (N,) float64.

    Rows of ``pred`` that are all NaN (no usable box) score 0.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    if pred.shape != gt.shape:
        raise ValueError(f"got {pred.shape[0]} predicted boxes for {gt.shape[0]} ground-truth boxes")
    if np.isnan(gt).any():
        raise ValueError("ground-truth boxes contain NaN")
    iw = np.clip(np.minimum(pred[:, 2], gt[:, 2]) - np.maximum(pred[:, 0], gt[:, 0]), 0, None)
    ih = np.clip(np.minimum(pred[:, 3], gt[:, 3]) - np.maximum(pred[:, 1], gt[:, 1]), 0, None)
    inter = iw * ih
    union = ((pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
             + (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]) - inter)
    out = np.zeros(pred.shape[0], dtype=np.float64)
    valid = ~np.isnan(pred).any(axis=1) & (union > 0)
    out[valid] = inter[valid] / union[valid]
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
                thresholds: tuple[float, ...] = REC_THRESHOLDS) -> RECMetrics:
    """REC accuracy. pred_boxes (N, 4) xyxy with NaN rows for answers without a usable box;
    gt_boxes (N, 4) xyxy."""
    ious = box_iou(pred_boxes, gt_boxes)
    if ious.size == 0:
        raise ValueError("REC metrics need at least one sample")
    missing = int(np.isnan(np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)).any(axis=1).sum())
    return RECMetrics(accuracy={float(t): float(np.mean(ious >= t)) for t in thresholds},
                      mean_iou=float(ious.mean()), num_samples=int(ious.size), num_without_box=missing)
