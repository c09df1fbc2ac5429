"""Pieces shared by the mask-understanding builders (region caption, region VQA).

* :class:`Region` records: masks of one image with the texts about them, read from refs or from
  masktok's region JSONL (:func:`read_region_jsonl`).
* :func:`zoom_view`: the zoom-in crop of a small region (DESIGN §6, :mod:`masktok.masks.zoom`),
  written to ``crops_dir`` with its own mask words, and the note that introduces it — the same
  layout the chat pipeline uses at inference (:func:`masktok.mllm.conversation.add_user_turn`).

Region JSONL, one record per line::

    {"id": "r1", "image_id": 42, "file_name": "a.jpg", "height": 480, "width": 640,
     "masks": [RLE, ...], "annotation_ids": ["7", ...],          # ids optional
     "caption": "a dog on the left"}                              # region caption
     "qa": [{"question": "What is <mask> holding?", "answer": "A frisbee."}, ...]   # region VQA
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from masktok.data.sft.base import BuildConfig
from masktok.data.sft.mask_words import ImageEntry, MaskRef, format_words
from masktok.masks import check_rle, mask_to_rle, rle_to_mask

log = logging.getLogger(__name__)


@dataclass
class Region:
    """Masks of one image and what is said about them.

    Attributes:
        key: unique sample key.
        caption: the region caption (region caption task).
        qa: (question, answer) pairs (region VQA task).
    """

    key: str
    entry: ImageEntry
    masks: list[MaskRef]
    caption: str | None = None
    qa: list[tuple[str, str]] | None = None


def read_region_jsonl(path: str | Path, images_dir: str | Path) -> list[Region]:
    """masktok's region JSONL (see the module docstring) → regions, in file order.

    Raises:
        ValueError: naming the line: missing fields, masks of the wrong size, an annotation-id
            list of another length, a record with neither ``caption`` nor ``qa``, duplicate ids.
    """
    from masktok.annotations.records import read_jsonl

    out, seen = [], set()
    for n, rec in enumerate(read_jsonl(path), 1):
        where = f"{path}: line {n}"
        for key in ("image_id", "file_name", "height", "width", "masks"):
            if key not in rec:
                raise ValueError(f"{where}: missing {key!r}")
        size = (int(rec["height"]), int(rec["width"]))
        if not isinstance(rec["masks"], list) or not rec["masks"]:
            raise ValueError(f"{where}: 'masks' must be a non-empty list of RLEs")
        ids = rec.get("annotation_ids", [None] * len(rec["masks"]))
        if len(ids) != len(rec["masks"]):
            raise ValueError(f"{where}: {len(ids)} annotation_ids for {len(rec['masks'])} masks")
        masks = []
        for i, (rle, ann_id) in enumerate(zip(rec["masks"], ids)):
            checked = check_rle(rle, size=size, name=f"{where}: masks[{i}]")
            rle = {"size": checked["size"], "counts": checked["counts"].decode("ascii")}
            if not rle_to_mask(rle).any():
                raise ValueError(f"{where}: masks[{i}] is empty")
            masks.append(MaskRef(rle, None if ann_id is None else str(ann_id)))
        caption, qa = rec.get("caption"), rec.get("qa")
        if caption is None and qa is None:
            raise ValueError(f"{where}: needs 'caption' or 'qa'")
        if caption is not None and (not isinstance(caption, str) or not caption.strip()):
            raise ValueError(f"{where}: 'caption' must be a non-empty string")
        pairs = None
        if qa is not None:
            if not isinstance(qa, list) or not qa or not all(
                    isinstance(p, dict) and isinstance(p.get("question"), str)
                    and isinstance(p.get("answer"), str) for p in qa):
                raise ValueError(f"{where}: 'qa' must list {{'question', 'answer'}} strings")
            pairs = [(p["question"], p["answer"]) for p in qa]
        key = str(rec.get("id", f"{rec['image_id']}-{n}"))
        if key in seen:
            raise ValueError(f"{where}: duplicate id {key!r}")
        seen.add(key)
        out.append(Region(key, ImageEntry(str(rec["image_id"]), Path(images_dir) / rec["file_name"],
                                          *size), masks, caption, pairs))
    return out


@dataclass(frozen=True)
class ZoomView:
    """A zoom-in crop written to disk and the mask words of its region on it."""

    path: Path
    size: tuple[int, int]
    rle: dict
    words: str


def zoom_view(entry: ImageEntry, mask: MaskRef, words_source: Any, config: BuildConfig,
              name: str) -> ZoomView | None:
    """The crop of ``mask`` when the zoom rule applies to it (else None), saved as
    ``{crops_dir}/{name}.png``.

    Raises:
        ValueError: a crop is needed but ``config.crops_dir`` is not set.
    """
    from masktok.masks.zoom import needs_zoom, zoom_in

    if config.zoom is None:
        return None
    full = rle_to_mask(mask.rle, size=entry.size)
    if not needs_zoom(full, config.zoom):
        return None
    if config.crops_dir is None:
        raise ValueError("crops_dir: zoom-in crops need a folder to be written to")
    crop = zoom_in(entry.pil(), full, config.zoom)
    config.crops_dir.mkdir(parents=True, exist_ok=True)
    path = config.crops_dir / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png")
    crop.image.save(path)
    codes = words_source.crop_codes(crop.image, np.asarray(crop.mask, dtype=bool))
    return ZoomView(path, (crop.image.height, crop.image.width), mask_to_rle(crop.mask),
                    format_words(codes, words_source.vocabulary))


def zoom_note(image_number: int, mask_words: str, view: ZoomView) -> str:
    """The sentence that introduces a crop (images count from 1)."""
    from masktok.words.prompts import ZOOM_IN_NOTE

    return ZOOM_IN_NOTE.format(image_number=image_number, mask=mask_words, zoom_mask=view.words)


def regions_from_refs(images: list[Any], empty_masks: str = "error") -> list[Region]:
    """Single-instance referring sentences (:class:`~masktok.data.sft.refs.RefImage`) as region
    captions: the sentence describes its instance. Multi- and no-target sentences are left out;
    a sentence about an empty mask raises under ``empty_masks="error"``, is left out under ``"skip"``."""
    single = [(image, r) for image in images for r in image.referrings if len(r.ann_ids) == 1]
    kept = [(image, r) for image, r in single if image.masks_present(r, empty_masks)]
    if len(kept) < len(single):
        log.warning("left out %d sentences about an empty mask (empty_masks='skip')", len(single) - len(kept))
    return [Region(r.key, image.entry, [image.mask_ref(r.ann_ids[0])], caption=r.sentence) for image, r in kept]
