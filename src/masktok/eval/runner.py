"""Benchmark runners for referring tasks (RES, GRES, REC): files in, report out.

Each runner reads the ground truth (:mod:`masktok.eval.datasets`) and the prediction JSONL
(:mod:`masktok.eval.predictions`), scores every sample, and — when ``out_dir`` is given — writes
``metrics.json``, ``metrics.md``, ``per_sample.jsonl`` and overlays of the worst samples
(:mod:`masktok.eval.report`). The scene-level runners (GCG, PSG, open-vocabulary segmentation,
reconstruction, mask perception) are in :mod:`masktok.eval.scene_runner`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from masktok.eval.datasets import ReferringSample, load_referring
from masktok.eval.gres import OUTCOMES, GRESAccumulator
from masktok.masks.iou import decode_rles, union_rle
from masktok.eval.predictions import AnswerDecoder, MaskPrediction, check_coverage, index_records, record_masks
from masktok.eval.protocol import REFERENCE, check_protocol
from masktok.eval.rec import box_iou, mask_box, rec_metrics, xywh_to_xyxy
from masktok.eval.rec_answers import BOX_FORMATS, FLOAT32_FORMATS, answer_box
from masktok.eval.report import Overlay, write_report
from masktok.eval.res import RESAccumulator, res_sample_iou
from masktok.masks.arrays import is_tensor

if TYPE_CHECKING:
    import torch

BATCH = 512


@dataclass
class RunResult:
    """What a runner computed (and where it wrote it, when it did)."""

    task: str
    metrics: dict[str, Any]
    per_sample: list[dict]
    notes: list[str] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    headline: str | None = None


def load_tokenizer(path: str | Path, kind: str | None = None, device: str = "cpu") -> Any:
    """A mask tokenizer from ``path`` (a file, a folder or a hub id) through ``Class.from_pretrained``.

    ``kind`` is a registered family (``"himtok"``, ``"samtok"``, see
    :func:`masktok.tokenizers.register_tokenizer_family`) or any ``"package.module:Class"``
    following the ``MaskTokenizer`` protocol; ``None`` lets the registry tell from the files.
    """
    from masktok.tokenizers import load_tokenizer as open_tokenizer, tokenizer_class

    if kind is None:
        return open_tokenizer(path, device=device)
    if ":" not in kind:
        return tokenizer_class(kind).from_pretrained(path, device=device)
    module_name, _, class_name = kind.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import tokenizer class {kind}: {exc}") from None
    return cls.from_pretrained(path, device=device)


def load_rgb(image_root: Path | None, file_name: str | None, size: tuple[int, int]) -> np.ndarray | None:
    """(H, W, 3) uint8 image for overlays, or ``None`` (no folder, no file, other size)."""
    if image_root is None or not file_name:
        return None
    path = Path(image_root) / file_name
    if not path.is_file():
        return None
    with Image.open(path) as img:
        arr = np.asarray(img.convert("RGB"))
    return arr if arr.shape[:2] == tuple(size) else None


def finish(task: str, metrics: dict[str, Any], rows: list[dict], notes: list[str],
           out_dir: str | Path | None, overlays: Sequence[Overlay] = (),
           inputs: dict[str, Any] | None = None, headline: str | None = None,
           extras: dict[str, Sequence[dict]] | None = None) -> RunResult:
    """Wrap up a run: write the report when ``out_dir`` is given (``extras``: more JSONL files
    by name, e.g. the answers that could not be parsed; ``headline``: a warning the report and
    the command line show first)."""
    result = RunResult(task=task, metrics=metrics, per_sample=rows, notes=notes, headline=headline)
    if out_dir is not None:
        result.paths = write_report(out_dir, task, metrics, rows, overlays, notes, inputs,
                                    headline=headline, extras=extras)
    return result


def _prediction_notes(preds: Sequence[MaskPrediction]) -> list[str]:
    notes = []
    missing = sum(p.missing for p in preds)
    if missing:
        notes.append(f"{missing} samples had no prediction and were scored as empty answers")
    undecoded = sum(p.undecoded for p in preds)
    if undecoded:
        notes.append(f"{undecoded} mask spans could not be decoded (see per_sample statuses)")
    return notes


def worst_indices(scores: np.ndarray, k: int, tiebreak: np.ndarray | None = None) -> list[int]:
    """Indices of the ``k`` lowest scores; among equal scores the larger ``tiebreak`` (e.g. the
    union, i.e. more pixels wrong) first, then the earlier sample."""
    if k <= 0:
        return []
    secondary = np.zeros(len(scores)) if tiebreak is None else -np.asarray(tiebreak, dtype=np.float64)
    return [int(i) for i in np.lexsort((np.arange(len(scores)), secondary, scores))[:k]]


def run_referring(task: str, predictions: str | Path, annotations: str | Path,
                  out_dir: str | Path | None = None, *, protocol: str = REFERENCE,
                  instances: str | Path | None = None, split: str | None = None, tokenizer: Any = None,
                  image_root: str | Path | None = None, lenient: bool = False,
                  allow_missing: bool = False, worst: int = 5,
                  device: str | torch.device | None = None) -> RunResult:
    """RES (``task="res"``) or GRES (``task="gres"``) over a referring dataset.

    A sample's prediction is the union of its masks. GRES takes "no target" from the record's
    ``no_target`` flag, else from an answer without any mask (no mask words / no RLE).
    ``protocol``: RES ``"reference"`` is LISA's arithmetic, ``"strict"`` exact ratios (GRES: the
    same numbers either way). ``device`` computes I/U with torch there (e.g. ``"cuda"``).
    """
    if task not in ("res", "gres"):
        raise ValueError(f"task must be 'res' or 'gres', got {task!r}")
    check_protocol(protocol)
    samples = load_referring(annotations, instances, split)
    records = index_records(predictions, "id")
    check_coverage(set(records), [s.sample_id for s in samples], "samples", allow_missing)
    decoder = AnswerDecoder(tokenizer, Path(image_root) if image_root else None, lenient)
    acc = (GRESAccumulator(device=device) if task == "gres"
           else RESAccumulator(device=device, protocol=protocol))
    preds: list[MaskPrediction] = []
    pred_u: list[dict] = []
    gt_u: list[dict] = []
    flags: list[bool] = []
    for s in samples:
        size = (s.height, s.width)
        p = record_masks(records.get(s.sample_id), size, decoder, s.file_name, f"prediction id={s.sample_id}")
        preds.append(p)
        pred_u.append(union_rle(p.masks, size))
        gt_u.append(union_rle(s.masks, size))
        flags.append(p.no_target if p.no_target is not None else not p.masks and not p.num_spans)
    for i in range(0, len(samples), BATCH):
        if task == "gres":
            acc.update(pred_u[i:i + BATCH], gt_u[i:i + BATCH], pred_no_target=flags[i:i + BATCH],
                       gt_no_target=[s.no_target for s in samples[i:i + BATCH]])
        else:
            acc.update(pred_u[i:i + BATCH], gt_u[i:i + BATCH])
    result = acc.compute()
    rows = _referring_rows(task, samples, preds, acc, flags, protocol)
    scores = np.array([r["IoU"] for r in rows])
    unions = np.array([r["U"] for r in rows])
    overlays = [_overlay(samples[i], pred_u[i], gt_u[i], scores[i], image_root)
                for i in worst_indices(scores, worst, unions)]
    return finish(task, {"protocol": protocol, **result.as_dict()}, rows, _prediction_notes(preds),
                  out_dir, overlays, {"predictions": predictions, "annotations": annotations,
                                      "instances": instances, "split": split, "protocol": protocol})


def _referring_rows(task: str, samples: list[ReferringSample], preds: list[MaskPrediction],
                    acc: Any, flags: list[bool], protocol: str) -> list[dict]:
    rows = []
    if task == "gres":
        s = acc.samples()
        inter, union, iou = s.inter, s.union, s.iou
        outcome = [OUTCOMES[k] for k in s.outcome]
    else:
        inter, union = (np.asarray(x.cpu() if is_tensor(x) else x) for x in acc.counts())
        iou = res_sample_iou(inter, union, protocol)
        outcome = None
    for k, (smp, p) in enumerate(zip(samples, preds)):
        row = {"id": smp.sample_id, "image_id": smp.image_id, "sentence": smp.sentence,
               "I": int(inter[k]), "U": int(union[k]), "IoU": float(iou[k]), "num_masks": len(p.masks)}
        if outcome is not None:
            row.update({"outcome": outcome[k], "gt_no_target": smp.no_target or not smp.masks,
                        "pred_no_target": bool(flags[k])})
        if p.num_spans is not None:
            row["num_spans"] = p.num_spans
        if p.undecoded:
            row.update({"undecoded_spans": p.undecoded, "span_statuses": p.statuses})
        if p.missing:
            row["missing"] = True
        rows.append(row)
    return rows


def _overlay(sample: ReferringSample, pred: dict, gt: dict, score: float,
             image_root: str | Path | None) -> Overlay:
    size = (sample.height, sample.width)
    masks = decode_rles([gt, pred], size)
    return Overlay(name=f"{sample.sample_id}", gt=masks[0], pred=masks[1], score=float(score),
                   image=load_rgb(Path(image_root) if image_root else None, sample.file_name, size))


def _box_mask(box: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    out = np.zeros(size, dtype=bool)
    if box is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        out[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = True
    return out


def run_rec(predictions: str | Path, annotations: str | Path, out_dir: str | Path | None = None, *,
            box_format: str = "internvl", protocol: str = REFERENCE,
            input_size: tuple[int, int] | None = None, box_from_masks: bool = False,
            instances: str | Path | None = None, split: str | None = None, tokenizer: Any = None,
            image_root: str | Path | None = None, lenient: bool = False, allow_missing: bool = False,
            worst: int = 5) -> RunResult:
    """REC accuracy. A record gives ``"box"`` (xyxy pixels), ``"masks"`` (scored by their tight
    box) or ``"answer"`` (read as ``box_format`` under ``protocol``, see
    :mod:`masktok.eval.rec_answers`; with ``box_from_masks`` the answer's mask words are decoded
    and their tight box is used instead). ``input_size`` (or a record's ``"input_size": [w, h]``)
    is the frame of ``qwen_abs`` boxes. Answers without a readable box are listed in the
    report's ``unparsed.jsonl``."""
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
    check_protocol(protocol)
    float32 = protocol == REFERENCE and box_format in FLOAT32_FORMATS
    samples = load_referring(annotations, instances, split)
    records = index_records(predictions, "id")
    check_coverage(set(records), [s.sample_id for s in samples], "samples", allow_missing)
    decoder = AnswerDecoder(tokenizer, Path(image_root) if image_root else None, lenient)
    pred_boxes, gt_boxes, rows, unparsed = [], [], [], []
    for s in samples:
        size = (s.height, s.width)
        if s.boxes:
            if len(s.boxes) != 1:
                raise ValueError(f"sample {s.sample_id} refers to {len(s.boxes)} objects; REC needs one")
            gt = xywh_to_xyxy(s.boxes[0])
        elif s.masks:
            gt = mask_box(union_rle(s.masks, size)).box
        else:
            raise ValueError(f"sample {s.sample_id} has no ground-truth box or mask")
        rec = records.get(s.sample_id)
        where = f"prediction id={s.sample_id}"
        if rec is None:
            parsed, status = None, "missing"
        elif "box" in rec:
            box = np.asarray(rec["box"], dtype=np.float64)
            if box.shape != (4,) or not np.isfinite(box).all():
                raise ValueError(f"{where}: 'box' must be [x1, y1, x2, y2] pixels")
            ok = box[2] > box[0] and box[3] > box[1]
            parsed, status = (box, "ok") if ok else (None, "invalid_box")
        elif "masks" in rec or ("answer" in rec and box_from_masks):
            p = record_masks(rec, size, decoder, s.file_name, where)
            mb = mask_box(union_rle(p.masks, size))
            parsed, status = mb.box, mb.status
        elif "answer" in rec:
            frame = tuple(rec["input_size"]) if "input_size" in rec else input_size
            pb = answer_box(rec["answer"], box_format, s.width, s.height, frame, protocol)
            parsed, status = pb.box, pb.status
            if pb.status != "ok":
                unparsed.append({"id": s.sample_id, "status": pb.status, "answer": rec["answer"]})
        else:
            raise ValueError(f"{where}: needs 'box', 'masks' or 'answer'")
        pred_boxes.append(parsed if parsed is not None else np.full(4, np.nan))
        gt_boxes.append(gt)
        rows.append({"id": s.sample_id, "image_id": s.image_id, "sentence": s.sentence, "status": status,
                     "pred_box": None if parsed is None else parsed.tolist(), "gt_box": gt.tolist()})
    pred_arr, gt_arr = np.stack(pred_boxes), np.stack(gt_boxes)
    metrics = rec_metrics(pred_arr, gt_arr, float32=float32)
    ious = box_iou(pred_arr, gt_arr, float32=float32)
    for row, v in zip(rows, ious):
        row["IoU"] = float(v)
    overlays = []
    for i in worst_indices(ious, worst):
        s = samples[i]
        size = (s.height, s.width)
        pred = None if np.isnan(pred_arr[i]).any() else pred_arr[i]
        overlays.append(Overlay(name=s.sample_id, gt=_box_mask(gt_arr[i], size), pred=_box_mask(pred, size),
                                score=float(ious[i]),
                                image=load_rgb(Path(image_root) if image_root else None, s.file_name, size)))
    out = {"protocol": protocol, **metrics.as_dict(), "num_unparsed_answers": len(unparsed)}
    notes = []
    if metrics.num_without_box:
        notes.append(f"{metrics.num_without_box} samples gave no usable box (scored IoU 0)")
    if unparsed:
        by_status = {st: sum(u["status"] == st for u in unparsed) for st in sorted({u["status"] for u in unparsed})}
        notes.append(f"{len(unparsed)} answers could not be read as a {box_format} box "
                     f"({', '.join(f'{n} {st}' for st, n in by_status.items())}), e.g. ids "
                     f"{[u['id'] for u in unparsed[:3]]}; all of them are in unparsed.jsonl")
    return finish("rec", out, rows, notes, out_dir, overlays,
                  {"predictions": predictions, "annotations": annotations, "box_format": box_format,
                   "protocol": protocol}, extras={"unparsed": unparsed})
