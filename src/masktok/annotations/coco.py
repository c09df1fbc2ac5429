"""Readers for COCO instance JSON and COCO panoptic (JSON + RGB id PNGs).

Polygons are rasterised and RLE decoded exactly as pycocotools does (``COCO.annToRLE``), so the
masks are bit-identical to the ones COCOeval scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from masktok.annotations.records import (
    AnnotationError,
    ImageAnnotations,
    Instance,
    load_json,
    require_int,
)
from masktok.masks.boxes import rle_to_box
from masktok.masks.png import read_panoptic_png
from masktok.masks.polygons import polygons_to_rle
from masktok.masks.rle import check_rle, mask_to_rle, rle_area

__all__ = ["CocoInstancesIndex", "coco_instances_from_data", "read_coco_instances", "read_coco_panoptic",
           "read_coco_categories"]


def _top_level(path: Path, data: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(data, dict):
        raise AnnotationError(path, "file", f"expected a JSON object with {list(keys)}, got "
                              f"{type(data).__name__}")
    for key in keys:
        if not isinstance(data.get(key), list):
            raise AnnotationError(path, "file", f"missing or non-list '{key}'")


def _read_images(path: Path, data: dict) -> dict[int, dict]:
    images: dict[int, dict] = {}
    for i, rec in enumerate(data["images"]):
        where = f"image #{i}" + (f" id={rec.get('id')}" if isinstance(rec, dict) else "")
        try:
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            image_id = require_int(rec.get("id"), "id")
            require_int(rec.get("height"), "height", positive=True)
            require_int(rec.get("width"), "width", positive=True)
            if not isinstance(rec.get("file_name"), str) or not rec["file_name"]:
                raise ValueError("file_name must be a non-empty string")
        except ValueError as exc:
            raise AnnotationError(path, where, str(exc)) from None
        if image_id in images:
            raise AnnotationError(path, where, "duplicate image id")
        images[image_id] = rec
    return images


def _read_category_names(path: Path, data: dict) -> dict[int, str]:
    names: dict[int, str] = {}
    for i, rec in enumerate(data["categories"]):
        where = f"category #{i}"
        try:
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            cid = require_int(rec.get("id"), "id")
            if not isinstance(rec.get("name"), str):
                raise ValueError("name must be a string")
        except ValueError as exc:
            raise AnnotationError(path, where, str(exc)) from None
        if cid in names:
            raise AnnotationError(path, f"{where} id={cid}", "duplicate category id")
        names[cid] = rec["name"]
    return names


def read_coco_categories(path: str | Path) -> dict[int, str]:
    """COCO (instances or panoptic) JSON → ``{category_id: name}``."""
    path = Path(path)
    data = load_json(path)
    _top_level(path, data, ("categories",))
    return _read_category_names(path, data)


def _segmentation_rle(seg: Any, height: int, width: int) -> dict:
    if isinstance(seg, list):
        return polygons_to_rle(seg, height, width, name="segmentation")
    if isinstance(seg, dict):
        checked = check_rle(seg, size=(height, width), name="segmentation")
        return {"size": checked["size"], "counts": checked["counts"].decode("ascii")}
    raise ValueError(f"segmentation must be polygons (list) or RLE (dict), got "
                     f"{type(seg).__name__}")


class CocoInstancesIndex:
    """A COCO instance file (``instances_*.json``) read once; masks are made only for the
    annotations asked for (a RefCOCO split refers to a fraction of COCO's instances).

    ``data`` is the file already parsed (``path`` then only names it in errors).

    Ids are checked when the file is read (unknown image or category, duplicate annotation id);
    an annotation's segmentation, ``iscrowd`` and ``area`` when :meth:`instance` converts it.

    Attributes:
        path: the file.
        images: image records by id (``file_name``, ``height``, ``width`` checked).
        category_names: ``{category_id: name}``.
        records: annotation records by id, in file order.
    """

    def __init__(self, path: str | Path, *, data: Any = None) -> None:
        self.path = Path(path)
        if data is None:
            data = load_json(self.path)
        _top_level(self.path, data, ("images", "annotations", "categories"))
        self.images = _read_images(self.path, data)
        self.category_names = _read_category_names(self.path, data)
        self.records: dict[int, dict] = {}
        self._where: dict[int, str] = {}
        self._by_image: dict[int, list[int]] = {i: [] for i in self.images}
        for i, rec in enumerate(data["annotations"]):
            where = f"annotation #{i}" + (f" id={rec.get('id')}" if isinstance(rec, dict) else "")
            try:
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
                ann_id = require_int(rec.get("id"), "id")
                image_id = require_int(rec.get("image_id"), "image_id")
                category_id = require_int(rec.get("category_id"), "category_id")
                if image_id not in self.images:
                    raise ValueError(f"image_id {image_id} is not in 'images'")
                if category_id not in self.category_names:
                    raise ValueError(f"category_id {category_id} is not in 'categories'")
                if ann_id in self.records:
                    raise ValueError("duplicate annotation id")
            except ValueError as exc:
                raise AnnotationError(self.path, where, str(exc)) from None
            self.records[ann_id] = rec
            self._where[ann_id] = where
            self._by_image[image_id].append(ann_id)

    def annotation_ids(self, image_id: int) -> list[int]:
        """The annotation ids of image ``image_id``, in file order."""
        return list(self._by_image[image_id])

    def instance(self, ann_id: int) -> Instance:
        """Annotation ``ann_id`` as an :class:`Instance` (its mask converted now).

        Raises:
            KeyError: no such annotation.
            AnnotationError: polygons with < 3 points or outside the image, RLE whose size
                disagrees with the image, no segmentation, a bad ``iscrowd`` or ``area``.
        """
        rec = self.records[ann_id]
        try:
            if "segmentation" not in rec:
                raise ValueError("no 'segmentation'")
            iscrowd = rec.get("iscrowd", 0)
            if iscrowd not in (0, 1) or isinstance(iscrowd, float):
                raise ValueError(f"iscrowd must be 0 or 1, got {iscrowd!r}")
            img = self.images[rec["image_id"]]
            rle = _segmentation_rle(rec["segmentation"], img["height"], img["width"])
            area = rec.get("area")
            if area is None:
                area = float(rle_area(rle))
            elif isinstance(area, bool) or not isinstance(area, (int, float)) or not \
                    np.isfinite(area) or area < 0:
                raise ValueError(f"area must be a non-negative number, got {area!r}")
        except ValueError as exc:
            raise AnnotationError(self.path, self._where[ann_id], str(exc)) from None
        category_id = rec["category_id"]
        return Instance(mask_rle=rle, category_id=category_id, id=ann_id, area=float(area),
                        iscrowd=bool(iscrowd), box=rle_to_box(rle), category_name=self.category_names[category_id])

    def image_annotations(self, image_id: int) -> ImageAnnotations:
        """Image ``image_id`` with every one of its instances."""
        rec = self.images[image_id]
        return ImageAnnotations(image_id=image_id, file_name=rec["file_name"], height=rec["height"],
                                width=rec["width"], instances=[self.instance(a) for a in self._by_image[image_id]])


def read_coco_instances(path: str | Path) -> list[ImageAnnotations]:
    """COCO instance annotations (``instances_*.json``) → one :class:`ImageAnnotations` per image.

    Every image of ``images`` is returned (images without annotations have no instances), in
    file order; instances keep file order. ``iscrowd`` defaults to 0 and ``area`` to the mask's
    pixel count when a record omits them.

    Raises:
        AnnotationError: (a ValueError) naming the file and the record: unknown image or
            category id, duplicate ids, polygons with < 3 points or outside the image, RLE whose
            size disagrees with the image, missing fields.
    """
    path = Path(path)
    return coco_instances_from_data(path, load_json(path))


def coco_instances_from_data(path: Path, data: Any) -> list[ImageAnnotations]:
    """:func:`read_coco_instances` on an already parsed file (``path`` names it in errors);
    readers of COCO-style formats (LVIS) share it."""
    index = CocoInstancesIndex(path, data=data)
    return [index.image_annotations(image_id) for image_id in index.images]


def read_coco_panoptic(json_path: str | Path, png_dir: str | Path) -> list[ImageAnnotations]:
    """COCO panoptic annotations → one :class:`ImageAnnotations` per annotated image.

    Args:
        json_path: ``panoptic_*.json`` with ``images``, ``annotations`` (``file_name`` of the
            PNG, ``segments_info``) and ``categories``.
        png_dir: the folder holding the RGB id PNGs (segment id = R + 256·G + 256²·B).

    Every segment becomes an :class:`Instance` (things and stuff; ``iscrowd`` as given) whose
    ``area`` is the JSON value; the id PNG's size must equal the image's.

    Raises:
        AnnotationError: naming the file and record: a segment id absent from the PNG, a PNG id
            (other than 0, void) that no segment lists, size mismatch, unknown ids.
    """
    json_path, png_dir = Path(json_path), Path(png_dir)
    data = load_json(json_path)
    _top_level(json_path, data, ("images", "annotations", "categories"))
    images = _read_images(json_path, data)
    names = _read_category_names(json_path, data)
    out = []
    for i, rec in enumerate(data["annotations"]):
        where = f"annotation #{i}" + (f" image_id={rec.get('image_id')}"
                                      if isinstance(rec, dict) else "")
        try:
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            image_id = require_int(rec.get("image_id"), "image_id")
            if image_id not in images:
                raise ValueError(f"image_id {image_id} is not in 'images'")
            if not isinstance(rec.get("file_name"), str):
                raise ValueError("file_name must be the PNG's name")
            if not isinstance(rec.get("segments_info"), list):
                raise ValueError("segments_info must be a list")
        except ValueError as exc:
            raise AnnotationError(json_path, where, str(exc)) from None
        img = images[image_id]
        png_path = png_dir / rec["file_name"]
        try:
            ids = read_panoptic_png(png_path)
        except ValueError as exc:
            raise AnnotationError(json_path, where, str(exc)) from None
        if ids.shape != (img["height"], img["width"]):
            raise AnnotationError(json_path, where, f"{png_path} is {ids.shape[0]}x{ids.shape[1]}"
                                  f" but the image is {img['height']}x{img['width']}")
        present, inverse = np.unique(ids, return_inverse=True)
        inverse = inverse.reshape(ids.shape)
        slot = {int(v): k for k, v in enumerate(present)}
        listed: set[int] = set()
        instances = []
        for j, seg in enumerate(rec["segments_info"]):
            seg_where = f"{where} segment #{j}" + (f" id={seg.get('id')}"
                                                   if isinstance(seg, dict) else "")
            try:
                if not isinstance(seg, dict):
                    raise ValueError("not an object")
                seg_id = require_int(seg.get("id"), "id", positive=True)
                category_id = require_int(seg.get("category_id"), "category_id")
                if category_id not in names:
                    raise ValueError(f"category_id {category_id} is not in 'categories'")
                if seg_id in listed:
                    raise ValueError("duplicate segment id")
                if seg_id not in slot:
                    raise ValueError(f"segment id {seg_id} does not occur in {png_path}")
                iscrowd = seg.get("iscrowd", 0)
                if iscrowd not in (0, 1) or isinstance(iscrowd, float):
                    raise ValueError(f"iscrowd must be 0 or 1, got {iscrowd!r}")
            except ValueError as exc:
                raise AnnotationError(json_path, seg_where, str(exc)) from None
            listed.add(seg_id)
            rle = mask_to_rle(inverse == slot[seg_id])
            area = seg.get("area")
            area = float(rle_area(rle)) if area is None else float(area)
            instances.append(Instance(mask_rle=rle, category_id=category_id, id=seg_id,
                                      area=area, iscrowd=bool(iscrowd), box=rle_to_box(rle),
                                      category_name=names[category_id]))
        unlisted = sorted(set(slot) - listed - {0})
        if unlisted:
            raise AnnotationError(json_path, where, f"{png_path} holds segment ids {unlisted[:5]}"
                                  " that segments_info does not list")
        out.append(ImageAnnotations(image_id=image_id, file_name=img["file_name"],
                                    height=img["height"], width=img["width"],
                                    instances=instances))
    return out
