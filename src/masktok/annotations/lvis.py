"""LVIS annotations (``lvis_v1_{train,val}.json``, and v0.5).

LVIS is COCO-style JSON (polygon or RLE ``segmentation``, ``bbox``, ``area``; no ``iscrowd``) with
more per image and per category:

* images: ``coco_url`` (v1 has no ``file_name``: the image is ``<split>/<name>`` of its URL, e.g.
  ``val2017/000000397133.jpg``), ``neg_category_ids`` (categories verified absent) and
  ``not_exhaustive_category_ids`` (categories whose instances are not all annotated);
* categories: ``name``, ``synset``, ``frequency`` (``r`` rare, ``c`` common, ``f`` frequent).

Masks are rasterised exactly as the LVIS API does (``lvis/lvis.py``, ``ann_to_rle`` →
pycocotools ``frPyObjects`` + ``merge``), through :mod:`masktok.annotations.coco`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masktok.annotations.coco import coco_instances_from_data
from masktok.annotations.records import AnnotationError, ImageAnnotations, load_json

__all__ = ["LVISCategory", "LVISDataset", "read_lvis"]

FREQUENCIES = ("r", "c", "f")


@dataclass(frozen=True)
class LVISCategory:
    """One LVIS category."""

    id: int
    name: str
    synset: str | None
    frequency: str | None


@dataclass
class LVISDataset:
    """LVIS images (instances as in every masktok reader) plus what LVIS adds.

    Attributes:
        images: one :class:`ImageAnnotations` per image of the file, in file order.
        categories: ``{category_id: LVISCategory}``.
        negative_category_ids: ``{image_id: [category ids verified absent]}``.
        not_exhaustive_category_ids: ``{image_id: [category ids not fully annotated]}``.
    """

    images: list[ImageAnnotations]
    categories: dict[int, LVISCategory]
    negative_category_ids: dict[int, list[int]]
    not_exhaustive_category_ids: dict[int, list[int]]


def _file_name(image: dict) -> str:
    if isinstance(image.get("file_name"), str) and image["file_name"]:
        return image["file_name"]
    url = image.get("coco_url")
    if not isinstance(url, str) or "/" not in url:
        raise ValueError("needs 'file_name' or a 'coco_url'")
    return "/".join(url.rstrip("/").split("/")[-2:])


def _id_list(image: dict, key: str, categories: dict[int, Any]) -> list[int]:
    ids = image.get(key, [])
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"{key!r} must be a list of category ids")
    unknown = [i for i in ids if i not in categories]
    if unknown:
        raise ValueError(f"{key!r} names unknown category ids {unknown[:5]}")
    return list(ids)


def read_lvis(path: str | Path) -> LVISDataset:
    """An LVIS JSON → :class:`LVISDataset`. Malformed records are an :class:`AnnotationError`
    naming the file and the record (see :func:`masktok.annotations.read_coco_instances`)."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("categories"), list):
        raise AnnotationError(path, "file", "not an LVIS file (needs images, annotations, categories)")
    categories: dict[int, LVISCategory] = {}
    for k, cat in enumerate(data["categories"]):
        freq = cat.get("frequency") if isinstance(cat, dict) else None
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or freq not in (*FREQUENCIES, None):
            raise AnnotationError(path, f"category #{k}", "needs an integer 'id' and 'frequency' in r, c, f")
        categories[cat["id"]] = LVISCategory(cat["id"], str(cat.get("name", "")), cat.get("synset"), freq)
    negatives: dict[int, list[int]] = {}
    not_exhaustive: dict[int, list[int]] = {}
    images = []
    for k, image in enumerate(data["images"]):
        where = f"image #{k}" + (f" id={image.get('id')}" if isinstance(image, dict) else "")
        try:
            if not isinstance(image, dict):
                raise ValueError("not an object")
            image = {**image, "file_name": _file_name(image)}
            negatives[image.get("id")] = _id_list(image, "neg_category_ids", categories)
            not_exhaustive[image.get("id")] = _id_list(image, "not_exhaustive_category_ids", categories)
        except ValueError as exc:
            raise AnnotationError(path, where, str(exc)) from None
        images.append(image)
    parsed = coco_instances_from_data(path, {**data, "images": images})
    return LVISDataset(images=parsed, categories=categories, negative_category_ids=negatives,
                       not_exhaustive_category_ids=not_exhaustive)
