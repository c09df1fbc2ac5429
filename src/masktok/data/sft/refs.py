"""Referring expressions (RefCOCO/+/g refs, gRefCOCO grefs) joined with their COCO instances.

The refs file is read with the evaluation suite's refer-API loader
(:func:`masktok.annotations.refcoco.load_refs`: pickle of plain containers or JSON); the instances with
:func:`masktok.annotations.read_coco_instances`, so every mask keeps its annotation id (builders
can then take its words from a ``tokenize-dataset`` Parquet).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masktok.annotations import ImageAnnotations, Instance, read_coco_instances
from masktok.annotations.refcoco import load_refs
from masktok.data.sft.mask_words import ImageEntry, MaskRef


@dataclass(frozen=True)
class Referring:
    """One sentence of a ref: what it says and which instances it refers to (none: no target)."""

    key: str
    ref_id: Any
    sentence: str
    ann_ids: tuple[Any, ...]


@dataclass
class RefImage:
    """An image, all its instances, and the referring sentences about it."""

    annotations: ImageAnnotations
    entry: ImageEntry
    referrings: list[Referring]

    def instance(self, ann_id: Any) -> Instance:
        for inst in self.annotations.instances:
            if inst.id == ann_id:
                return inst
        raise KeyError(ann_id)

    def mask_ref(self, ann_id: Any) -> MaskRef:
        """The instance's mask; ValueError for an empty one (it has no words)."""
        inst = self.instance(ann_id)
        if inst.box is None:
            raise ValueError(f"image {self.entry.image_id}: annotation {ann_id} has an empty mask")
        return MaskRef(inst.mask_rle, str(ann_id))


def read_refs(refs_path: str | Path, instances_path: str | Path, images_dir: str | Path,
              split: str | None = None, generalized: bool | None = None) -> list[RefImage]:
    """Refs + COCO instances → one :class:`RefImage` per image with at least one sentence, in
    the instances file's image order (sentences in refs-file order).

    Args:
        split: keep refs of this split only (None: all).
        generalized: gRefCOCO semantics (``ann_id`` lists, ``no_target``, ``-1`` = none); None
            detects it from the file.

    Raises:
        ValueError: a ref without ``image_id``/``ann_id``/``sentences``, an unknown image or
            annotation id, an annotation of another image, a sentence without text, a no-target
            ref in a non-generalized file, or no sentence at all.
    """
    path = Path(refs_path)
    refs = load_refs(path)
    if generalized is None:
        generalized = any(isinstance(r.get("ann_id"), list) or "no_target" in r for r in refs)
    images = {img.image_id: img for img in read_coco_instances(instances_path)}
    owner = {inst.id: img.image_id for img in images.values() for inst in img.instances}
    per_image: dict[Any, list[Referring]] = {}
    for k, ref in enumerate(refs):
        where = f"{path}: ref #{k} (ref_id={ref.get('ref_id')})"
        if split is not None and ref.get("split") != split:
            continue
        for key in ("image_id", "ann_id", "sentences"):
            if key not in ref:
                raise ValueError(f"{where}: no {key!r}")
        if ref["image_id"] not in images:
            raise ValueError(f"{where}: image_id {ref['image_id']} is not in {instances_path}")
        ann_ids = ref["ann_id"] if isinstance(ref["ann_id"], list) else [ref["ann_id"]]
        ann_ids = [a for a in ann_ids if a != -1]
        if generalized and ref.get("no_target", False):
            if ann_ids:
                raise ValueError(f"{where}: marked no_target but lists annotations {ann_ids}")
        elif not ann_ids:
            raise ValueError(f"{where}: refers to no annotation"
                             + ("" if generalized else " (not a gRefCOCO file)"))
        for ann_id in ann_ids:
            if ann_id not in owner:
                raise ValueError(f"{where}: ann_id {ann_id} is not in {instances_path}")
            if owner[ann_id] != ref["image_id"]:
                raise ValueError(f"{where}: ann_id {ann_id} belongs to image {owner[ann_id]}")
        for j, sent in enumerate(ref["sentences"]):
            text = sent.get("sent", sent.get("raw")) if isinstance(sent, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{where}: sentence #{j} has no text")
            key = str(sent.get("sent_id", f"{ref.get('ref_id', k)}-{j}"))
            per_image.setdefault(ref["image_id"], []).append(
                Referring(key, ref.get("ref_id"), text.strip(), tuple(ann_ids)))
    if not per_image:
        raise ValueError(f"{path}: no sentence" + (f" in split {split!r}" if split else ""))
    return [RefImage(img, ImageEntry.of(img, images_dir), per_image[image_id])
            for image_id, img in images.items() if image_id in per_image]
