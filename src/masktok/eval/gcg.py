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
  Recall = accepted pairs / ground-truth phrases over the whole set. Phrase similarity: GLaMM's
  ``bert-base-uncased`` score when available (:func:`masktok.words.phrase_similarity.glamm_similarity`).
* **METEOR, CIDEr** — pycocoevalcap on the captions (see :mod:`masktok.eval.caption_metrics`).

The one edge case the protocols (:mod:`masktok.eval.protocol`) score differently is a predicted
mask and a ground-truth mask that are *both empty*:

* ``reference`` — GLaMM's IoU is 0/0 = NaN. ``np.max`` of a matrix holding a NaN is NaN, so the
  image's mIoU matching records nothing: the image scores 0. In the recall matching ``argmax``
  picks the NaN pair first; NaN fails no threshold test, so the pair is accepted when its phrase
  similarity is ≥ 0.5 (else the image's matching ends there).
* ``strict`` — two empty masks have IoU 0: they never match, and the other pairs of the image are
  matched as usual.

Phrases and masks must pair up one to one; more masks than phrases (or the reverse) is a
``ValueError``. Masks of different sizes are a ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from masktok.eval.coco import CocoEvalResult, coco_evaluate
from masktok.masks.iou import check_rle_sizes, coco_rle, greedy_matched_ious, rle_areas, rle_iou_matrix
from masktok.eval.protocol import REFERENCE, check_protocol
from masktok.words.phrase_similarity import (
    DEFAULT_TEXT_SIMILARITY,
    LEXICAL,
    PhraseSimilarity,
    TextSimilarity,
    glamm_similarity,
    lexical_similarity,
    lexical_warning,
)


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


def gcg_iou_matrix(masks_a: Sequence[dict], masks_b: Sequence[dict], protocol: str = REFERENCE
                   ) -> np.ndarray:
    """(M, N) IoU of RLEs; under ``reference`` a pair of empty masks is NaN (GLaMM's 0/0), under
    ``strict`` 0."""
    ious = rle_iou_matrix(list(masks_a), list(masks_b))
    if check_protocol(protocol) == REFERENCE and ious.size:
        empty_a = rle_areas(list(masks_a)) == 0
        empty_b = rle_areas(list(masks_b)) == 0
        ious[empty_a[:, None] & empty_b[None, :]] = np.nan
    return ious


def image_miou(pred_masks: Sequence[dict], gt_masks: Sequence[dict], protocol: str = REFERENCE) -> float:
    """One image's greedy-matching mean IoU (0.0 when nothing matches)."""
    matched = greedy_matched_ious(gcg_iou_matrix(pred_masks, gt_masks, protocol))
    return float(np.mean(matched)) if matched else 0.0


def phrase_matches(gt_masks: Sequence[dict], gt_phrases: Sequence[str],
                   pred_masks: Sequence[dict], pred_phrases: Sequence[str],
                   similarity: TextSimilarity = DEFAULT_TEXT_SIMILARITY,
                   iou_threshold: float = 0.5, similarity_threshold: float = 0.5,
                   protocol: str = REFERENCE) -> list[tuple[int, int]]:
    """GLaMM's recall matching for one image → accepted (gt index, prediction index) pairs."""
    if len(gt_masks) != len(gt_phrases) or len(pred_masks) != len(pred_phrases):
        raise ValueError("masks and phrases must pair up one to one "
                         f"(ground truth {len(gt_masks)}/{len(gt_phrases)}, "
                         f"prediction {len(pred_masks)}/{len(pred_phrases)})")
    ious = gcg_iou_matrix(gt_masks, pred_masks, protocol)
    if ious.size == 0:
        return []
    sims = np.asarray(similarity(list(gt_phrases), list(pred_phrases)), dtype=np.float64).copy()
    if sims.shape != ious.shape:
        raise ValueError(f"text similarity returned shape {sims.shape}, expected {ious.shape}")
    matches: list[tuple[int, int]] = []
    while True:
        # argmax returns the first NaN when there is one; NaN < threshold is False (GLaMM)
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
    """GCG scores; ``caption`` holds METEOR/CIDEr or is empty when they were not computed;
    ``headline`` is the warning to show before the numbers (lexical recall), or ``None``."""

    ap50: float
    miou: float
    recall: float
    caption: dict[str, float]
    coco: CocoEvalResult
    num_images: int
    num_gt_phrases: int
    num_matched_phrases: int
    protocol: str = REFERENCE
    similarity_name: str = ""
    headline: str | None = None

    def as_dict(self) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {"protocol": self.protocol,
                                             "phrase_similarity": self.similarity_name}
        out.update(self.caption)
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
                 protocol: str = REFERENCE,
                 similarity: TextSimilarity | PhraseSimilarity | None = None,
                 caption_scores: dict[str, float] | None = None,
                 per_image: list[dict] | None = None) -> GCGMetrics:
    """AP50, mIoU and recall over a set of images (captions are scored separately by
    :func:`masktok.eval.caption_metrics.caption_scores`; pass the result as ``caption_scores``).

    ``similarity``: ``None`` — :func:`~masktok.words.phrase_similarity.glamm_similarity` (GLaMM's
    bert-base-uncased from the local cache, else lexical with a headline warning); a
    :class:`~masktok.words.phrase_similarity.PhraseSimilarity`; or any text-similarity callable
    (reported as ``"custom"``). ``per_image``, when given, receives one dict per image
    (image_id, miou, matched, gt_phrases).
    """
    check_protocol(protocol)
    if not references:
        raise ValueError("GCG evaluation needs at least one ground-truth image")
    if similarity is None:
        similarity = glamm_similarity()
    elif similarity is lexical_similarity:
        similarity = PhraseSimilarity(lexical_similarity, LEXICAL, lexical_warning("chosen explicitly"))
    elif not isinstance(similarity, PhraseSimilarity):
        similarity = PhraseSimilarity(similarity, "custom")
    pairs = pair_by_image(references, predictions)
    gt, results = gcg_coco_inputs(references, predictions)
    coco = coco_evaluate(gt, results, class_agnostic=True, constant_score=1.0)
    mious, matched_total, phrase_total = [], 0, 0
    for ref, pred in pairs:
        miou = image_miou(pred.masks, ref.masks, protocol)
        matches = phrase_matches(ref.masks, ref.phrases, pred.masks, pred.phrases,
                                 similarity.similarity, protocol=protocol)
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
                      num_gt_phrases=phrase_total, num_matched_phrases=matched_total,
                      protocol=protocol, similarity_name=similarity.name,
                      headline=similarity.warning)
