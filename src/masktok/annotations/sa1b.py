"""SA-1B: one JSON per image (``{"image": {"image_id", "width", "height", "file_name"},
"annotations": [{"id", "segmentation": RLE, "area", "bbox", …}]}``), either as loose files beside
their JPEGs or packed with them in the release's ``sa_NNNNNN.tar`` shards.

Every malformed record raises :class:`masktok.annotations.AnnotationError` (a ``ValueError``)
naming the file and the record.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from masktok.annotations.records import (
    AnnotationError,
    ImageAnnotations,
    Instance,
    load_json,
    require_int,
)
from masktok.masks import check_rle, rle_area, rle_to_box


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
