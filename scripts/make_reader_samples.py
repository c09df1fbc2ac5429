"""Build the small annotation samples in ``tests/data/`` from real COCO masks.

ADE20K, Cityscapes and Mapillary Vistas annotations cannot be redistributed under masktok's
licence, and no LVIS file is reachable offline, so the samples are written *pixel-exactly in each
dataset's documented encoding* from the instance masks of ``../shared/data/coco_val2014_100``
(COCO annotations, CC BY 4.0). The tests then check masktok's readers against each dataset's own
decoding of these files. Run from the repository root::

    python scripts/make_reader_samples.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from masktok.annotations import read_coco_instances

OUT = Path("tests/data")
ADE_IMAGE, CITYSCAPES_IMAGE, LVIS_IMAGES = 641, 257, (641, 923)
# ADE20K class indices (``name_ndx``) of the COCO categories used; others get 3000 + COCO id
ADE_CLASSES = {"person": (1831, "person, individual, someone, somebody, mortal, soul"),
               "bicycle": (226, "bicycle, bike, wheel, cycle"), "bus": (380, "bus, autobus, coach")}
CITYSCAPES_LABELS = {"person": 24, "car": 26, "truck": 27, "bus": 28, "bicycle": 33, "traffic light": 19}
MAPILLARY_LABELS = {"person": 19, "car": 55, "truck": 61, "bus": 54, "bicycle": 52, "traffic light": 48}


def objects_back_to_front(image) -> list:
    """Non-crowd instances, largest first (a larger object is drawn behind smaller ones)."""
    return sorted([i for i in image.instances if not i.iscrowd], key=lambda i: -float(i.mask().sum()))


def write_ade20k(image, out: Path) -> None:
    name = f"ADE_sample_{image.image_id:08d}"
    objs = objects_back_to_front(image)
    h, w = image.height, image.width
    seg = np.zeros((h, w, 3), dtype=np.uint8)
    masks = [o.mask() for o in objs]
    (out / name).mkdir(parents=True, exist_ok=True)
    records = []
    for k, (obj, mask) in enumerate(zip(objs, masks)):
        index, full_name = ADE_CLASSES.get(obj.category_name, (3000 + obj.category_id, obj.category_name))
        front = np.zeros((h, w), bool)
        for later in masks[k + 1:]:
            front |= later
        visible, occluded = mask & ~front, mask & front
        seg[visible] = ((index // 256) * 10, index % 256, 5 * (k + 1))
        png = np.where(visible, 255, np.where(occluded, 128, 0)).astype(np.uint8)
        rel = f"{name}/instance_{k:03d}_{name}.png"
        Image.fromarray(png, mode="L").save(out / rel)
        records.append({"id": k, "name": full_name, "name_ndx": index, "raw_name": obj.category_name,
                        "occluded": "yes" if occluded.any() else "no", "crop": "0",
                        "parts": {"hasparts": [], "ispartof": [], "part_level": 0},
                        "instance_mask": rel, "coco_annotation_id": obj.id})
    # parts of the largest object: its upper and lower halves (level 1)
    parent, parent_mask = records[0], masks[0]
    rows = np.flatnonzero(parent_mask.any(axis=1))
    middle = (rows[0] + rows[-1] + 1) // 2
    parts_png = np.zeros((h, w, 3), dtype=np.uint8)
    parent_png = np.asarray(Image.open(out / parent["instance_mask"]))
    for j, (part_name, part_index, rows_slice) in enumerate(
            (("upper part", 2600, slice(0, middle)), ("lower part", 2601, slice(middle, h)))):
        part = np.zeros((h, w), bool)
        part[rows_slice] = parent_mask[rows_slice]
        k = len(records)
        png = np.where(part, parent_png, 0).astype(np.uint8)
        parts_png[png == 255] = ((part_index // 256) * 10, part_index % 256, 5 * (j + 1))
        rel = f"{name}/instance_{k:03d}_{name}.png"
        Image.fromarray(png, mode="L").save(out / rel)
        parent["parts"]["hasparts"].append(k)
        records.append({"id": k, "name": part_name, "name_ndx": part_index, "raw_name": part_name,
                        "occluded": "yes" if (png == 128).any() else "no", "crop": "0",
                        "parts": {"hasparts": [], "ispartof": parent["id"], "part_level": 1},
                        "instance_mask": rel})
    Image.fromarray(seg, mode="RGB").save(out / f"{name}_seg.png")
    Image.fromarray(parts_png, mode="RGB").save(out / f"{name}_parts_1.png")
    (out / f"{name}.json").write_text(json.dumps({"annotation": {
        "filename": f"{name}.jpg", "folder": "sample", "imsize": [h, w, 3],
        "source": {"coco_image_id": image.image_id}, "object": records}}, indent=1))


def instance_png(image, labels: dict[str, int], stride: int, crowd_as_label: bool) -> np.ndarray:
    """16-bit ids: ``label * stride + k`` per instance (k from 0 per label), crowd regions as the
    bare label (Cityscapes); larger objects drawn first."""
    ids = np.zeros((image.height, image.width), dtype=np.uint16)
    counters: dict[int, int] = {}
    crowds = [i for i in image.instances if i.iscrowd]
    for obj in objects_back_to_front(image) + crowds:
        label = labels.get(obj.category_name)
        if label is None:
            continue
        if obj.iscrowd and crowd_as_label:
            ids[obj.mask()] = label
            continue
        k = counters.get(label, 0)
        counters[label] = k + 1
        ids[obj.mask()] = label * stride + k
    return ids


def write_lvis(images, out: Path) -> None:
    cats = {i.category_id: i.category_name for im in images for i in im.instances}
    categories = [{"id": cid, "name": name.replace(" ", "_"), "synset": f"{name.replace(' ', '_')}.n.01",
                   "frequency": "f", "synonyms": [name.replace(" ", "_")]} for cid, name in sorted(cats.items())]
    annotations, records = [], []
    for im in images:
        present = {i.category_id for i in im.instances}
        records.append({"id": im.image_id, "height": im.height, "width": im.width,
                        "coco_url": f"http://images.cocodataset.org/val2014/{im.file_name}",
                        "neg_category_ids": sorted(set(cats) - present)[:2],
                        "not_exhaustive_category_ids": sorted(present)[:1]})
    raw = json.loads((SHARED / "coco_val2014_100" / "instances_val2014_100.json").read_text())
    keep = {im.image_id for im in images}
    for ann in raw["annotations"]:
        if ann["image_id"] in keep and not ann["iscrowd"]:
            annotations.append({k: ann[k] for k in ("id", "image_id", "category_id", "segmentation",
                                                     "area", "bbox")})
    (out / "lvis_v1_sample.json").write_text(json.dumps(
        {"info": {"description": "LVIS v1 layout built from COCO val2014 annotations (CC BY 4.0)"},
         "images": records, "annotations": annotations, "categories": categories}))


def main() -> None:
    global SHARED
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    SHARED = args.shared
    images = {im.image_id: im for im in
              read_coco_instances(SHARED / "coco_val2014_100" / "instances_val2014_100.json")}
    write_ade20k(images[ADE_IMAGE], OUT / "ade20k")
    (OUT / "cityscapes").mkdir(parents=True, exist_ok=True)
    (OUT / "mapillary").mkdir(parents=True, exist_ok=True)
    city = images[CITYSCAPES_IMAGE]
    Image.fromarray(instance_png(city, CITYSCAPES_LABELS, 1000, True)).save(
        OUT / "cityscapes" / f"coco_{city.image_id}_gtFine_instanceIds.png")
    Image.fromarray(instance_png(city, MAPILLARY_LABELS, 256, False)).save(
        OUT / "mapillary" / f"coco_{city.image_id}.png")
    (OUT / "lvis").mkdir(parents=True, exist_ok=True)
    write_lvis([images[i] for i in LVIS_IMAGES], OUT / "lvis")


SHARED = Path("../shared/data")

if __name__ == "__main__":
    main()
