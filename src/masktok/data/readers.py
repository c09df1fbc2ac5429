"""Readers for mask datasets that :mod:`masktok.annotations` and :mod:`masktok.eval` do not cover.

* SA-1B: one JSON per image (``{"image": {"image_id", "width", "height", "file_name"},
  "annotations": [{"id", "segmentation": RLE, "area", "bbox", …}]}``), either as loose files
  beside their JPEGs or packed with them in the release's ``sa_NNNNNN.tar`` shards.
* GranD-f grounded captions (GLaMM's ``GranDf_HA_GCG_train.json`` and its siblings): a list of
  ``{"file_name", "caption", "groundings": {phrase: {"token_positives": [start, end],
  "rle_masks": [RLE, …]}}}``; the masks of one phrase are merged into one.

Every malformed record raises :class:`masktok.annotations.AnnotationError` (a ``ValueError``)
naming the file and the record.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masktok.annotations.records import (
    AnnotationError,
    ImageAnnotations,
    Instance,
    load_json,
    require_int,
)
from masktok.masks import check_rle, mask_to_rle, rle_area, rle_to_box, rles_to_masks

__all__ = [
    "GroundedCaption",
    "parse_sa1b_record",
    "read_grandf",
    "read_sa1b_json",
    "sa1b_tar_members",
    "read_sa1b_tar_member",
]


# ---------------------------------------------------------------------------------------------
# SA-1B
# ---------------------------------------------------------------------------------------------
def parse_sa1b_record(data: Any, where: str | Path) -> ImageAnnotations:
    """One SA-1B per-image record (already parsed JSON) → :class:`ImageAnnotations`.

    ``where`` names the source (file, or ``tar:member``) in error messages. The RLE of every
    annotation must have the image's size; ``area`` defaults to the mask's pixel count.
    """
    if not isinstance(data, dict) or not isinstance(data.get("image"), dict) \
            or not isinstance(data.get("annotations"), list):
        raise AnnotationError(where, "file", "not an SA-1B record (needs 'image' and 'annotations')")
    image = data["image"]
    try:
        image_id = require_int(image.get("image_id"), "image.image_id")
        height = require_int(image.get("height"), "image.height", positive=True)
        width = require_int(image.get("width"), "image.width", positive=True)
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise ValueError("image.file_name must be a non-empty string")
    except ValueError as exc:
        raise AnnotationError(where, "image", str(exc)) from None
    instances = []
    seen: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        record = f"annotation #{i}" + (f" id={ann.get('id')}" if isinstance(ann, dict) else "")
        try:
            if not isinstance(ann, dict):
                raise ValueError("not an object")
            ann_id = require_int(ann.get("id"), "id")
            if ann_id in seen:
                raise ValueError("duplicate annotation id")
            checked = check_rle(ann.get("segmentation"), size=(height, width), name="segmentation")
            rle = {"size": checked["size"], "counts": checked["counts"].decode("ascii")}
            area = ann.get("area")
            if area is None:
                area = float(rle_area(rle))
            elif isinstance(area, bool) or not isinstance(area, (int, float)) or area < 0:
                raise ValueError(f"area must be a non-negative number, got {area!r}")
        except ValueError as exc:
            raise AnnotationError(where, record, str(exc)) from None
        seen.add(ann_id)
        instances.append(Instance(mask_rle=rle, category_id=0, id=ann_id, area=float(area),
                                  iscrowd=False, box=rle_to_box(rle)))
    return ImageAnnotations(image_id=image_id, file_name=file_name, height=height, width=width,
                            instances=instances)


def read_sa1b_json(path: str | Path) -> ImageAnnotations:
    """One loose SA-1B JSON file → :class:`ImageAnnotations`."""
    return parse_sa1b_record(load_json(path), Path(path))


def sa1b_tar_members(path: str | Path) -> list[tuple[str, str]]:
    """The (json member, image member) pairs of an SA-1B tar shard, in the tar's JSON order.

    Only member headers are read. Raises :class:`AnnotationError` for a JSON without its image
    (same stem, ``.jpg``/``.jpeg``/``.png``) or a tar holding no JSON.
    """
    path = Path(path)
    try:
        with tarfile.open(path, "r:*") as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError) as exc:
        raise AnnotationError(path, "file", f"not a readable tar archive ({exc})") from None
    images = {}
    for name in names:
        stem, _, suffix = name.rpartition(".")
        if suffix.lower() in ("jpg", "jpeg", "png"):
            images[stem] = name
    pairs = []
    for name in names:
        stem, _, suffix = name.rpartition(".")
        if suffix.lower() != "json":
            continue
        if stem not in images:
            raise AnnotationError(path, name, "has no image member with the same stem")
        pairs.append((name, images[stem]))
    if not pairs:
        raise AnnotationError(path, "file", "holds no SA-1B JSON member")
    return pairs


def read_sa1b_tar_member(tar: tarfile.TarFile, tar_path: str | Path, json_member: str,
                         image_member: str) -> tuple[ImageAnnotations, bytes]:
    """One image of an open SA-1B tar: its annotations and the raw image bytes."""
    where = f"{tar_path}:{json_member}"
    try:
        raw = tar.extractfile(json_member)
        image = tar.extractfile(image_member)
        if raw is None or image is None:
            raise KeyError(json_member if raw is None else image_member)
        data = json.loads(raw.read().decode("utf-8"))
        image_bytes = image.read()
    except KeyError as exc:
        raise AnnotationError(tar_path, str(exc), "member missing from the archive") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(where, "file", f"invalid JSON ({exc})") from None
    return parse_sa1b_record(data, where), image_bytes


# ---------------------------------------------------------------------------------------------
# GranD-f grounded captions
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroundedCaption:
    """One image's caption with grounded phrases (GCG training data).

    Attributes:
        spans: ``(start, end)`` character offsets of each phrase in ``caption``, sorted by start,
            non-overlapping.
        phrases: ``caption[start:end]`` of each span.
        masks: one COCO RLE per phrase at (height, width).
    """

    image_id: Any
    file_name: str
    height: int
    width: int
    caption: str
    spans: tuple[tuple[int, int], ...]
    phrases: tuple[str, ...]
    masks: tuple[dict, ...]


def _grounding_mask(rles: Any, where: str) -> tuple[dict, tuple[int, int]]:
    if not isinstance(rles, list) or not rles:
        raise ValueError(f"{where}: 'rle_masks' must be a non-empty list of RLEs")
    masks = rles_to_masks(rles)
    return mask_to_rle(masks.any(axis=0)), (int(masks.shape[1]), int(masks.shape[2]))


def read_grandf(path: str | Path) -> list[GroundedCaption]:
    """A GranD-f GCG training file → one :class:`GroundedCaption` per record, in file order.

    The image size is the masks' (``height``/``width`` in the record, when present, must agree).
    The caption loses surrounding quotes and spaces as GLaMM's loader does; ``token_positives``
    index that stripped caption.

    Raises:
        AnnotationError: missing fields, spans outside the caption or overlapping, masks of
            different sizes, a record without groundings.
    """
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, list):
        raise AnnotationError(path, "file", "expected a JSON list of GranD-f records")
    out = []
    for k, rec in enumerate(data):
        record = f"record #{k}"
        try:
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            file_name, caption = rec.get("file_name"), rec.get("caption")
            groundings = rec.get("groundings")
            if not isinstance(file_name, str) or not isinstance(caption, str):
                raise ValueError("needs 'file_name' and 'caption' strings")
            if not isinstance(groundings, dict) or not groundings:
                raise ValueError("needs a non-empty 'groundings' object")
            caption = caption.strip('"').strip()
            items = []
            size = None
            for phrase, grounding in groundings.items():
                where = f"grounding {phrase!r}"
                span = grounding.get("token_positives") if isinstance(grounding, dict) else None
                if (not isinstance(span, list) or len(span) != 2
                        or not all(isinstance(v, int) for v in span)
                        or not 0 <= span[0] < span[1] <= len(caption)):
                    raise ValueError(f"{where}: 'token_positives' must be [start, end] inside the "
                                     f"caption ({len(caption)} characters), got {span!r}")
                rle, mask_size = _grounding_mask(grounding.get("rle_masks"), where)
                if size is not None and mask_size != size:
                    raise ValueError(f"{where}: masks are {mask_size} but earlier ones {size}")
                size = mask_size
                items.append(((span[0], span[1]), rle))
            items.sort(key=lambda item: item[0][0])
            for ((_, end), _), ((start, _), _) in zip(items, items[1:]):
                if start < end:
                    raise ValueError(f"phrase spans overlap at character {start}")
            assert size is not None
            for key, value in (("height", size[0]), ("width", size[1])):
                if key in rec and rec[key] != value:
                    raise ValueError(f"{key} {rec[key]} disagrees with the masks' {value}")
        except ValueError as exc:
            raise AnnotationError(path, record, str(exc)) from None
        out.append(GroundedCaption(
            image_id=rec.get("image_id", Path(file_name).stem), file_name=file_name,
            height=size[0], width=size[1], caption=caption,
            spans=tuple(span for span, _ in items),
            phrases=tuple(caption[s:e] for (s, e), _ in items),
            masks=tuple(rle for _, rle in items)))
    return out

