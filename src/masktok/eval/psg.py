"""Panoptic scene graph generation (PSG): R@K and mR@K, as OpenPSG computes them (``pan_seg``
mode, graph constraint), and masktok's strict variant.

A scene graph is a list of instances (class label + mask) and a ranked list of relations
``(subject index, object index, predicate)``. A predicted triplet *hits* a ground-truth triplet
when the subject labels, object labels and predicates are equal and both the subject masks and
the object masks have IoU ≥ 0.5.

* ``R@K`` — per image, the number of distinct ground-truth triplets hit by any of the top-K
  predicted triplets over the number of ground-truth triplets; mean over the scored images.
* ``mR@K`` — per scored image and predicate, the same recall restricted to that predicate's
  ground-truth triplets (images where it does not occur contribute nothing); per predicate the
  mean over images; mR@K = sum over all ``num_predicates`` (OpenPSG: 56) predicates / 56, a
  predicate that never occurs counting 0.
* Top-K: predicted relations ranked by ``scores`` (descending, stable) when given, otherwise in
  answer order (a language model's triplets have no scores).
* Ground-truth triplets are made unique first (the same ``(subject, object, predicate)`` listed
  twice counts once; first occurrence kept), as OpenPSG's test-set loader
  (``openpsg/datasets/psg.py``, ``get_ann_info``) does; images without any ground-truth relation
  are left out (OpenPSG drops them when it loads the set).

Protocols (:mod:`masktok.eval.protocol`):

* ``reference`` — OpenPSG (``openpsg/evaluation/sgg_eval.py``, ``sgg_metrics.py``): an image
  whose prediction has no triplet is left out of R@K and mR@K altogether; a predicted mask may
  hit several ground-truth instances and several predicted copies of one object may each hit it.
* ``strict`` — every image with ground-truth relations counts (no predicted triplet → recall 0),
  and predicted instances are first assigned to ground-truth instances one to one — greedily by
  descending mask IoU among pairs with equal labels and IoU ≥ 0.5 — so a triplet hits only
  through that assignment and duplicated masks cannot inflate recall.

Labels are integer class indices; ``-1`` marks a label the model wrote that is not in the class
list (it never matches). Masks of different sizes are a ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from masktok.eval.protocol import REFERENCE, STRICT, check_protocol
from masktok.masks.iou import check_rle_sizes, coco_rle, rle_iou_matrix

PSG_NUM_PREDICATES = 56
PSG_KS: tuple[int, ...] = (20, 50, 100)


@dataclass
class SceneGraph:
    """One image's scene graph.

    Attributes:
        labels: (N,) int class index per instance (-1 = unknown label).
        masks: N COCO RLEs at (height, width).
        relations: (R, 3) int rows ``(subject, object, predicate)``; predicate -1 = unknown.
        scores: optional (R,) ranking scores (higher first); ``None`` = list order.
    """

    image_id: Any
    height: int
    width: int
    labels: np.ndarray
    masks: list[dict]
    relations: np.ndarray
    scores: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        name = f"scene graph {self.image_id!r}"
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.relations = np.asarray(self.relations, dtype=np.int64).reshape(-1, 3)
        if len(self.masks) != self.labels.shape[0]:
            raise ValueError(f"{name}: {len(self.masks)} masks for {self.labels.shape[0]} labels")
        self.masks = [coco_rle(m, f"{name} mask {i}") for i, m in enumerate(self.masks)]
        check_rle_sizes(self.masks, (self.height, self.width), f"{name} masks")
        n = self.labels.shape[0]
        so = self.relations[:, :2]
        if so.size and (so.min() < 0 or so.max() >= n):
            raise ValueError(f"{name}: relations refer to instances outside 0..{n - 1}")
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
            if self.scores.shape[0] != self.relations.shape[0]:
                raise ValueError(f"{name}: {self.scores.shape[0]} scores for "
                                 f"{self.relations.shape[0]} relations")

    def ranked_relations(self) -> np.ndarray:
        """(R, 3) relations, best first."""
        if self.scores is None:
            return self.relations
        return self.relations[np.argsort(-self.scores, kind="stable")]


def assign_instances(iou: np.ndarray, label_match: np.ndarray, iou_threshold: float) -> np.ndarray:
    """One-to-one greedy assignment of predicted to ground-truth instances.

    Args:
        iou: (P, G) mask IoU; label_match: (P, G) bool, labels equal.
    Returns:
        (P, G) bool with at most one True per row and per column.
    """
    cand = np.argwhere((iou >= iou_threshold) & label_match)
    order = np.argsort(-iou[cand[:, 0], cand[:, 1]], kind="stable") if len(cand) else []
    out = np.zeros(iou.shape, dtype=bool)
    used_p, used_g = set(), set()
    for k in order:
        p, g = int(cand[k, 0]), int(cand[k, 1])
        if p not in used_p and g not in used_g:
            out[p, g] = True
            used_p.add(p)
            used_g.add(g)
    return out


def unique_relations(relations: np.ndarray) -> np.ndarray:
    """(R, 3) relations without repeated rows, first occurrences kept in order."""
    relations = np.asarray(relations, dtype=np.int64).reshape(-1, 3)
    if relations.shape[0] < 2:
        return relations
    _, first = np.unique(relations, axis=0, return_index=True)
    return relations[np.sort(first)]


def triplet_hits(gt: SceneGraph, pred: SceneGraph, iou_threshold: float = 0.5,
                 protocol: str = REFERENCE) -> np.ndarray:
    """(R_pred, R_gt) bool: ranked predicted triplet i hits ground-truth triplet j (of
    ``gt.relations`` as given; :func:`evaluate_psg` makes them unique first)."""
    if (pred.height, pred.width) != (gt.height, gt.width):
        raise ValueError(f"image {gt.image_id!r}: prediction is {pred.height}x{pred.width} but "
                         f"ground truth is {gt.height}x{gt.width}")
    rel_p, rel_g = pred.ranked_relations(), gt.relations
    if rel_p.shape[0] == 0 or rel_g.shape[0] == 0:
        return np.zeros((rel_p.shape[0], rel_g.shape[0]), dtype=bool)
    iou = rle_iou_matrix(pred.masks, gt.masks)
    label_match = (pred.labels[:, None] == gt.labels[None, :]) & (pred.labels[:, None] >= 0)
    if check_protocol(protocol) == STRICT:
        inst = assign_instances(iou, label_match, iou_threshold)
    else:
        inst = (iou >= iou_threshold) & label_match
    sub = inst[rel_p[:, 0][:, None], rel_g[:, 0][None, :]]
    obj = inst[rel_p[:, 1][:, None], rel_g[:, 1][None, :]]
    pred_eq = (rel_p[:, 2][:, None] == rel_g[:, 2][None, :]) & (rel_p[:, 2][:, None] >= 0)
    return sub & obj & pred_eq


@dataclass(frozen=True)
class PSGMetrics:
    """R@K and mR@K (fractions in [0, 1]) and per-predicate mean recalls at each K.

    Attributes:
        num_images: images scored (in R@K's mean).
        num_images_without_prediction: images with ground-truth relations whose prediction has
            no triplet (left out under ``reference``, scored 0 under ``strict``).
        num_images_without_relations: images without ground-truth relations (always left out).
        num_duplicate_gt_triplets: repeated ground-truth triplets removed.
    """

    recall: dict[int, float]
    mean_recall: dict[int, float]
    per_predicate_recall: dict[int, np.ndarray]
    protocol: str
    num_images: int
    num_images_without_prediction: int
    num_images_without_relations: int
    num_duplicate_gt_triplets: int

    def as_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        for k in self.recall:
            out[f"R@{k}"] = self.recall[k]
            out[f"mR@{k}"] = self.mean_recall[k]
        out["num_images"] = self.num_images
        out["num_images_without_prediction"] = self.num_images_without_prediction
        out["num_images_without_relations"] = self.num_images_without_relations
        out["num_duplicate_gt_triplets"] = self.num_duplicate_gt_triplets
        return out


def evaluate_psg(ground_truth: Sequence[SceneGraph], predictions: Sequence[SceneGraph], *,
                 protocol: str = REFERENCE, ks: Sequence[int] = PSG_KS,
                 num_predicates: int = PSG_NUM_PREDICATES, iou_threshold: float = 0.5,
                 per_image: list[dict] | None = None) -> PSGMetrics:
    """R@K / mR@K over images paired by ``image_id`` (every ground-truth image needs exactly one
    prediction; an empty prediction is a scene graph with no relations). ``per_image``, when
    given, receives one row per image with ground-truth relations (``scored`` says whether it
    counted)."""
    check_protocol(protocol)
    if not ground_truth:
        raise ValueError("PSG evaluation needs at least one ground-truth image")
    by_id = {}
    for p in predictions:
        if p.image_id in by_id:
            raise ValueError(f"two predictions for image {p.image_id!r}")
        by_id[p.image_id] = p
    gt_ids = [g.image_id for g in ground_truth]
    if len(set(gt_ids)) != len(gt_ids):
        raise ValueError("ground truth lists an image id twice")
    missing, unknown = set(gt_ids) - set(by_id), set(by_id) - set(gt_ids)
    if missing or unknown:
        raise ValueError(f"predictions and ground truth disagree: {len(missing)} images without a "
                         f"prediction, {len(unknown)} predictions for unknown images")
    ks = tuple(int(k) for k in ks)
    recalls: dict[int, list[float]] = {k: [] for k in ks}
    collect: dict[int, list[list[float]]] = {k: [[] for _ in range(num_predicates)] for k in ks}
    without_relations = without_prediction = duplicates = 0
    for gt in ground_truth:
        pred = by_id[gt.image_id]
        if gt.relations.shape[0] == 0:
            without_relations += 1
            continue
        gt_pred = gt.relations[:, 2]
        if gt_pred.min() < 0 or gt_pred.max() >= num_predicates:
            raise ValueError(f"image {gt.image_id!r}: ground-truth predicates must be in "
                             f"0..{num_predicates - 1}")
        relations = unique_relations(gt.relations)
        duplicates += gt.relations.shape[0] - relations.shape[0]
        row: dict[str, Any] = {"image_id": gt.image_id, "gt_relations": int(relations.shape[0]),
                               "pred_relations": int(pred.relations.shape[0]), "scored": True}
        if pred.relations.shape[0] == 0:
            without_prediction += 1
            if protocol == REFERENCE:  # OpenPSG skips the image
                row["scored"] = False
                if per_image is not None:
                    per_image.append(row)
                continue
        unique_gt = SceneGraph(gt.image_id, gt.height, gt.width, gt.labels, gt.masks, relations)
        hits = triplet_hits(unique_gt, pred, iou_threshold, protocol)
        gt_pred = relations[:, 2]
        counts = np.bincount(gt_pred, minlength=num_predicates)
        for k in ks:
            found = hits[:k].any(axis=0)
            recalls[k].append(float(found.mean()))
            found_per = np.bincount(gt_pred[found], minlength=num_predicates)
            for n in np.flatnonzero(counts):
                collect[k][n].append(found_per[n] / counts[n])
            row[f"R@{k}"] = float(found.mean())
        if per_image is not None:
            per_image.append(row)
    if without_relations == len(ground_truth):
        raise ValueError("no ground-truth image has a relation; R@K is undefined")
    scored = len(recalls[ks[0]])
    per_pred = {k: np.array([np.mean(c) if c else 0.0 for c in collect[k]]) for k in ks}
    nan = float("nan")  # every image left out: OpenPSG's mean over no image
    return PSGMetrics(recall={k: float(np.mean(recalls[k])) if scored else nan for k in ks},
                      mean_recall={k: float(per_pred[k].sum() / num_predicates) if scored else nan
                                   for k in ks},
                      per_predicate_recall=per_pred, protocol=protocol, num_images=scored,
                      num_images_without_prediction=without_prediction,
                      num_images_without_relations=without_relations,
                      num_duplicate_gt_triplets=duplicates)
