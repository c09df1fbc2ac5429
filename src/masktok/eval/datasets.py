"""Readers for the benchmarks' ground-truth files, into the plain records the metrics take.

* RefCOCO / RefCOCO+ / RefCOCOg: ``refs(unc).p`` / ``refs(umd).p`` / ``refs(google).p`` (the
  refer API's pickle, read with a loader that refuses anything but plain containers) or the same
  list as JSON, plus the COCO ``instances.json`` → one :class:`ReferringSample` per sentence.
* gRefCOCO: ``grefs(unc).json`` (``ann_id`` lists, ``no_target``) + ``instances.json``.
* COCO instances: one sample per non-crowd instance, the category name as the expression.
* masktok's referring JSONL (see ``docs/eval.md``).
* GCG: GLaMM's ``{split}_gcg_coco_mask_gt.json`` + ``{split}_gcg_coco_caption_gt.json`` pair, or
  masktok's GCG JSONL.
* Mask perception: multiple-choice JSONL.

OpenPSG and semantic-segmentation readers live in :mod:`masktok.eval.scene_datasets`.
Every malformed record is a ``ValueError`` naming the file and the record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masktok.annotations.records import read_jsonl
from masktok.annotations import CocoInstancesIndex
from masktok.annotations.refcoco import load_refs, parse_ref_sentences
from masktok.eval.gcg import GCGSample
from masktok.masks.iou import coco_rle, coco_rle_groups


@dataclass
class ReferringSample:
    """One referring expression and what it refers to.

    Attributes:
        sample_id: unique id (the sentence id for RefCOCO-family files), as a string.
        masks: one COCO RLE per referred instance; empty for a no-target expression. Stored
            validated in pycocotools' form (``bytes`` counts); ``masktok.eval.report.json_ready``
            turns records into JSON.
        boxes: one COCO ``[x, y, w, h]`` per referred instance.
    """

    sample_id: str
    image_id: Any
    file_name: str | None
    height: int
    width: int
    sentence: str
    masks: list[dict]
    boxes: list[list[float]] = field(default_factory=list)
    no_target: bool = False

    def __post_init__(self) -> None:
        self.masks = [coco_rle(m, f"sample {self.sample_id} mask {i}") for i, m in enumerate(self.masks)]
        for i, m in enumerate(self.masks):
            if tuple(m["size"]) != (self.height, self.width):
                raise ValueError(f"sample {self.sample_id}: mask {i} is {tuple(m['size'])} but the "
                                 f"image is {(self.height, self.width)}")
        if self.no_target and self.masks:
            raise ValueError(f"sample {self.sample_id}: marked no-target but has {len(self.masks)} masks")


def _ref_samples(path: Path, refs: list[dict], instances_path: str | Path, split: str | None,
                 generalized: bool) -> list[ReferringSample]:
    coco = CocoInstancesIndex(instances_path)
    image_of = {ann_id: rec["image_id"] for ann_id, rec in coco.records.items()}
    out: list[ReferringSample] = []
    for sent in parse_ref_sentences(refs, path, image_of, coco.images, split, generalized):
        img = coco.images[sent.image_id]
        masks, boxes = [], []
        for ann_id in sent.ann_ids:
            bbox = coco.records[ann_id].get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise ValueError(f"{path}: sentence {sent.key}: ann_id {ann_id} has no COCO bbox")
            masks.append(coco.instance(ann_id).mask_rle)
            boxes.append([float(v) for v in bbox])
        out.append(ReferringSample(
            sample_id=sent.key, image_id=img["id"], file_name=img.get("file_name"),
            height=int(img["height"]), width=int(img["width"]), sentence=sent.sentence, masks=masks,
            boxes=boxes, no_target=sent.no_target))
    ids = [s.sample_id for s in out]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: sentence ids are not unique")
    return out


def read_refcoco(refs_path: str | Path, instances_path: str | Path,
                 split: str | None = None) -> list[ReferringSample]:
    """RefCOCO/+/g refs + COCO instances → one sample per sentence (one instance each); the
    ground-truth box is the instance's COCO ``bbox``."""
    return _ref_samples(Path(refs_path), load_refs(refs_path), instances_path, split, generalized=False)


def read_grefcoco(grefs_path: str | Path, instances_path: str | Path,
                  split: str | None = None) -> list[ReferringSample]:
    """gRefCOCO ``grefs(unc).json`` + instances → one sample per sentence (0..n instances)."""
    return _ref_samples(Path(grefs_path), load_refs(grefs_path), instances_path, split, generalized=True)


def read_coco_referring(instances_path: str | Path, include_crowd: bool = False) -> list[ReferringSample]:
    """COCO instances → one sample per instance (id = annotation id, expression = category name,
    box = the annotation's ``bbox``), in file order; crowd regions only on request."""
    coco = CocoInstancesIndex(instances_path)
    out = []
    for ann_id, ann in coco.records.items():
        if ann.get("iscrowd", 0) and not include_crowd:
            continue
        img = coco.images[ann["image_id"]]
        inst = coco.instance(ann_id)
        out.append(ReferringSample(
            sample_id=str(ann_id), image_id=img["id"], file_name=img.get("file_name"),
            height=int(img["height"]), width=int(img["width"]),
            sentence=inst.category_name or "", masks=[inst.mask_rle],
            boxes=[[float(v) for v in ann["bbox"]]] if "bbox" in ann else []))
    return out


def _require(rec: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in rec]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(map(repr, missing))}")


def read_referring_jsonl(path: str | Path) -> list[ReferringSample]:
    """masktok's referring JSONL: ``{"id", "height", "width", "masks": [RLE...], "sentence"?,
    "image_id"?, "file_name"?, "boxes"?: [[x, y, w, h]...], "no_target"?}`` per line."""
    records = read_jsonl(path)
    for n, rec in enumerate(records, 1):
        _require(rec, ("id", "height", "width", "masks"), f"{path}: record {n}")
        if not isinstance(rec["masks"], list):
            raise ValueError(f"{path}: record {n}: 'masks' must be a list of COCO RLEs")
    # every mask of the file is validated in one vectorised pass
    masks = coco_rle_groups([rec["masks"] for rec in records],
                            lambda g, i: f"{path}: record {g + 1}: sample {records[g]['id']} mask {i}")
    out = []
    for n, (rec, rec_masks) in enumerate(zip(records, masks), 1):
        try:
            out.append(ReferringSample(
                sample_id=str(rec["id"]), image_id=rec.get("image_id"), file_name=rec.get("file_name"),
                height=int(rec["height"]), width=int(rec["width"]), sentence=rec.get("sentence", ""),
                masks=rec_masks, boxes=rec.get("boxes", []), no_target=bool(rec.get("no_target", False))))
        except ValueError as exc:
            raise ValueError(f"{path}: record {n}: {exc}") from None
    return out


def load_referring(annotations: str | Path, instances: str | Path | None = None,
                   split: str | None = None) -> list[ReferringSample]:
    """Pick the reader from the file: ``.jsonl`` → masktok JSONL; a refs pickle / refs JSON list →
    RefCOCO-family or gRefCOCO (``instances`` required); a COCO instances JSON → one sample per
    instance."""
    path = Path(annotations)
    if path.suffix == ".jsonl":
        return read_referring_jsonl(path)
    if path.suffix in (".p", ".pkl", ".pickle"):
        if instances is None:
            raise ValueError(f"{path} is a refs file: pass the COCO instances JSON too")
        return read_refcoco(path, instances, split)
    with path.open() as f:
        data = json.load(f)
    if isinstance(data, dict) and "annotations" in data:
        return read_coco_referring(path)
    if isinstance(data, list):
        if instances is None:
            raise ValueError(f"{path} is a refs file: pass the COCO instances JSON too")
        generalized = any(isinstance(r.get("ann_id"), list) or "no_target" in r for r in data)
        return _ref_samples(path, data, instances, split, generalized)
    raise ValueError(f"{path}: not a referring annotation file (JSONL, refs list or COCO instances)")


def read_glamm_gcg(mask_gt_path: str | Path, caption_gt_path: str | Path) -> list[GCGSample]:
    """GLaMM's GCG evaluation pair → one :class:`GCGSample` per image of the caption file.

    The caption file's annotation for an image carries ``caption`` and ``labels`` (the
    phrases); the mask file's annotations of that image, in file order, are the phrases' masks.
    """
    with Path(mask_gt_path).open() as f:
        mask_gt = json.load(f)
    with Path(caption_gt_path).open() as f:
        cap_gt = json.load(f)
    for name, data in (("mask", mask_gt), ("caption", cap_gt)):
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise ValueError(f"GLaMM {name} ground truth must be COCO-style with images and annotations")
    sizes = {img["id"]: (int(img["height"]), int(img["width"]), img.get("file_name"))
             for img in mask_gt["images"]}
    masks: dict[Any, list[dict]] = {}
    for ann in mask_gt["annotations"]:
        masks.setdefault(ann["image_id"], []).append(ann["segmentation"])
    captions: dict[Any, dict] = {}
    for ann in cap_gt["annotations"]:
        if ann["image_id"] in captions:
            raise ValueError(f"{caption_gt_path}: image {ann['image_id']!r} has two caption records")
        captions[ann["image_id"]] = ann
    out = []
    for img in cap_gt["images"]:
        image_id = img["id"]
        if image_id not in captions or image_id not in sizes:
            raise ValueError(f"image {image_id!r} lacks a caption record or a mask-file image entry")
        h, w, file_name = sizes[image_id]
        cap = captions[image_id]
        out.append(GCGSample(image_id=image_id, height=h, width=w, captions=[cap["caption"]],
                             phrases=list(cap.get("labels", [])), masks=masks.get(image_id, []),
                             file_name=img.get("file_name", file_name)))
    return out


def read_gcg_jsonl(path: str | Path) -> list[GCGSample]:
    """masktok's GCG ground-truth JSONL: ``{"image_id", "height", "width", "caption" |
    "captions", "phrases", "masks", "file_name"?}`` per line (``masks[i]`` grounds
    ``phrases[i]``)."""
    out = []
    for n, rec in enumerate(read_jsonl(path), 1):
        where = f"{path}: record {n}"
        _require(rec, ("image_id", "height", "width", "phrases", "masks"), where)
        captions = rec.get("captions", [rec["caption"]] if "caption" in rec else None)
        if not captions:
            raise ValueError(f"{where}: needs 'caption' or 'captions'")
        try:
            out.append(GCGSample(image_id=rec["image_id"], height=int(rec["height"]),
                                 width=int(rec["width"]), captions=list(captions),
                                 phrases=list(rec["phrases"]), masks=list(rec["masks"]),
                                 file_name=rec.get("file_name")))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return out


@dataclass(frozen=True)
class MCQQuestion:
    """A multiple-choice question: lettered ``options`` and the correct letter."""

    question_id: str
    options: list[str]
    answer: str


def read_mcq_jsonl(path: str | Path) -> list[MCQQuestion]:
    """``{"id", "options": [...], "answer": "B"}`` per line."""
    out = []
    for n, rec in enumerate(read_jsonl(path), 1):
        where = f"{path}: record {n}"
        _require(rec, ("id", "options", "answer"), where)
        options = rec["options"]
        if not isinstance(options, list) or not 2 <= len(options) <= 26:
            raise ValueError(f"{where}: 'options' must list 2 to 26 choices")
        answer = rec["answer"]
        if not isinstance(answer, str) or len(answer) != 1 or not "A" <= answer <= chr(64 + len(options)):
            raise ValueError(f"{where}: 'answer' must be one of the option letters, got {answer!r}")
        out.append(MCQQuestion(question_id=str(rec["id"]), options=[str(o) for o in options], answer=answer))
    return out
