"""Datasets in other layouts built from the real COCO data in ``tests/data`` (for tests of the
readers and pipelines of those layouts that do not need a particular dataset)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

COCO = Path(__file__).resolve().parent / "data" / "coco_val2014_100"
COCO_JSON = COCO / "instances_val2014_100.json"


def coco_images_on_disk() -> list[dict]:
    """The COCO image records whose photo is in ``tests/data`` and that have a polygon instance."""
    data = json.loads(COCO_JSON.read_text())
    present = {p.name for p in (COCO / "images").iterdir()}
    with_polygons = {a["image_id"] for a in data["annotations"]
                     if not a["iscrowd"] and isinstance(a["segmentation"], list)}
    return [i for i in sorted(data["images"], key=lambda i: i["file_name"])
            if i["file_name"] in present and i["id"] in with_polygons]


def yolo_from_coco(dest: Path, count: int) -> tuple[Path, Path, list[str]]:
    """A YOLO-seg folder of ``count`` images (the photos in ``tests/data``, cycled under new names
    when ``count`` exceeds them): each COCO polygon ring becomes a label line with normalised
    coordinates and the class index of its category. → (images dir, labels dir, class names)."""
    data = json.loads(COCO_JSON.read_text())
    categories = sorted(data["categories"], key=lambda c: c["id"])
    index = {c["id"]: k for k, c in enumerate(categories)}
    images = coco_images_on_disk()
    (dest / "images").mkdir(parents=True)
    (dest / "labels").mkdir(parents=True)
    for k in range(count):
        image = images[k % len(images)]
        stem = f"{k:03d}_{Path(image['file_name']).stem}"
        (dest / "images" / f"{stem}.jpg").symlink_to(COCO / "images" / image["file_name"])
        lines = []
        for ann in data["annotations"]:
            if ann["image_id"] != image["id"] or ann["iscrowd"] or not isinstance(ann["segmentation"], list):
                continue
            for ring in ann["segmentation"]:
                if len(ring) < 6:
                    continue
                coords = [min(max(v / (image["width"] if i % 2 == 0 else image["height"]), 0.0), 1.0)
                          for i, v in enumerate(ring)]
                lines.append(" ".join([str(index[ann["category_id"]]), *(f"{c:.6f}" for c in coords)]))
        (dest / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return dest / "images", dest / "labels", [c["name"] for c in categories]


def stand_in_images(annotations: Path, dest: Path) -> Path:
    """Grey JPEGs with the sizes a COCO-style JSON records, for data whose photos may not be
    redistributed (the panoptic sample's): the masks stay real, the pixels stand in."""
    dest.mkdir(parents=True, exist_ok=True)
    for image in json.loads(Path(annotations).read_text())["images"]:
        Image.new("RGB", (image["width"], image["height"]), (128, 128, 128)).save(dest / image["file_name"])
    return dest
