"""The one COCOeval wrapper every AP number in masktok goes through.

Standard mode keeps the files' categories and scores (reproduces the published COCO numbers);
GCG's AP50 runs the same code class-agnostic with a constant score, as GLaMM does (every
ground-truth and predicted mask in category 1, every prediction scored 1.0, so COCOeval ranks
predictions in file order).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                               "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
AGNOSTIC_CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}


@dataclass(frozen=True)
class CocoEvalResult:
    """COCOeval's 12 summary numbers by name (−1 where COCOeval has no data), its printed
    summary, and what was evaluated."""

    stats: dict[str, float]
    summary: str
    num_images: int
    num_ground_truth: int
    num_predictions: int

    @property
    def ap(self) -> float:
        return self.stats["AP"]

    @property
    def ap50(self) -> float:
        return self.stats["AP50"]


def _load_json(value: Any, name: str) -> Any:
    if isinstance(value, (str, Path)):
        path = Path(value)
        if not path.is_file():
            raise ValueError(f"{name}: file not found: {path}")
        with path.open() as f:
            return json.load(f)
    return value


def _plain_segmentation(record: dict) -> dict:
    seg = record.get("segmentation")
    if isinstance(seg, dict) and type(seg) is not dict:
        return {**record, "segmentation": dict(seg)}
    return record


def _quiet_coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_evaluate(ground_truth: dict | str | Path, predictions: Sequence[dict] | str | Path, *,
                  iou_type: str = "segm", class_agnostic: bool = False,
                  constant_score: float | None = None,
                  image_ids: Sequence[Any] | None = None) -> CocoEvalResult:
    """Run pycocotools' COCOeval and return its summary numbers.

    Args:
        ground_truth: a COCO instances dataset (dict or path to its JSON).
        predictions: COCO results (list of ``{"image_id", "category_id", "segmentation" | "bbox",
            "score"}`` or a path to such a JSON list); may be empty (AP is then 0).
        iou_type: ``"segm"`` or ``"bbox"``.
        class_agnostic: put every ground-truth annotation and prediction in one category.
        constant_score: give every prediction this score (GCG: 1.0); ``None`` keeps the scores.
        image_ids: evaluate these images only (default: every image of the ground truth).
    """
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    gt_data = _load_json(ground_truth, "ground_truth")
    if not isinstance(gt_data, dict) or not {"images", "annotations"} <= set(gt_data):
        raise ValueError("ground_truth must be a COCO dataset with 'images' and 'annotations'")
    results = _load_json(predictions, "predictions")
    if not isinstance(results, list):
        raise ValueError("predictions must be a list of COCO result dicts")
    if class_agnostic:
        gt_data = copy.copy(gt_data)
        gt_data["annotations"] = [{**a, "category_id": AGNOSTIC_CATEGORY["id"]}
                                  for a in gt_data["annotations"]]
        gt_data["categories"] = [dict(AGNOSTIC_CATEGORY)]
        results = [{**r, "category_id": AGNOSTIC_CATEGORY["id"]} for r in results]
    if constant_score is not None:
        results = [{**r, "score": float(constant_score)} for r in results]
    # pycocotools type-checks RLEs for plain dicts
    results = [_plain_segmentation(r) for r in results]
    gt_data = {**gt_data, "annotations": [_plain_segmentation(a) for a in gt_data["annotations"]]}
    for i, r in enumerate(results):
        if "image_id" not in r or "category_id" not in r or "score" not in r:
            raise ValueError(f"predictions[{i}] needs 'image_id', 'category_id' and 'score'")
        if iou_type not in r and not (iou_type == "segm" and "segmentation" in r):
            raise ValueError(f"predictions[{i}] has no {'segmentation' if iou_type == 'segm' else 'bbox'}")

    coco_gt = _quiet_coco(gt_data)
    known = set(coco_gt.getImgIds())
    unknown = {r["image_id"] for r in results} - known
    if unknown:
        raise ValueError(f"predictions refer to {len(unknown)} image ids not in the ground truth, "
                         f"e.g. {sorted(map(str, unknown))[:3]}")
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes([dict(r) for r in results])  # loadRes edits its input
    else:
        coco_dt = _quiet_coco({"images": gt_data["images"], "annotations": [],
                               "categories": gt_data.get("categories", [])})
    evaluator = COCOeval(coco_gt, coco_dt, iou_type)
    ids = sorted(known) if image_ids is None else list(image_ids)
    missing = set(ids) - known
    if missing:
        raise ValueError(f"image_ids holds {len(missing)} ids not in the ground truth")
    evaluator.params.imgIds = ids
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: float(v) for name, v in zip(STAT_NAMES, np.asarray(evaluator.stats))}
    summary = "\n".join(line for line in buffer.getvalue().splitlines()
                        if line.startswith(" Average"))
    id_set = set(ids)
    return CocoEvalResult(
        stats=stats, summary=summary, num_images=len(ids),
        num_ground_truth=sum(1 for a in gt_data["annotations"] if a["image_id"] in id_set),
        num_predictions=sum(1 for r in results if r["image_id"] in id_set))
