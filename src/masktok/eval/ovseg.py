"""Open-vocabulary semantic segmentation mIoU (ADE20K A-150, PASCAL Context PC-59, PASCAL VOC
PAS-20) for models that segment one class name per question, as HiMTok is evaluated.

The model is asked about each class separately and answers with masks (or "no target"), so the
per-class masks of one image can overlap. They are turned into one semantic map with HiMTok's
rule: a pixel claimed by several classes goes to the class whose mask has the **smaller area**
(ties: the mask listed first). Pixels no mask claims stay *unlabeled*: they are errors for their
ground-truth class and a prediction for no class.

Scores follow detectron2's ``SemSegEvaluator`` on a dataset-wide confusion matrix: ground-truth
pixels equal to ``ignore_index`` (255) are left out; per class IoU = TP / (|GT| + |pred| − TP);
**mIoU** averages the IoU over classes that occur in the ground truth; pixel accuracy and
frequency-weighted IoU come with it. Fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from masktok.masks.iou import coco_rle, decode_rles, is_rle_list

UNLABELED = -1


def semantic_map_from_masks(masks: Any, class_ids: Sequence[int], height: int, width: int) -> np.ndarray:
    """Per-class masks of one image → (H, W) int64 class map, smaller area wins overlaps.

    Args:
        masks: K masks, (K, H, W) bool or K COCO RLEs (a class may have several).
        class_ids: (K,) class index of each mask.
    Returns:
        (H, W) int64 with a class index per pixel, :data:`UNLABELED` (-1) where no mask is.
    """
    class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    if is_rle_list(masks):
        rles = [coco_rle(m, f"masks[{i}]") for i, m in enumerate(masks)]
        dense = decode_rles(rles, (height, width)) if rles else np.zeros((0, height, width), bool)
    else:
        dense = np.asarray(masks)
        if dense.dtype != np.bool_ or dense.ndim != 3:
            raise ValueError(f"masks must be (K, H, W) bool or COCO RLEs, got {dense.dtype} {dense.shape}")
    if dense.shape[1:] != (height, width):
        raise ValueError(f"masks are {dense.shape[1:]} but the image is {(height, width)} "
                         "(masks of different sizes cannot be combined)")
    if dense.shape[0] != class_ids.shape[0]:
        raise ValueError(f"{dense.shape[0]} masks for {class_ids.shape[0]} class ids")
    if class_ids.size and class_ids.min() < 0:
        raise ValueError("class ids must be non-negative")
    out = np.full((height, width), UNLABELED, dtype=np.int64)
    areas = dense.reshape(dense.shape[0], height * width).sum(axis=1)
    # Paint large masks first so smaller ones overwrite them; among equal areas the mask listed
    # first is painted last and wins.
    order = np.lexsort((-np.arange(len(areas)), -areas))
    for k in order:
        out[dense[k]] = class_ids[k]
    return out


@dataclass(frozen=True)
class OVSegMetrics:
    """Dataset scores: mIoU over classes present in the ground truth, pixel accuracy,
    frequency-weighted IoU, per-class IoU (NaN for classes absent from the ground truth)."""

    miou: float
    pixel_accuracy: float
    fw_iou: float
    per_class_iou: np.ndarray
    num_images: int

    def as_dict(self) -> dict[str, float | int]:
        return {"mIoU": self.miou, "pAcc": self.pixel_accuracy, "fwIoU": self.fw_iou,
                "num_classes_present": int(np.sum(~np.isnan(self.per_class_iou))),
                "num_images": self.num_images}


@dataclass
class SemSegConfusion:
    """Dataset-wide confusion matrix (rows: predicted class or unlabeled, columns: ground-truth
    class or ignored)."""

    num_classes: int
    ignore_index: int = 255
    _matrix: np.ndarray = field(init=False, repr=False)
    _images: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.num_classes <= 0:
            raise ValueError("num_classes must be positive")
        self._matrix = np.zeros((self.num_classes + 1, self.num_classes + 1), dtype=np.int64)

    def update(self, pred_map: np.ndarray, gt_map: np.ndarray) -> None:
        """Add one image. pred_map (H, W) int (class or -1 unlabeled); gt_map (H, W) int (class
        or ``ignore_index``)."""
        pred_map, gt_map = np.asarray(pred_map), np.asarray(gt_map)
        if pred_map.shape != gt_map.shape or pred_map.ndim != 2:
            raise ValueError(f"prediction map {pred_map.shape} and ground-truth map {gt_map.shape} "
                             "must be (H, W) of one size")
        c = self.num_classes
        gt = gt_map.astype(np.int64).ravel()
        ignored = gt == self.ignore_index
        if bool(((gt < 0) | (gt >= c))[~ignored].any()):
            raise ValueError(f"ground-truth labels must be in 0..{c - 1} or {self.ignore_index}")
        pred = pred_map.astype(np.int64).ravel()
        if bool(((pred < UNLABELED) | (pred >= c)).any()):
            raise ValueError(f"predicted labels must be in 0..{c - 1} or {UNLABELED} (unlabeled)")
        pred = np.where(pred == UNLABELED, c, pred)
        gt = np.where(ignored, c, gt)
        self._matrix += np.bincount(pred * (c + 1) + gt, minlength=(c + 1) ** 2).reshape(c + 1, c + 1)
        self._images += 1

    @property
    def matrix(self) -> np.ndarray:
        """(C + 1, C + 1) int64 counts [pred, gt]; the last row is unlabeled, the last column
        ignored."""
        return self._matrix.copy()

    def compute(self) -> OVSegMetrics:
        c = self.num_classes
        m = self._matrix
        tp = np.diag(m)[:c].astype(np.float64)
        pos_gt = m[:, :c].sum(axis=0).astype(np.float64)   # includes unlabeled predictions
        pos_pred = m[:c, :c].sum(axis=1).astype(np.float64)  # ignored pixels left out
        if pos_gt.sum() == 0:
            raise ValueError("the ground truth has no labelled pixel; mIoU is undefined")
        union = pos_gt + pos_pred - tp
        valid = (pos_gt > 0) & (union > 0)
        iou = np.full(c, np.nan)
        iou[valid] = tp[valid] / union[valid]
        weights = pos_gt / pos_gt.sum()
        return OVSegMetrics(miou=float(iou[valid].mean()), pixel_accuracy=float(tp.sum() / pos_gt.sum()),
                            fw_iou=float(np.sum(iou[valid] * weights[valid])), per_class_iou=iou,
                            num_images=self._images)

