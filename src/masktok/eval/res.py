"""Referring expression segmentation (RES): cIoU, gIoU and Pr@X, as LISA and GLaMM compute them.

One sample = one referring expression: one ground-truth mask (the union of the referred
instances) and one predicted mask (the union of every mask the model answered with), both at the
original image resolution.

Definitions (values are fractions in [0, 1]; papers print them ×100), per protocol
(:mod:`masktok.eval.protocol`):

* ``reference`` — LISA's ``validate`` (``train_ds.py``), whose numbers GLaMM and SAMTok report:
  sample IoU = ``I / (U + 1e-5)``, plus 1.0 when U = 0 (prediction and ground truth both
  empty); ``cIoU = ΣI / (ΣU + 1e-10)``; ``gIoU`` = mean sample IoU.
* ``strict`` — exact ratios: sample IoU = ``I / U`` (1.0 when U = 0); ``cIoU = ΣI / ΣU`` (0.0
  when ΣU = 0). The two differ below ~1e-5 relative.
* ``Pr@t`` = fraction of samples with sample IoU ≥ t, t in 0.5, 0.6, 0.7, 0.8, 0.9.

Edge cases: empty prediction vs non-empty ground truth → IoU 0 (I = 0, U = |GT|); non-empty
prediction vs empty ground truth → IoU 0; both empty → IoU 1; duplicate predicted masks change
nothing (the union is taken); masks of different sizes → ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from masktok.eval.protocol import REFERENCE, check_protocol
from masktok.masks.arrays import is_tensor
from masktok.masks.iou import intersection_union

if TYPE_CHECKING:
    import torch

RES_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
LISA_SAMPLE_EPS = 1e-5  # LISA: I / (U + 1e-5) per sample
LISA_TOTAL_EPS = 1e-10  # LISA: ΣI / (ΣU + 1e-10)


def threshold_name(t: float) -> str:
    """0.7 → ``"Pr@0.7"`` (the column name used in reports)."""
    return f"Pr@{t:.1f}" if round(t, 1) == t else f"Pr@{t:g}"


@dataclass(frozen=True)
class RESMetrics:
    """RES scores over a set of samples (fractions in [0, 1])."""

    ciou: float
    giou: float
    precision: dict[float, float]
    num_samples: int

    def as_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"cIoU": self.ciou, "gIoU": self.giou}
        out.update({threshold_name(t): v for t, v in self.precision.items()})
        out["num_samples"] = self.num_samples
        return out


def res_sample_iou(inter: Any, union: Any, protocol: str = REFERENCE) -> Any:
    """Per-sample IoU with the RES rule of ``protocol`` (1.0 when U = 0). numpy in → numpy out,
    torch → torch."""
    eps = LISA_SAMPLE_EPS if check_protocol(protocol) == REFERENCE else 0.0
    if is_tensor(inter):
        import torch

        inter_f, union_f = inter.double(), union.double()
        if eps:
            return inter_f / (union_f + eps) + (union_f == 0).double()
        return torch.where(union_f > 0, inter_f / union_f.clamp(min=1), torch.ones_like(inter_f))
    inter_f = np.asarray(inter, dtype=np.float64)
    union_f = np.asarray(union, dtype=np.float64)
    if eps:
        return inter_f / (union_f + eps) + (union_f == 0)
    return np.divide(inter_f, union_f, out=np.ones_like(inter_f), where=union_f > 0)


def res_metrics(intersections: Any, unions: Any,
                thresholds: tuple[float, ...] = RES_THRESHOLDS, protocol: str = REFERENCE) -> RESMetrics:
    """RES scores from per-sample counts.

    Args:
        intersections, unions: (N,) pixel counts per sample (numpy or torch, any device).
        thresholds: IoU thresholds for Pr@t.
        protocol: ``"reference"`` (LISA's epsilons) or ``"strict"`` (exact ratios).
    Returns:
        :class:`RESMetrics`. ``ValueError`` when N = 0 or the arrays disagree.
    """
    use_torch = is_tensor(intersections)
    inter = intersections if use_torch else np.asarray(intersections, dtype=np.int64)
    union = unions if use_torch else np.asarray(unions, dtype=np.int64)
    if tuple(inter.shape) != tuple(union.shape) or inter.ndim != 1:
        raise ValueError(f"intersections {tuple(inter.shape)} and unions {tuple(union.shape)} must "
                         "be 1-D arrays of one length")
    n = int(inter.shape[0])
    if n == 0:
        raise ValueError("RES metrics need at least one sample")
    if bool((inter > union).any()) or bool((inter < 0).any()):
        raise ValueError("every intersection must satisfy 0 <= I <= U")
    iou = res_sample_iou(inter, union, protocol)
    total_i, total_u = float(inter.sum()), float(union.sum())
    if protocol == REFERENCE:
        ciou = total_i / (total_u + LISA_TOTAL_EPS)
    else:
        ciou = total_i / total_u if total_u > 0 else 0.0
    precision = {float(t): float((iou >= t).double().mean()) if use_torch
                 else float(np.mean(iou >= t)) for t in thresholds}
    return RESMetrics(ciou=ciou, giou=float(iou.mean()), precision=precision, num_samples=n)


@dataclass
class RESAccumulator:
    """Collects per-sample I and U batch by batch; :meth:`compute` gives :class:`RESMetrics`.

    ``device`` (e.g. ``"cuda"``) makes every update compute on that device with torch and keeps
    the counts there until :meth:`compute`; default: numpy / RLE space on the CPU. ``protocol``:
    ``"reference"`` (LISA) or ``"strict"`` (see the module docstring).

    Example::

        acc = RESAccumulator()
        acc.update(pred_masks, gt_masks)   # (N, H, W) bool each, or lists of COCO RLE
        acc.compute().as_dict()            # {"cIoU": ..., "gIoU": ..., "Pr@0.5": ...}
    """

    thresholds: tuple[float, ...] = RES_THRESHOLDS
    device: str | torch.device | None = None
    protocol: str = REFERENCE
    _inter: list[Any] = field(default_factory=list, repr=False)
    _union: list[Any] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        check_protocol(self.protocol)

    def update(self, pred: Any, gt: Any) -> tuple[Any, Any]:
        """Add N samples. pred, gt: N merged masks each, (N, H, W) bool or N COCO RLEs.

        Returns this batch's (I, U), each (N,).
        """
        inter, union = intersection_union(pred, gt, device=self.device)
        self.add_counts(inter, union)
        return inter, union

    def add_counts(self, inter: Any, union: Any) -> None:
        """Add precomputed per-sample counts (N,) each."""
        if is_tensor(inter) != is_tensor(union):
            raise ValueError("intersections and unions must both be numpy or both torch")
        if self._inter and is_tensor(inter) != is_tensor(self._inter[0]):
            raise ValueError("cannot mix torch and numpy counts in one accumulator")
        self._inter.append(inter)
        self._union.append(union)

    def counts(self) -> tuple[Any, Any]:
        """All per-sample counts so far: I (N,), U (N,)."""
        if not self._inter:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if is_tensor(self._inter[0]):
            import torch

            return torch.cat(self._inter), torch.cat(self._union)
        return np.concatenate(self._inter), np.concatenate(self._union)

    def compute(self) -> RESMetrics:
        inter, union = self.counts()
        return res_metrics(inter, union, self.thresholds, self.protocol)
