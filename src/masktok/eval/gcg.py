"""Grounded conversation generation (GCG), as GLaMM's ``eval/gcg/evaluate.py`` scores it.

Per image the model writes a caption in which phrases are tied to masks; ground truth is a
caption, its phrases and one mask per phrase. Metrics (fractions in [0, 1]):

* **AP50** — COCOeval ``segm`` on all predicted masks with one category and every score 1.0
  (:func:`masktok.eval.coco.coco_evaluate` with ``class_agnostic=True, constant_score=1.0``).
* **mIoU** — per image, the IoU matrix of predicted vs ground-truth masks is matched greedily:
  take the global maximum, record it, delete its row and column, repeat while the maximum is > 0;
  the image scores the mean of the recorded IoUs (0.0 when nothing is recorded, e.g. no
  prediction or no ground truth); mIoU is the mean over images. Extra predictions do not lower it.
* **Recall** — per image, greedy one-to-one matching on the ground-truth × prediction IoU
  matrix: the global maximum pair is accepted when its IoU ≥ 0.5 *and* the phrase similarity ≥
  0.5; the first maximum that fails either test ends the image's matching (GLaMM's rule, kept).
  Recall = accepted pairs / ground-truth phrases over the whole set.
* **METEOR, CIDEr** — pycocoevalcap on the captions (see :mod:`masktok.eval.caption_metrics`).

Two empty masks have IoU 0 here (GLaMM's 0/0 would give NaN). Phrases and masks must pair up
one to one; more masks than phrases (or the reverse) is a ``ValueError``. Masks of different
sizes are a ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from masktok.eval.coco import CocoEvalResult, coco_evaluate
from masktok.masks.iou import check_rle_sizes, coco_rle, greedy_matched_ious, rle_areas, rle_iou_matrix
from masktok.words.phrase_similarity import DEFAULT_TEXT_SIMILARITY, TextSimilarity


@dataclass
class GCGSample:
    """One image's grounded caption: ``phrases[i]`` is grounded by ``masks[i]`` (COCO RLE).

    Ground truth and predictions share this type; ``captions`` holds one or more reference
    captions for ground truth and exactly one caption for a prediction. Masks are validated and
    stored in pycocotools' form (``bytes`` counts).
    """

    image_id: Any
    height: int
    width: int
    captions: list[str]
    phrases: list[str]
    masks: list[dict]
    file_name: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.phrases) != len(self.masks):
            raise ValueError(f"image {self.image_id!r}: {len(self.masks)} masks for "
                             f"{len(self.phrases)} phrases (each phrase needs exactly one mask)")
        self.masks = [coco_rle(m, f"image {self.image_id!r} mask {i}") for i, m in enumerate(self.masks)]
        check_rle_sizes(self.masks, (self.height, self.width), f"image {self.image_id!r} masks")


def image_miou(pred_masks: Sequence[dict], gt_masks: Sequence[dict]) -> float:
    """One image's greedy-matching mean IoU (0.0 when nothing matches)."""
    matched = greedy_matched_ious(rle_iou_matrix(list(pred_masks), list(gt_masks)))
    return float(np.mean(matched)) if matched else 0.0


def phrase_matches(gt_masks: Sequence[dict], gt_phrases: Sequence[str],
                   pred_masks: Sequence[dict], pred_phrases: Sequence[str],
                   similarity: TextSimilarity = DEFAULT_TEXT_SIMILARITY,
                   iou_threshold: float = 0.5, similarity_threshold: float = 0.5
                   ) -> list[tuple[int, int]]:
    """GLaMM's recall matching for one image → accepted (gt index, prediction index) pairs."""
    if len(gt_masks) != len(gt_phrases) or len(pred_masks) != len(pred_phrases):
        raise ValueError("masks and phrases must pair up one to one "
                         f"(ground truth {len(gt_masks)}/{len(gt_phrases)}, "
                         f"prediction {len(pred_masks)}/{len(pred_phrases)})")
    ious = rle_iou_matrix(list(gt_masks), list(pred_masks))
    if ious.size == 0:
        return []
    sims = np.asarray(similarity(list(gt_phrases), list(pred_phrases)), dtype=np.float64).copy()
    if sims.shape != ious.shape:
        raise ValueError(f"text similarity returned shape {sims.shape}, expected {ious.shape}")
    matches: list[tuple[int, int]] = []
    while True:
        g, p = np.unravel_index(int(np.argmax(ious)), ious.shape)
        if ious[g, p] < iou_threshold or sims[g, p] < similarity_threshold:
            break
        matches.append((int(g), int(p)))
        ious[g, :] = 0
        ious[:, p] = 0
        sims[g, :] = 0
        sims[:, p] = 0
    return matches


@dataclass(frozen=True)
class GCGMetrics:
    """GCG scores; ``caption`` holds METEOR/CIDEr or is empty when they were not computed."""

    ap50: float
    miou: float
    recall: float
    caption: dict[str, float]
    coco: CocoEvalResult
    num_images: int
    num_gt_phrases: int
    num_matched_phrases: int

    def as_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = dict(self.caption)
        out.update({"AP50": self.ap50, "mIoU": self.miou, "Recall": self.recall,
                    "num_images": self.num_images, "num_gt_phrases": self.num_gt_phrases,
                    "num_matched_phrases": self.num_matched_phrases})
        return out


def gcg_coco_inputs(references: Sequence[GCGSample], predictions: Sequence[GCGSample]
                    ) -> tuple[dict, list[dict]]:
    """The class-agnostic COCO ground truth and results GLaMM's AP50 is computed on."""
    images, annotations, results = [], [], []
    for ref in references:
        images.append({"id": ref.image_id, "height": ref.height, "width": ref.width})
        areas = rle_areas(ref.masks)
        for mask, area in zip(ref.masks, areas):
            annotations.append({"id": len(annotations) + 1, "image_id": ref.image_id,
                                "category_id": 1, "segmentation": mask, "area": float(area),
                                "iscrowd": 0})
    for pred in predictions:
        results.extend({"image_id": pred.image_id, "category_id": 1, "segmentation": m, "score": 1.0}
                       for m in pred.masks)
    return {"images": images, "annotations": annotations, "categories": [{"id": 1}]}, results


def pair_by_image(references: Sequence[GCGSample], predictions: Sequence[GCGSample]
                  ) -> list[tuple[GCGSample, GCGSample]]:
    """Pair every reference with its prediction by ``image_id``; missing, unknown or duplicate
    ids and size mismatches are ``ValueError``."""
    by_id: dict[Any, GCGSample] = {}
    for pred in predictions:
        if pred.image_id in by_id:
            raise ValueError(f"two predictions for image {pred.image_id!r}")
        by_id[pred.image_id] = pred
    ref_ids = {r.image_id for r in references}
    if len(ref_ids) != len(references):
        raise ValueError("ground truth lists an image id twice")
    unknown = set(by_id) - ref_ids
    if unknown:
        raise ValueError(f"predictions for {len(unknown)} images not in the ground truth, "
                         f"e.g. {sorted(map(str, unknown))[:3]}")
    missing = ref_ids - set(by_id)
    if missing:
        raise ValueError(f"no prediction for {len(missing)} ground-truth images, "
                         f"e.g. {sorted(map(str, missing))[:3]}")
    pairs = []
    for ref in references:
        pred = by_id[ref.image_id]
        if (pred.height, pred.width) != (ref.height, ref.width):
            raise ValueError(f"image {ref.image_id!r}: prediction is {pred.height}x{pred.width} but "
                             f"ground truth is {ref.height}x{ref.width}")
        pairs.append((ref, pred))
    return pairs


def evaluate_gcg(references: Sequence[GCGSample], predictions: Sequence[GCGSample], *,
                 similarity: TextSimilarity = DEFAULT_TEXT_SIMILARITY,
                 caption_scores: dict[str, float] | None = None,
                 per_image: list[dict] | None = None) -> GCGMetrics:
    """AP50, mIoU and recall over a set of images (captions are scored separately by
    :func:`masktok.eval.caption_metrics.caption_scores`; pass the result as ``caption_scores``).

    ``per_image``, when given, receives one dict per image (image_id, miou, matched, gt_phrases).
    """
    if not references:
        raise ValueError("GCG evaluation needs at least one ground-truth image")
    pairs = pair_by_image(references, predictions)
    gt, results = gcg_coco_inputs(references, predictions)
    coco = coco_evaluate(gt, results, class_agnostic=True, constant_score=1.0)
    mious, matched_total, phrase_total = [], 0, 0
    for ref, pred in pairs:
        miou = image_miou(pred.masks, ref.masks)
        matches = phrase_matches(ref.masks, ref.phrases, pred.masks, pred.phrases, similarity)
        mious.append(miou)
        matched_total += len(matches)
        phrase_total += len(ref.phrases)
        if per_image is not None:
            per_image.append({"image_id": ref.image_id, "mIoU": miou, "matched": len(matches),
                              "gt_phrases": len(ref.phrases), "pred_phrases": len(pred.phrases),
                              "matches": matches})
    return GCGMetrics(ap50=coco.ap50, miou=float(np.mean(mious)),
                      recall=matched_total / phrase_total if phrase_total else 0.0,
                      caption=dict(caption_scores or {}), coco=coco, num_images=len(pairs),
                      num_gt_phrases=phrase_total, num_matched_phrases=matched_total)
