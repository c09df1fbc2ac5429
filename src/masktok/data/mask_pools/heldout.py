"""The held-out split of the COCO 2017 masks and the tokenizer evaluation sets built from it.

Split: an image of ``coco2017_masks/`` (both files) is *held out* when the first 8 hex digits of
``sha256("coco2017:<image id>")``, read as an integer, are divisible by 8 (215 of 1,707 images,
822 of 6,263 masks); held-out images are never trained on. Training sources
(:func:`training_sources`, filtered by ``scripts/pack_training_masks.py``): the other COCO 2017
images, the coco128 YOLO polygons of images that are neither in the COCO 2017 files (those are
there as exact polygons) nor in ``coco_val2014_100``, the COCO panoptic sample, the labelme VOC
polygons and the referring-segmentation PNGs.

coco128 overlaps the evaluation images: 43 of the 100 ``coco_val2014_100`` images and 10 of the
held-out COCO 2017 images are coco128 images, and the first shipped tokenizer (masktok-box-v1)
was trained on all coco128 polygons. Sets marked *unseen* leave those images out
(:func:`coco128_image_ids`).

Evaluation sets (:func:`evaluation_sets`), each a list of :class:`EvalImage` (masks as RLE):

``coco_val2014_100``         its 839 GT masks at their image size (830 polygons, 9 crowd RLEs).
``coco_val2014_100_unseen``  the same for its 57 images that are not coco128 images.
``coco2017_heldout``         every mask of the held-out images that are not coco128 images, at
                             their image size (crowd included).
``scaled_2k_4k``             their *polygon* masks, the image scaled so that its long side is
                             L = 2000 + (h mod 2001) px, h = int(sha256("scale:<image id>")[:8], 16):
                             coordinates × L / long side, canvas round(H·s) × round(W·s).
``canvas_2k_4k``             the same canvas sizes, but the polygons at their own scale, shifted
                             by (oy, ox) = (h2 mod (H' − H + 1), h3 mod (W' − W + 1)) with h2, h3
                             from ``sha256("row:<id>")`` / ``("col:<id>")``: an image of COCO size
                             that is one part of a 2–4K photo, so its objects are 3–6× smaller
                             relative to the image.
``thin_sparse``              masks of ``coco_val2014_100_unseen`` and ``coco2017_heldout`` whose
                             tight box is < 20 % filled, plus the union of all instances of one
                             category in one held-out COCO 2017 image (≥ 2 of them, crowd regions
                             left out) when that union's box is < 20 % filled.

All of it is deterministic: the same files give the same sets on any machine.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask

from masktok.annotations import read_coco_instances
from masktok.annotations.records import load_json

COCO2017_FILES = ("coco2017_masks/coco_val2017_masks.json.gz", "coco2017_masks/coco_train2017_masks.json.gz")
VAL2014_FILE = "coco_val2014_100/instances_val2014_100.json"
HELD_OUT_MODULUS = 8
THIN_FILL = 0.2
LARGE_SIDES = (2000, 4000)
COCO128_LABELS = "coco128_seg/labels/train2017"
SET_NAMES = ("coco_val2014_100", "coco_val2014_100_unseen", "coco2017_heldout", "scaled_2k_4k", "canvas_2k_4k",
             "thin_sparse")


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def is_held_out(image_id: int) -> bool:
    """Whether a COCO 2017 image belongs to the held-out split (see the module docstring)."""
    return _hash(f"coco2017:{image_id}") % HELD_OUT_MODULUS == 0


@dataclass(frozen=True)
class EvalImage:
    """Masks of one evaluation image.

    Attributes:
        name: ``"<file>|image <id>"`` plus the set's variant.
        height, width: image size.
        rles: compressed COCO RLEs of the masks, all non-empty.
        labels: one name per mask (``"instance <id>"`` or ``"category <id> union"``).
    """

    name: str
    height: int
    width: int
    rles: tuple[dict, ...]
    labels: tuple[str, ...]

    def masks(self) -> np.ndarray:
        """(N, H, W) bool."""
        from masktok.masks.rle import decode_checked

        return decode_checked(list(self.rles)).astype(bool).transpose(2, 0, 1)


def coco128_image_ids(root: Path) -> set[int]:
    """Ids of the coco128 images (their label files are named by image id)."""
    folder = root / COCO128_LABELS
    if not folder.is_dir():
        raise FileNotFoundError(f"coco128 labels not found: {folder}")
    return {int(path.stem) for path in folder.glob("*.txt")}


def val2014_image_ids(root: Path) -> set[int]:
    """Ids of the ``coco_val2014_100`` images."""
    return {img.image_id for img in read_coco_instances(root / VAL2014_FILE)}


def coco2017_files(root: Path) -> list[Path]:
    files = [root / name for name in COCO2017_FILES]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"COCO 2017 mask files not found: {missing}")
    return files


def coco2017_image_ids(root: Path) -> set[int]:
    """Ids of every image in the COCO 2017 mask files."""
    return {img.image_id for path in coco2017_files(root) for img in read_coco_instances(path)}


def training_sources(root: Path) -> list[str]:
    """Source specs (:func:`masktok.data.mask_pools.sources.load_source`) of the training masks; the
    COCO 2017 ones must be filtered by :func:`is_held_out` and the coco128 ones by image id
    (``scripts/pack_training_masks.py``)."""
    return [f"coco:{path},crowd=include" for path in coco2017_files(root)] + [
        f"yolo:{root}/coco128_seg/images/train2017,{root}/coco128_seg/labels/train2017,orphans=ignore",
        f"panoptic:{root}/coco_panoptic_sample/panoptic_examples.json,{root}/coco_panoptic_sample/panoptic_examples,"
        f"{root}/coco_panoptic_sample/input_images,crowd=include",
        f"labelme:{root}/voc_labelme/data_annotated",
        f"mask_png:{root}/refseg_examples/masks",
    ]


def _image_id(record) -> str:
    return record.image_key.rsplit(":", 1)[1]


def training_records(root: Path) -> tuple[list, dict[str, int]]:
    """The training masks (:class:`~masktok.data.mask_pools.sources.MaskRecord` list) of
    :func:`training_sources`, filtered as the module docstring says, and how many each source gave."""
    from masktok.data.mask_pools.sources import load_source

    elsewhere = {str(i) for i in coco2017_image_ids(root) | val2014_image_ids(root)}
    records, counts = [], {}
    for spec in training_sources(root):
        kind = spec.split(":", 1)[0]
        found = load_source(spec)
        if kind == "coco":
            found = [r for r in found if not is_held_out(int(_image_id(r)))]
        elif kind == "yolo":  # coco128 images in the COCO 2017 files come from there; val2014 ones stay out
            found = [r for r in found if str(int(Path(_image_id(r)).name)) not in elsewhere]
        name = f"{kind}:{Path(spec.split(':', 1)[1].split(',')[0]).name}"
        counts[name] = counts.get(name, 0) + len(found)
        records.extend(found)
    return records, counts


def heldout_records(root: Path) -> list:
    """Every mask of the held-out COCO 2017 images (crowd included), as mask records."""
    from masktok.data.mask_pools.sources import coco_instance_records

    return [r for path in coco2017_files(root) for r in coco_instance_records(path, include_crowd=True)
            if is_held_out(int(_image_id(r)))]


def _raw_polygons(path: Path) -> dict[int, tuple[int, int, list]]:
    """annotation id → (image id, category id, polygons) for polygon annotations (crowd RLEs left out)."""
    data = load_json(path)
    return {ann["id"]: (ann["image_id"], ann["category_id"], ann["segmentation"])
            for ann in data["annotations"]
            if isinstance(ann["segmentation"], list) and not ann.get("iscrowd", 0)}


def _fill(rle: dict) -> float:
    x, y, w, h = coco_mask.toBbox(rle)
    return float(coco_mask.area(rle)) / max(float(w * h), 1.0)


def _native(path: Path, images, tag: str) -> list[EvalImage]:
    out = []
    for img in images:
        if not img.instances:
            continue
        out.append(EvalImage(name=f"{path.name}|image {img.image_id}{tag}", height=img.height, width=img.width,
                             rles=tuple(inst.mask_rle for inst in img.instances),
                             labels=tuple(f"instance {inst.id}" for inst in img.instances)))
    return out


def _large(path: Path, images, polygons: dict, embed: bool) -> list[EvalImage]:
    """Held-out polygons on 2–4K canvases: the image scaled (embed=False) or placed at its own
    scale inside the canvas (embed=True)."""
    by_image: dict[int, list[tuple[int, list]]] = {}
    for ann_id, (image_id, _, polys) in sorted(polygons.items()):
        by_image.setdefault(image_id, []).append((ann_id, polys))
    out = []
    low, high = LARGE_SIDES
    for img in images:
        anns = by_image.get(img.image_id)
        if not anns:
            continue
        side = low + _hash(f"scale:{img.image_id}") % (high - low + 1)
        scale = side / max(img.height, img.width)
        height, width = round(img.height * scale), round(img.width * scale)
        if embed:
            oy = _hash(f"row:{img.image_id}") % (height - img.height + 1)
            ox = _hash(f"col:{img.image_id}") % (width - img.width + 1)
            shift = lambda poly: [v + (ox if k % 2 == 0 else oy) for k, v in enumerate(poly)]  # noqa: E731
        else:
            shift = lambda poly: [v * scale for v in poly]  # noqa: E731
        rles, labels = [], []
        for ann_id, polys in anns:
            rle = coco_mask.merge(coco_mask.frPyObjects([shift(p) for p in polys], height, width))
            if coco_mask.area(rle) == 0:
                raise ValueError(f"{path}: annotation {ann_id} rasterises to an empty mask on {height}×{width}")
            rle["counts"] = rle["counts"].decode("ascii")
            rles.append(rle)
            labels.append(f"instance {ann_id}")
        variant = f" on {height}×{width}" + (f" at ({oy}, {ox})" if embed else " scaled")
        out.append(EvalImage(name=f"{path.name}|image {img.image_id}{variant}", height=height, width=width,
                             rles=tuple(rles), labels=tuple(labels)))
    return out


def _thin(path: Path, images, polygons: dict | None) -> list[EvalImage]:
    """Masks with a box < 20 % filled, and (with ``polygons``) sparse same-category unions."""
    out = []
    for img in images:
        rles, labels = [], []
        for inst in img.instances:
            rle = {"size": inst.mask_rle["size"], "counts": inst.mask_rle["counts"].encode("ascii")}
            if _fill(rle) < THIN_FILL:
                rles.append(inst.mask_rle)
                labels.append(f"instance {inst.id}")
        if polygons is not None:
            groups: dict[int, list] = {}
            for inst in img.instances:
                if inst.id in polygons:
                    groups.setdefault(inst.category_id, []).append(inst.mask_rle)
            for category, members in sorted(groups.items()):
                if len(members) < 2:
                    continue
                union = coco_mask.merge([{"size": m["size"], "counts": m["counts"].encode("ascii")} for m in members])
                if _fill(union) < THIN_FILL:
                    rles.append({"size": union["size"], "counts": union["counts"].decode("ascii")})
                    labels.append(f"category {category} union of {len(members)}")
        if rles:
            out.append(EvalImage(name=f"{path.name}|image {img.image_id} thin", height=img.height,
                                 width=img.width, rles=tuple(rles), labels=tuple(labels)))
    return out


def evaluation_sets(root: str | Path, names: tuple[str, ...] = SET_NAMES) -> dict[str, list[EvalImage]]:
    """The evaluation sets of the module docstring, built from the data folder ``root``.

    Only the files the asked sets need are read: ``coco_val2014_100`` needs
    ``coco_val2014_100/`` alone; the others need ``coco128_seg/`` labels and, but for the unseen
    ``coco_val2014_100`` images, ``coco2017_masks/``.
    """
    root = Path(root)
    unknown = sorted(set(names) - set(SET_NAMES))
    if unknown:
        raise ValueError(f"unknown evaluation sets {unknown}; known: {list(SET_NAMES)}")
    val_path = root / VAL2014_FILE
    if not val_path.is_file():
        raise FileNotFoundError(f"coco_val2014_100 annotations not found: {val_path}")
    val_images = read_coco_instances(val_path)
    seen = coco128_image_ids(root) if set(names) - {"coco_val2014_100"} else set()
    unseen_val = [img for img in val_images if img.image_id not in seen]
    held = []
    if set(names) - {"coco_val2014_100", "coco_val2014_100_unseen"}:
        for path in coco2017_files(root):
            images = [img for img in read_coco_instances(path) if is_held_out(img.image_id) and img.image_id not in seen]
            held.append((path, images, _raw_polygons(path)))
    sets: dict[str, list[EvalImage]] = {}
    for name in names:
        if name == "coco_val2014_100":
            sets[name] = _native(val_path, val_images, "")
        elif name == "coco_val2014_100_unseen":
            sets[name] = _native(val_path, unseen_val, "")
        elif name == "coco2017_heldout":
            sets[name] = [e for path, images, _ in held for e in _native(path, images, "")]
        elif name in ("scaled_2k_4k", "canvas_2k_4k"):
            sets[name] = [e for path, images, polys in held
                          for e in _large(path, images, polys, embed=name == "canvas_2k_4k")]
        else:
            sets[name] = _thin(val_path, unseen_val, None) + [
                e for path, images, polys in held for e in _thin(path, images, polys)]
    return sets
