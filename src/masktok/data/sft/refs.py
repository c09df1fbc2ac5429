"""Referring expressions (RefCOCO/+/g refs, gRefCOCO grefs) joined with their COCO instances.

The refs file is read and checked by the one refer-API parser the evaluation uses too
(:mod:`masktok.annotations.refcoco`: pickle of plain containers or JSON); the instances with
:class:`masktok.annotations.CocoInstancesIndex`, so every mask keeps its annotation id (builders
can then take its words from a ``tokenize-dataset`` Parquet).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masktok.annotations import CocoInstancesIndex, ImageAnnotations, Instance
from masktok.annotations.refcoco import load_refs, parse_ref_sentences
from masktok.data.sft.mask_words import ImageEntry, MaskRef, mask_present


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
        mask_present(f"image {self.entry.image_id}: annotation {ann_id}", inst.box is None, "error")
        return MaskRef(inst.mask_rle, str(ann_id))

    def masks_present(self, referring: Referring, policy: str, result: Any = None) -> bool:
        """Whether every instance ``referring`` names has a mask (``empty_masks`` ``policy``:
        an empty one raises under ``"error"``, is counted in ``result`` under ``"skip"``)."""
        return all(mask_present(f"image {self.entry.image_id}: annotation {a} (sentence {referring.key})",
                                self.instance(a).box is None, policy, result) for a in referring.ann_ids)


def read_refs(refs_path: str | Path, instances_path: str | Path, images_dir: str | Path,
              split: str | None = None, generalized: bool | None = None) -> list[RefImage]:
    """Refs + COCO instances → one :class:`RefImage` per image with at least one sentence, in
    the instances file's image order (sentences in refs-file order). Only those images' masks
    are converted.

    Args:
        split: keep refs of this split only (None: all).
        generalized: gRefCOCO semantics (``ann_id`` lists, ``no_target``, ``-1`` = none); None
            detects it from the file.

    Raises:
        ValueError: see :func:`masktok.annotations.refcoco.parse_ref_sentences`.
    """
    path = Path(refs_path)
    index = CocoInstancesIndex(instances_path)
    image_of = {ann_id: rec["image_id"] for ann_id, rec in index.records.items()}
    per_image: dict[Any, list[Referring]] = {}
    for sent in parse_ref_sentences(load_refs(path), path, image_of, index.images, split, generalized):
        per_image.setdefault(sent.image_id, []).append(
            Referring(sent.key, sent.ref_id, sent.sentence.strip(), sent.ann_ids))
    out = []
    for image_id in index.images:
        if image_id in per_image:
            annotations = index.image_annotations(image_id)
            out.append(RefImage(annotations, ImageEntry.of(annotations, images_dir), per_image[image_id]))
    return out
