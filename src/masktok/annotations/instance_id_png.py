"""16-bit instance-id PNGs: Cityscapes ``*_gtFine_instanceIds.png`` and Mapillary Vistas
``instances/*.png``.

Every distinct pixel value is one segment; the value encodes its label and instance:

* **Cityscapes** (``cityscapesscripts/evaluation/instance.py``): a value ≥ 1000 is
  ``label_id * 1000 + instance``; a value < 1000 is a label id alone — a region without
  instances (stuff, or a crowd of a thing class such as "car group").
* **Mapillary Vistas** (``mapillary_vistas/evaluation/evaluation.py``): ``label_id * 256 +
  instance`` for every value.

Both readers return one :class:`~masktok.annotations.Instance` per segment (``id`` = the raw
pixel value, ``category_id`` = the label id; Cityscapes values < 1000 of a label with instances
are ``iscrowd``), in increasing value order, leaving out the label ids in ``ignore`` (default:
Cityscapes 0 "unlabeled"; nothing for Mapillary, whose "unlabeled" id depends on the version).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from masktok.annotations.records import AnnotationError, ImageAnnotations, Instance
from masktok.masks.boxes import rle_to_box
from masktok.masks.rle import mask_to_rle

__all__ = ["read_cityscapes_instance_png", "read_mapillary_instance_png", "cityscapes_label_names"]

CITYSCAPES_STRIDE = 1000
MAPILLARY_STRIDE = 256


def _ids(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise AnnotationError(path, "file", f"expected a 16-bit instance-id PNG, got mode {img.mode}"
                                      " (an 8-bit file holds labels only, no instances)")
            ids = np.asarray(img).astype(np.int64)
    except OSError as exc:
        raise AnnotationError(path, "file", f"not a readable image ({exc})") from None
    if ids.size and (ids.min() < 0 or ids.max() > 65535):
        raise AnnotationError(path, "file", f"ids outside 0..65535 (found {ids.min()}..{ids.max()})")
    return ids


def cityscapes_label_names() -> dict[int, tuple[str, bool]]:
    """``{label_id: (name, has_instances)}`` from ``cityscapesscripts`` when it is installed, else
    ``{}`` (the readers then leave ``category_name`` empty)."""
    try:
        from cityscapesscripts.helpers.labels import labels
    except ImportError:
        return {}
    return {int(lab.id): (str(lab.name), bool(lab.hasInstances)) for lab in labels if lab.id >= 0}


def _segments(path: Path, ids: np.ndarray, stride: int, small_is_label: bool,
              labels: dict[int, tuple[str, bool]], ignore: set[int]) -> ImageAnnotations:
    values, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(ids.shape)
    instances = []
    for k, value in enumerate(values.tolist()):
        if small_is_label and value < stride:
            label, crowd = value, labels.get(value, ("", False))[1]
        else:
            label, crowd = value // stride, False
        if label in ignore:
            continue
        mask = inverse == k
        rle = mask_to_rle(mask)
        name = labels.get(label, (None, False))[0]
        instances.append(Instance(mask_rle=rle, category_id=label, id=value, area=float(mask.sum()),
                                  iscrowd=crowd, box=rle_to_box(rle), category_name=name))
    stem = path.name[:-len(".png")] if path.name.endswith(".png") else path.stem
    return ImageAnnotations(image_id=stem, file_name=path.name, height=ids.shape[0], width=ids.shape[1],
                            instances=instances)


def _label_table(labels: dict[int, str] | dict[int, tuple[str, bool]] | None,
                 default: dict[int, tuple[str, bool]]) -> dict[int, tuple[str, bool]]:
    if labels is None:
        return default
    return {int(k): (v if isinstance(v, tuple) else (str(v), False)) for k, v in labels.items()}


def read_cityscapes_instance_png(path: str | Path, *,
                                 labels: dict[int, str] | dict[int, tuple[str, bool]] | None = None,
                                 ignore: Iterable[int] = (0,)) -> ImageAnnotations:
    """A Cityscapes ``*_gtFine_instanceIds.png`` → one instance per pixel value (see the module
    docstring). ``labels``: ``{label_id: name}`` or ``{label_id: (name, has_instances)}``; default
    the Cityscapes table of ``cityscapesscripts`` when installed (a value < 1000 of a label with
    instances is a crowd region)."""
    path = Path(path)
    return _segments(path, _ids(path), CITYSCAPES_STRIDE, True,
                     _label_table(labels, cityscapes_label_names()), set(ignore))


def read_mapillary_instance_png(path: str | Path, *, labels: dict[int, str] | None = None,
                                ignore: Iterable[int] = ()) -> ImageAnnotations:
    """A Mapillary Vistas ``instances/*.png`` → one instance per pixel value ``label * 256 +
    instance``. ``labels``: ``{label_id: name}`` (the order of ``labels`` in the release's
    ``config.json``); ``ignore``: label ids to leave out (e.g. the version's "unlabeled")."""
    path = Path(path)
    return _segments(path, _ids(path), MAPILLARY_STRIDE, False, _label_table(labels, {}), set(ignore))
