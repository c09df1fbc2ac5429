"""Reader for labelme JSON files, following labelme's own conventions:

* shapes with the same ``(label, group_id)`` form one instance; a shape with ``group_id: null``
  is an instance of its own; instances are numbered 1, 2, … in order of first appearance
  (the numbering labelme's VOC export writes into its instance PNGs);
* ``__ignore__`` shapes are not instances: their union is returned as the image's ignore region
  (``ImageAnnotations.ignore_rle``);
* shapes are rasterised like labelme does (PIL drawing with outline), so masks match labelme's
  exported label images pixel for pixel.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from masktok.annotations.records import (
    AnnotationError,
    ImageAnnotations,
    Instance,
    load_json,
    require_int,
)
from masktok.masks.boxes import rle_to_box
from masktok.masks.polygons import BOUNDS_MARGIN
from masktok.masks.rle import mask_to_rle

__all__ = ["read_labelme", "IGNORE_LABEL", "AREA_SHAPE_TYPES"]

IGNORE_LABEL = "__ignore__"
#: Shape types that enclose an area and become masks.
AREA_SHAPE_TYPES = ("polygon", "rectangle", "circle")


def _shape_mask(shape: dict, height: int, width: int) -> np.ndarray:
    kind = shape.get("shape_type") or "polygon"
    try:
        pts = np.asarray(shape.get("points"), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("points must be a list of [x, y] pairs") from None
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be a list of [x, y] pairs, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("points hold NaN or infinite coordinates")
    m = BOUNDS_MARGIN
    if (pts[:, 0].min() < -m or pts[:, 0].max() > width + m or pts[:, 1].min() < -m
            or pts[:, 1].max() > height + m):
        raise ValueError(f"points outside the {height}x{width} image")
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    xy = [tuple(p) for p in pts.tolist()]
    if kind == "polygon":
        if len(xy) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(xy)}")
        draw.polygon(xy, outline=1, fill=1)
    elif kind == "rectangle":
        if len(xy) != 2:
            raise ValueError(f"a rectangle needs 2 points, got {len(xy)}")
        (x0, y0), (x1, y1) = xy
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
    elif kind == "circle":
        if len(xy) != 2:
            raise ValueError(f"a circle needs 2 points (centre, rim), got {len(xy)}")
        (cx, cy), (px, py) = xy
        r = math.hypot(cx - px, cy - py)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=1, fill=1)
    else:
        raise ValueError(f"shape_type {kind!r} encloses no area (supported: "
                         f"{', '.join(AREA_SHAPE_TYPES)}; pass skip_shape_types to leave it out)")
    return np.asarray(canvas, dtype=bool)


def _label_ids(labels: Sequence[str] | Mapping[str, int] | None,
               files: list[tuple[Path, dict]]) -> dict[str, int]:
    if isinstance(labels, Mapping):
        return dict(labels)
    if labels is not None:
        names = [n for n in labels if n != IGNORE_LABEL]
        if len(set(names)) != len(names):
            raise ValueError("labels: duplicate names")
        return {n: i for i, n in enumerate(names)}
    seen = sorted({s["label"] for _, d in files for s in d["shapes"]
                   if isinstance(s, dict) and isinstance(s.get("label"), str)} - {IGNORE_LABEL})
    return {n: i for i, n in enumerate(seen, start=1)}


def _read_one(path: Path, data: Any, ids: dict[str, int],
              skip_shape_types: Collection[str]) -> ImageAnnotations:
    try:
        height = require_int(data.get("imageHeight"), "imageHeight", positive=True)
        width = require_int(data.get("imageWidth"), "imageWidth", positive=True)
        if not isinstance(data.get("imagePath"), str):
            raise ValueError("imagePath must be a string")
    except ValueError as exc:
        raise AnnotationError(path, "file", str(exc)) from None
    groups: dict[tuple[str, Any], np.ndarray] = {}
    numbers: dict[tuple[str, Any], int] = {}
    for i, shape in enumerate(data["shapes"]):
        where = f"shape #{i}" + (f" label={shape.get('label')!r}" if isinstance(shape, dict)
                                 else "")
        try:
            if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
                raise ValueError("a shape needs a string 'label'")
            if (shape.get("shape_type") or "polygon") in skip_shape_types:
                continue
            label, group = shape["label"], shape.get("group_id")
            if label != IGNORE_LABEL and label not in ids:
                raise ValueError(f"label {label!r} is not in labels")
            mask = _shape_mask(shape, height, width)
        except ValueError as exc:
            raise AnnotationError(path, where, str(exc)) from None
        key = (label, ("shape", i) if group is None else ("group", group))
        numbers.setdefault(key, len(numbers) + 1)
        groups[key] = groups[key] | mask if key in groups else mask
    instances, ignore = [], None
    for key, mask in groups.items():
        label = key[0]
        if label == IGNORE_LABEL:
            ignore = mask if ignore is None else ignore | mask
            continue
        rle = mask_to_rle(mask)
        instances.append(Instance(mask_rle=rle, category_id=ids[label], id=numbers[key],
                                  area=float(mask.sum()), iscrowd=False, box=rle_to_box(rle),
                                  category_name=label))
    return ImageAnnotations(image_id=path.stem, file_name=data["imagePath"], height=height,
                            width=width, instances=instances,
                            ignore_rle=None if ignore is None else mask_to_rle(ignore))


def read_labelme(path: str | Path, labels: Sequence[str] | Mapping[str, int] | None = None,
                 skip_shape_types: Collection[str] = ()) -> list[ImageAnnotations]:
    """labelme JSON (one file, or every ``*.json`` of a folder, sorted) → list of images.

    Args:
        labels: the class list. A sequence (labelme's ``labels.txt`` order) numbers the names
            0, 1, … after dropping ``__ignore__`` — so ``_background_`` is 0 and ``aeroplane`` 1
            for the VOC list, as labelme's VOC export numbers them; a mapping gives ids
            directly. None numbers the labels found, sorted, from 1.
        skip_shape_types: shape types to leave out on purpose (e.g. ``{"point", "line"}``);
            any other shape type without an area raises.

    Raises:
        AnnotationError: naming the file and shape: missing/invalid fields, unknown label,
            polygon with < 3 points, points outside the image, unsupported shape type.
    """
    path = Path(path)
    if path.is_dir():
        paths = sorted(path.glob("*.json"))
        if not paths:
            raise FileNotFoundError(f"{path}: no labelme .json files")
    else:
        paths = [path]
    files = []
    for p in paths:
        data = load_json(p)
        if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
            raise AnnotationError(p, "file", "not a labelme file (no 'shapes' list)")
        files.append((p, data))
    try:
        ids = _label_ids(labels, files)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    skip = frozenset(skip_shape_types)
    return [_read_one(p, d, ids, skip) for p, d in files]
