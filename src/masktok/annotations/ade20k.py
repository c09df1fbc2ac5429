"""ADE20K full-dataset annotations (the ``ADE20K_2021_17_01`` release layout).

For an image ``NAME.jpg`` the release holds:

* ``NAME_seg.png`` — RGB: the class index of a pixel is ``(R // 10) * 256 + G`` (0 = unlabeled),
  and every distinct ``B`` value is one object instance (``B = 0`` is unlabeled);
  ``NAME_parts_{level}.png`` encode parts (level 1) and parts of parts (level 2) the same way.
  This is the decoding of the dataset's toolkit (``utils/utils_ade20k.py``, ``loadAde20K``).
* ``NAME.json`` — ``annotation.object``: per object its ``id``, ``name``, ``name_ndx`` (its
  class index), ``parts.part_level`` (0 = whole object) and ``instance_mask``, the path (relative
  to the JSON's folder) of
* ``NAME/instance_NNN_NAME.png`` — one 8-bit mask per object: **255 where the object is visible,
  128 where it is occluded** (the amodal extent), 0 elsewhere.

:func:`read_ade20k_seg` reads a ``_seg.png`` / ``_parts_N.png`` into one instance per ``B`` value;
:func:`read_ade20k_objects` reads the per-object masks with ``region`` = ``"visible"`` (the
default: pixels 255), ``"occluded"`` (pixels 128) or ``"amodal"`` (both);
:func:`read_ade20k_object_mask` reads one such PNG. A threshold on those PNGs would silently merge
the occluded part into the object, which is why they have their own reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from masktok.annotations.records import AnnotationError, ImageAnnotations, Instance, load_json
from masktok.masks.boxes import rle_to_box
from masktok.masks.rle import mask_to_rle

__all__ = ["REGIONS", "read_ade20k_seg", "read_ade20k_objects", "read_ade20k_object_mask",
           "ade20k_class_map"]

REGIONS = ("visible", "occluded", "amodal")
_VISIBLE, _OCCLUDED = 255, 128


def _rgb(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode != "RGB":
                raise AnnotationError(path, "file", f"ADE20K _seg/_parts PNGs are RGB, got mode {img.mode}")
            return np.asarray(img)
    except OSError as exc:
        raise AnnotationError(path, "file", f"not a readable image ({exc})") from None


def ade20k_class_map(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 ``_seg.png`` pixels → (H, W) int64 class indices ``(R // 10) * 256 + G``."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 pixels, got {rgb.shape} {rgb.dtype}")
    return (rgb[..., 0].astype(np.int64) // 10) * 256 + rgb[..., 1].astype(np.int64)


def _class_names(json_path: Path | None) -> dict[int, str]:
    if json_path is None or not json_path.is_file():
        return {}
    names: dict[int, str] = {}
    for obj in _objects(json_path, load_json(json_path)):
        if isinstance(obj.get("name_ndx"), int) and isinstance(obj.get("name"), str):
            names.setdefault(obj["name_ndx"], obj["name"])
    return names


def _objects(path: Path, data: Any) -> list[dict]:
    objects = data.get("annotation", {}).get("object") if isinstance(data, dict) else None
    if not isinstance(objects, list):
        raise AnnotationError(path, "file", "not an ADE20K annotation (no annotation.object list)")
    return objects


def read_ade20k_seg(seg_png: str | Path, names: dict[int, str] | None = None) -> ImageAnnotations:
    """An ADE20K ``NAME_seg.png`` (or ``NAME_parts_N.png``) → one instance per non-zero ``B``
    value, in increasing ``B`` order.

    ``category_id`` is the pixel's class index (``(R // 10) * 256 + G``); ``id`` the ``B`` value;
    ``category_name`` from ``names`` or, by default, from the ``NAME.json`` beside the PNG
    (``name_ndx`` → ``name``; ``None`` when there is no JSON). An instance whose pixels carry
    several class indices is an :class:`AnnotationError`.
    """
    path = Path(seg_png)
    rgb = _rgb(path)
    stem = path.name.rsplit("_seg.png", 1)[0] if path.name.endswith("_seg.png") else \
        path.name.rsplit("_parts_", 1)[0]
    if names is None:
        names = _class_names(path.with_name(stem + ".json"))
    classes = ade20k_class_map(rgb)
    blue = rgb[..., 2]
    values, inverse = np.unique(blue, return_inverse=True)
    inverse = inverse.reshape(blue.shape)
    instances = []
    for k, value in enumerate(values.tolist()):
        if value == 0:
            continue
        mask = inverse == k
        present = np.unique(classes[mask])
        if len(present) != 1:
            raise AnnotationError(path, f"instance B={value}",
                                  f"its pixels carry {len(present)} class indices {present[:4].tolist()}")
        class_index = int(present[0])
        rle = mask_to_rle(mask)
        instances.append(Instance(mask_rle=rle, category_id=class_index, id=int(value),
                                  area=float(mask.sum()), iscrowd=False, box=rle_to_box(rle),
                                  category_name=names.get(class_index)))
    return ImageAnnotations(image_id=stem, file_name=stem + ".jpg", height=rgb.shape[0],
                            width=rgb.shape[1], instances=instances)


def read_ade20k_object_mask(path: str | Path, region: str = "visible") -> np.ndarray:
    """One ADE20K per-object ``instance_NNN_NAME.png`` → (H, W) bool of ``region``:
    ``"visible"`` (pixels 255, the default), ``"occluded"`` (pixels 128) or ``"amodal"`` (both).
    Any other grey level is an :class:`AnnotationError`."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode != "L":
                raise AnnotationError(path, "file", f"ADE20K object masks are 8-bit grey, got mode {img.mode}")
            pixels = np.asarray(img)
    except OSError as exc:
        raise AnnotationError(path, "file", f"not a readable image ({exc})") from None
    levels = set(np.unique(pixels).tolist())
    if not levels <= {0, _OCCLUDED, _VISIBLE}:
        raise AnnotationError(path, "file", f"holds grey levels {sorted(levels - {0, 128, 255})[:5]}; "
                              "an ADE20K object mask holds only 0, 128 (occluded) and 255 (visible)")
    if region == "visible":
        return pixels == _VISIBLE
    if region == "occluded":
        return pixels == _OCCLUDED
    return pixels != 0


def read_ade20k_objects(json_path: str | Path, region: str = "visible",
                        part_level: int = 0) -> ImageAnnotations:
    """An ADE20K ``NAME.json`` with its per-object masks → the objects of ``part_level`` (0 =
    whole objects, 1 = parts, 2 = parts of parts) with the ``region`` of each mask (see
    :func:`read_ade20k_object_mask`; an object with no pixel in that region keeps an empty mask).

    ``category_id`` is ``name_ndx`` (the class index of ``_seg.png``), ``id`` the object's ``id``,
    ``area`` the region's pixel count, ``iscrowd`` False.
    """
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    path = Path(json_path)
    data = load_json(path)
    objects = _objects(path, data)
    size = None
    instances = []
    for k, obj in enumerate(objects):
        where = f"annotation.object[{k}]" + (f" id={obj.get('id')}" if isinstance(obj, dict) else "")
        try:
            if not isinstance(obj, dict):
                raise ValueError("not an object")
            level = obj.get("parts", {}).get("part_level")
            if not isinstance(level, int):
                raise ValueError("parts.part_level must be an integer")
            if level != part_level:
                continue
            for key, kind in (("id", int), ("name_ndx", int), ("name", str), ("instance_mask", str)):
                if not isinstance(obj.get(key), kind) or isinstance(obj.get(key), bool):
                    raise ValueError(f"{key!r} must be a {kind.__name__}")
        except ValueError as exc:
            raise AnnotationError(path, where, str(exc)) from None
        try:
            mask = read_ade20k_object_mask(path.parent / obj["instance_mask"], region)
        except (AnnotationError, FileNotFoundError) as exc:
            raise AnnotationError(path, where, str(exc)) from None
        if size is None:
            size = mask.shape
        elif mask.shape != size:
            raise AnnotationError(path, where, f"mask is {mask.shape} but earlier masks are {size}")
        rle = mask_to_rle(mask)
        instances.append(Instance(mask_rle=rle, category_id=obj["name_ndx"], id=obj["id"],
                                  area=float(mask.sum()), iscrowd=False, box=rle_to_box(rle),
                                  category_name=obj["name"]))
    annotation = data["annotation"]
    imsize = annotation.get("imsize")
    if size is None:
        if not (isinstance(imsize, list) and len(imsize) >= 2):
            raise AnnotationError(path, "annotation", f"no object at part level {part_level} and no imsize")
        size = (int(imsize[0]), int(imsize[1]))
    file_name = annotation.get("filename") if isinstance(annotation.get("filename"), str) else path.stem + ".jpg"
    return ImageAnnotations(image_id=path.stem, file_name=file_name, height=int(size[0]),
                            width=int(size[1]), instances=instances)
