"""Readers for whole-scene ground truth: OpenPSG scene graphs and semantic-segmentation label maps.

* OpenPSG ``psg.json``: ``data`` (per image ``file_name``, ``height``, ``width``, ``image_id``,
  ``pan_seg_file_name``, ``segments_info`` and ``relations`` ``[[subject, object, predicate],
  …]`` indexing ``segments_info``), ``thing_classes`` + ``stuff_classes`` (a segment's
  ``category_id`` indexes their concatenation), ``predicate_classes`` (56) and
  ``{split}_image_ids``. Masks come from the panoptic PNGs (segment id = R + 256·G + 256²·B).
* Semantic segmentation: a folder of label PNGs (palette or grey, one class index per pixel,
  ``ignore_index`` = 255) with a class-name list, or masktok's JSON index of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from masktok.annotations.records import load_json
from masktok.masks.iou import encode_masks
from masktok.eval.psg import SceneGraph
from masktok.masks import read_index_png, read_panoptic_png


@dataclass
class PSGDataset:
    """OpenPSG ground truth: scene graphs plus the class and predicate names they index."""

    graphs: list[SceneGraph]
    object_classes: list[str]
    predicate_classes: list[str]


def read_openpsg(psg_json: str | Path, panoptic_root: str | Path, split: str | None = "test"
                 ) -> PSGDataset:
    """OpenPSG ``psg.json`` + the folder ``pan_seg_file_name`` is relative to → one
    :class:`SceneGraph` per image of ``split`` (``None``: every image)."""
    path, root = Path(psg_json), Path(panoptic_root)
    data = load_json(path)
    for key in ("data", "thing_classes", "stuff_classes", "predicate_classes"):
        if key not in data:
            raise ValueError(f"{path}: not an OpenPSG file (no {key!r})")
    classes = list(data["thing_classes"]) + list(data["stuff_classes"])
    predicates = list(data["predicate_classes"])
    keep = None
    if split is not None:
        key = f"{split}_image_ids"
        if key not in data:
            raise ValueError(f"{path}: no {key!r} for split {split!r}")
        keep = {str(i) for i in data[key]}
    graphs = []
    for k, rec in enumerate(data["data"]):
        if keep is not None and str(rec.get("image_id")) not in keep:
            continue
        where = f"{path}: data[{k}] (image_id={rec.get('image_id')})"
        ids = read_panoptic_png(root / rec["pan_seg_file_name"])
        h, w = int(rec["height"]), int(rec["width"])
        if ids.shape != (h, w):
            raise ValueError(f"{where}: panoptic PNG is {ids.shape} but the image is {(h, w)}")
        segments = rec["segments_info"]
        labels = np.array([s["category_id"] for s in segments], dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(f"{where}: category_id outside 0..{len(classes) - 1}")
        masks = np.stack([ids == s["id"] for s in segments]) if segments else np.zeros((0, h, w), bool)
        empty = np.flatnonzero(~masks.reshape(len(segments), -1).any(axis=1)) if segments else []
        if len(empty):
            raise ValueError(f"{where}: segment id {segments[empty[0]]['id']} is absent from its PNG")
        relations = np.asarray(rec.get("relations", []), dtype=np.int64).reshape(-1, 3)
        if relations.size and (relations[:, 2].min() < 0 or relations[:, 2].max() >= len(predicates)):
            raise ValueError(f"{where}: predicate outside 0..{len(predicates) - 1}")
        try:
            graphs.append(SceneGraph(image_id=rec["image_id"], height=h, width=w, labels=labels,
                                     masks=encode_masks(masks), relations=relations,
                                     extras={"file_name": rec.get("file_name")}))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    if not graphs:
        raise ValueError(f"{path}: no image in split {split!r}")
    return PSGDataset(graphs=graphs, object_classes=classes, predicate_classes=predicates)


@dataclass(frozen=True)
class SemSegImage:
    """One image of a semantic-segmentation set: its label PNG (and image file, if known)."""

    image_id: str
    label_path: Path
    file_name: str | None = None


@dataclass
class SemSegDataset:
    """Label maps with ``classes`` indexed 0..C-1 and ``ignore_index`` for unlabelled pixels.

    ``reduce_zero_label`` (mmseg's term): the PNGs store background as 0 and class k as k + 1;
    0 becomes ignored and every other value drops by one (PASCAL VOC without background).
    """

    classes: list[str]
    images: list[SemSegImage]
    ignore_index: int = 255
    reduce_zero_label: bool = False

    def label_map(self, image: SemSegImage) -> np.ndarray:
        """(H, W) int64 class index per pixel, ``ignore_index`` where unlabelled."""
        raw = read_index_png(image.label_path)
        if self.reduce_zero_label:
            ignored = (raw == 0) | (raw == self.ignore_index)
            raw = np.where(ignored, self.ignore_index, raw - 1)
        bad = (raw != self.ignore_index) & ((raw < 0) | (raw >= len(self.classes)))
        if bad.any():
            raise ValueError(f"{image.label_path}: label {int(raw[bad][0])} is outside the "
                             f"{len(self.classes)} classes")
        return raw


def _read_class_names(classes: str | Path | list[str]) -> list[str]:
    if isinstance(classes, (str, Path)):
        names = [line.strip() for line in Path(classes).read_text().splitlines() if line.strip()]
    else:
        names = [str(c) for c in classes]
    if not names:
        raise ValueError("the class list is empty")
    return names


def read_semseg_dir(label_dir: str | Path, classes: str | Path | list[str], *,
                    ignore_index: int = 255, reduce_zero_label: bool = False) -> SemSegDataset:
    """Every ``*.png`` of ``label_dir`` (image id = file stem); ``classes`` is a list or a text
    file with one name per line (line k = label k, before ``reduce_zero_label``)."""
    label_dir = Path(label_dir)
    pngs = sorted(label_dir.glob("*.png"))
    if not pngs:
        raise ValueError(f"no label PNGs in {label_dir}")
    names = _read_class_names(classes)
    if reduce_zero_label:
        names = names[1:]
    return SemSegDataset(classes=names, images=[SemSegImage(p.stem, p) for p in pngs],
                         ignore_index=ignore_index, reduce_zero_label=reduce_zero_label)


def read_semseg_json(path: str | Path) -> SemSegDataset:
    """masktok's semantic-segmentation index: ``{"classes": [...] | "classes.txt", "images":
    [{"image_id", "label", "file_name"?}], "ignore_index"?: 255, "reduce_zero_label"?: false}``;
    paths are relative to the JSON file's folder."""
    path = Path(path)
    data: Any = load_json(path)
    if not isinstance(data, dict) or "classes" not in data or "images" not in data:
        raise ValueError(f"{path}: needs 'classes' and 'images'")
    base = path.parent
    classes = data["classes"]
    names = _read_class_names(base / classes if isinstance(classes, str) else classes)
    reduce = bool(data.get("reduce_zero_label", False))
    if reduce:
        names = names[1:]
    images = []
    for k, rec in enumerate(data["images"]):
        if "image_id" not in rec or "label" not in rec:
            raise ValueError(f"{path}: images[{k}] needs 'image_id' and 'label'")
        images.append(SemSegImage(str(rec["image_id"]), base / rec["label"], rec.get("file_name")))
    return SemSegDataset(classes=names, images=images, ignore_index=int(data.get("ignore_index", 255)),
                         reduce_zero_label=reduce)
