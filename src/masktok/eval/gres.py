"""Generalised referring expression segmentation (GRES, gRefCOCO), exactly as the official ReLA
evaluator (``gres_model/evaluation/refer_evaluation.py``) scores it.

A sample refers to zero, one or several objects. Its ground truth is the union of the referred
instances (empty for a *no-target* sample); the prediction is the union of the predicted masks
plus a no-target decision. The decision comes from an explicit flag when the prediction has one,
otherwise from the answer: no mask at all (e.g. SAMTok's "No target.") means *no target*.

Per sample, with I, U the pixel counts of prediction vs ground truth:

========================  =================  ======  ==============  ================
ground truth / predicted  outcome            I       U               sample IoU
========================  =================  ======  ==============  ================
no target / no target     TP                 0       0               1
no target / target        FN                 0       U (= |pred|)    0
target / no target        FP                 0       U (= |GT| when  0
                                                     no mask given)
target / target           TN                 I       U               I / U
========================  =================  ======  ==============  ================

* ``N-acc = TP / (TP + FN)``, ``T-acc = TN / (TN + FP)``; both are 0.0 when the set has no
  no-target sample (the official evaluator's convention).
* ``cIoU = ΣI / ΣU`` and ``gIoU`` = mean sample IoU, over all samples.
* ``Pr@t`` (t = 0.7, 0.8, 0.9) = fraction of *targeted* samples with IoU ≥ t.
* Ratios whose denominator is 0 where the official evaluator would divide by zero (cIoU with
  ΣU = 0, Pr@t or T-acc with no targeted sample) are ``nan``.

Both protocols (:mod:`masktok.eval.protocol`) score GRES alike: the official evaluator divides
exactly and has no edge case masktok would resolve differently.

An FP sample keeps the predicted mask in U exactly as ReLA does: when an explicit no-target flag
comes with masks, U = |pred ∪ GT|. A ground truth flagged no-target must be empty (else
``ValueError``). Values are fractions in [0, 1]; the paper tables print them ×100.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from masktok.masks.arrays import is_tensor
from masktok.masks.iou import intersection_union, mask_areas
from masktok.eval.res import threshold_name

if TYPE_CHECKING:
    import torch

GRES_THRESHOLDS: tuple[float, ...] = (0.7, 0.8, 0.9)
OUTCOMES = ("TP", "FN", "FP", "TN")


@dataclass(frozen=True)
class GRESMetrics:
    """gRefCOCO scores (fractions in [0, 1]) and the confusion counts behind N-acc / T-acc."""

    ciou: float
    giou: float
    n_acc: float
    t_acc: float
    precision: dict[float, float]
    counts: dict[str, int]
    num_samples: int

    def as_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"cIoU": self.ciou, "gIoU": self.giou,
                                       "N-acc": self.n_acc, "T-acc": self.t_acc}
        out.update({threshold_name(t): v for t, v in self.precision.items()})
        out.update(self.counts)
        out["num_samples"] = self.num_samples
        return out


@dataclass(frozen=True)
class GRESSampleScores:
    """Per-sample values after ReLA's rules: I (N,), U (N,), IoU (N,), outcome codes (N,)
    (0 TP, 1 FN, 2 FP, 3 TN — see :data:`OUTCOMES`)."""

    inter: np.ndarray
    union: np.ndarray
    iou: np.ndarray
    outcome: np.ndarray


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def gres_sample_scores(inter: Any, union: Any, gt_no_target: Any, pred_no_target: Any) -> GRESSampleScores:
    """Apply ReLA's per-sample rules to raw counts.

    Args:
        inter, union: (N,) I and U of predicted mask vs ground truth (numpy or torch).
        gt_no_target: (N,) bool, the ground truth refers to nothing (its mask is empty).
        pred_no_target: (N,) bool, the model answered "no target".
    """
    inter = np.asarray(inter.cpu() if is_tensor(inter) else inter, dtype=np.int64)
    union = np.asarray(union.cpu() if is_tensor(union) else union, dtype=np.int64)
    gt_nt = np.asarray(gt_no_target, dtype=bool)
    pred_nt = np.asarray(pred_no_target, dtype=bool)
    shapes = {inter.shape, union.shape, gt_nt.shape, pred_nt.shape}
    if len(shapes) != 1 or inter.ndim != 1:
        raise ValueError(f"GRES inputs must be 1-D of one length, got shapes {sorted(shapes)}")
    if bool((inter > union).any()) or bool((inter < 0).any()):
        raise ValueError("every intersection must satisfy 0 <= I <= U")
    if bool((gt_nt & (inter > 0)).any()):
        bad = int(np.flatnonzero(gt_nt & (inter > 0))[0])
        raise ValueError(f"sample {bad}: ground truth is marked no-target but overlaps the prediction "
                         "(a no-target ground truth must be empty)")
    tp, fn = gt_nt & pred_nt, gt_nt & ~pred_nt
    fp = ~gt_nt & pred_nt
    outcome = np.select([tp, fn, fp], [0, 1, 2], default=3).astype(np.int8)
    inter_eff = np.where(gt_nt | pred_nt, 0, inter)
    union_eff = np.where(tp, 0, union)
    iou = np.zeros(inter.shape, dtype=np.float64)
    np.divide(inter_eff, union_eff, out=iou, where=(union_eff > 0) & ~gt_nt)
    iou[tp] = 1.0
    return GRESSampleScores(inter=inter_eff, union=union_eff, iou=iou, outcome=outcome)


def gres_metrics(inter: Any, union: Any, gt_no_target: Any, pred_no_target: Any,
                 thresholds: tuple[float, ...] = GRES_THRESHOLDS) -> GRESMetrics:
    """gRefCOCO scores from raw per-sample counts (see the module docstring for the rules).

    Args:
        inter, union: (N,) I and U of the predicted mask vs the ground truth.
        gt_no_target, pred_no_target: (N,) bool.
    """
    s = gres_sample_scores(inter, union, gt_no_target, pred_no_target)
    n = int(s.iou.shape[0])
    if n == 0:
        raise ValueError("GRES metrics need at least one sample")
    counts = {name: int((s.outcome == k).sum()) for k, name in enumerate(OUTCOMES)}
    n_no_target = counts["TP"] + counts["FN"]
    n_targeted = counts["TN"] + counts["FP"]
    if n_no_target > 0:
        n_acc = counts["TP"] / n_no_target
        t_acc = _ratio(counts["TN"], n_targeted)
    else:
        n_acc = t_acc = 0.0
    targeted_iou = s.iou[s.outcome >= 2]
    precision = {float(t): _ratio(float((targeted_iou >= t).sum()), n_targeted) for t in thresholds}
    return GRESMetrics(ciou=_ratio(float(s.inter.sum()), float(s.union.sum())),
                       giou=float(s.iou.mean()), n_acc=n_acc, t_acc=t_acc, precision=precision,
                       counts=counts, num_samples=n)


@dataclass
class GRESAccumulator:
    """Collects GRES samples batch by batch; ``device`` computes I/U with torch there (the counts
    stay on the device until :meth:`compute`).

    Example::

        acc = GRESAccumulator()
        acc.update(pred_masks, gt_masks, pred_no_target=[False, True])
        acc.compute().as_dict()   # {"cIoU", "gIoU", "N-acc", "T-acc", "Pr@0.7", ...}
    """

    thresholds: tuple[float, ...] = GRES_THRESHOLDS
    device: str | torch.device | None = None
    _inter: list[Any] = field(default_factory=list, repr=False)
    _union: list[Any] = field(default_factory=list, repr=False)
    _gt_nt: list[np.ndarray] = field(default_factory=list, repr=False)
    _pred_nt: list[np.ndarray] = field(default_factory=list, repr=False)

    def update(self, pred: Any, gt: Any, pred_no_target: Any = None,
               gt_no_target: Any = None) -> tuple[Any, Any]:
        """Add N samples.

        Args:
            pred, gt: N merged masks each ((N, H, W) bool or N COCO RLEs).
            pred_no_target: (N,) bool flags; ``None`` → a sample is no-target iff its predicted
                mask is empty.
            gt_no_target: optional (N,) bool, checked against the ground truth: a sample is
                no-target iff its ground-truth mask is empty, and a flag that says no-target for
                a non-empty mask is a ``ValueError``.
        Returns:
            this batch's raw (I, U).
        """
        inter, union = intersection_union(pred, gt, device=self.device)
        area_pred, area_gt = mask_areas(pred), mask_areas(gt)
        gt_empty = area_gt == 0
        gt_nt = gt_empty  # an empty ground truth refers to nothing
        if gt_no_target is not None:
            flags = np.asarray(gt_no_target, dtype=bool).reshape(-1)
            if flags.shape != gt_empty.shape:
                raise ValueError(f"gt_no_target has {flags.size} flags for {gt_empty.size} samples")
            if bool((flags & ~gt_empty).any()):
                bad = int(np.flatnonzero(flags & ~gt_empty)[0])
                raise ValueError(f"sample {bad} of this batch: ground truth is flagged no-target "
                                 "but its mask is not empty")
        if pred_no_target is None:
            pred_nt = area_pred == 0
        else:
            pred_nt = np.asarray(pred_no_target, dtype=bool).reshape(-1)
            if pred_nt.shape != gt_empty.shape:
                raise ValueError(f"pred_no_target has {pred_nt.size} flags for {gt_empty.size} samples")
        self._inter.append(inter)
        self._union.append(union)
        self._gt_nt.append(gt_nt)
        self._pred_nt.append(pred_nt)
        return inter, union

    def samples(self) -> GRESSampleScores:
        """Per-sample scores of everything added so far."""
        inter, union = self._cat(self._inter), self._cat(self._union)
        return gres_sample_scores(inter, union, np.concatenate(self._gt_nt or [np.zeros(0, bool)]),
                                  np.concatenate(self._pred_nt or [np.zeros(0, bool)]))

    @staticmethod
    def _cat(chunks: list[Any]) -> np.ndarray:
        if not chunks:
            return np.zeros(0, dtype=np.int64)
        if is_tensor(chunks[0]):
            import torch

            return torch.cat(chunks).cpu().numpy()
        return np.concatenate(chunks)

    def compute(self) -> GRESMetrics:
        inter, union = self._cat(self._inter), self._cat(self._union)
        return gres_metrics(inter, union, np.concatenate(self._gt_nt or [np.zeros(0, bool)]),
                            np.concatenate(self._pred_nt or [np.zeros(0, bool)]), self.thresholds)
