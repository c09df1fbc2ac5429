"""Annotation readers on real data: ``tests/data`` (COCO, panoptic) and the fetched GPL-3.0
coco128-seg and labelme examples (``scripts/fetch_test_data.py``).

Area tolerance for COCO (decided from what pycocotools itself produces on this file): our masks
are bit-identical to ``pycocotools.coco.COCO.annToMask``, so their pixel counts equal
pycocotools' own areas exactly. The JSON ``area`` is a different quantity:

* polygons: the JSON holds the polygon's geometric area; pycocotools' rasterisation differs from
  it by at most 0.438 px per pixel of polygon perimeter over the 830 polygons (median relative
  difference 0.27 %), so the bound is ``|mask area - area| <= 0.5 * perimeter``;
* crowd RLE: the JSON area was not computed from the stored RLE; pycocotools' own decode is
  0–11.5 % smaller on the 9 crowd records (never larger), so the bound is
  ``0 <= area - mask area <= 0.12 * area``.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from masktok.annotations import (
    AnnotationError,
    read_coco_instances,
    read_coco_panoptic,
    read_labelme,
    read_yolo_seg,
)

# pycocotools' own decode warns under numpy 2 when called directly for reference masks
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _perimeter(ring):
    p = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
    return float(np.linalg.norm(p - np.roll(p, 1, axis=0), axis=1).sum())


@pytest.fixture(scope="module")
def coco_path(test_data):
    return test_data / "coco_val2014_100" / "instances_val2014_100.json"


def test_coco_instances_match_pycocotools_and_json_areas(coco_path):
    from pycocotools.coco import COCO

    images = read_coco_instances(coco_path)
    raw = json.loads(coco_path.read_text())
    assert len(images) == 100
    instances = {i.id: (im, i) for im in images for i in im.instances}
    assert len(instances) == 839
    assert sum(i.iscrowd for _, i in instances.values()) == 9
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(coco_path))
        reference = {a: coco.annToMask(coco.anns[a]).astype(bool) for a in coco.anns}
    cats = {c["id"]: c["name"] for c in raw["categories"]}
    rel, gaps = [], []
    for ann in raw["annotations"]:
        im, inst = instances[ann["id"]]
        assert im.image_id == ann["image_id"] and inst.category_id == ann["category_id"]
        assert inst.category_name == cats[ann["category_id"]] and inst.area == ann["area"]
        mask = inst.mask()
        assert mask.shape == (im.height, im.width)
        assert np.array_equal(mask, reference[ann["id"]])
        pixels = int(mask.sum())
        if ann["iscrowd"]:
            assert 0 <= ann["area"] - pixels <= 0.12 * ann["area"]
        else:
            perimeter = sum(_perimeter(r) for r in ann["segmentation"])
            assert abs(pixels - ann["area"]) <= 0.5 * perimeter
            rel.append(abs(pixels - ann["area"]) / ann["area"])
        x, y, w, h = ann["bbox"]  # the outline's float box holds our tight pixel box
        x1, y1, x2, y2 = inst.box
        assert x - 1 <= x1 <= x2 + 1 <= x + w + 1 and y - 1 <= y1 <= y2 + 1 <= y + h + 1
        gaps.append(max(x1 - x, y1 - y, x + w - x2 - 1, y + h - y2 - 1))
    assert len(rel) == 830 and np.median(rel) < 0.005
    assert np.median(gaps) < 1


def test_coco_panoptic_segments_match_area_bbox_and_rle_version(test_data):
    root = test_data / "coco_panoptic_sample"
    images = read_coco_panoptic(root / "panoptic_examples.json", root / "panoptic_examples")
    cats = {c["id"]: c for c in json.loads((root / "panoptic_coco_categories.json").read_text())}
    segments = [(im, i) for im in images for i in im.instances]
    assert len(images) == 2 and len(segments) == 50
    assert sum(cats[i.category_id]["isthing"] for _, i in segments) == 43
    assert sum(i.iscrowd for _, i in segments) == 3
    raw = {(a["image_id"], s["id"]): s for a in json.loads(
        (root / "panoptic_examples.json").read_text())["annotations"] for s in a["segments_info"]}
    for im, inst in segments:  # segment ids are colours: unique per image only
        mask = inst.mask()
        assert int(mask.sum()) == inst.area == raw[im.image_id, inst.id]["area"]
        x, y, w, h = raw[im.image_id, inst.id]["bbox"]
        assert inst.box == (x, y, x + w - 1, y + h - 1)
    # the same segments shipped as COCO-detection RLE (ids renumbered 0..49 in segment order):
    # identical masks
    detection = read_coco_instances(root / "panoptic_coco_detection_format.json")
    others = sorted(((im.image_id, i) for im in detection for i in im.instances),
                    key=lambda pair: pair[1].id)
    assert [i.id for _, i in others] == list(range(50))
    for (im, inst), (other_image, other) in zip(segments, others):
        assert other_image == im.image_id and other.category_id == inst.category_id
        assert other.mask_rle["counts"] == inst.mask_rle["counts"]
        assert other.area == inst.area and other.iscrowd == inst.iscrowd


def test_yolo_seg_reader_on_coco_polygons(tmp_path):
    """YOLO-seg labels written from the real COCO polygons in tests/data read back as exactly the
    pycocotools rasterisation of each ring at the image size."""
    from real_data import yolo_from_coco

    images_dir, labels_dir, names = yolo_from_coco(tmp_path, 11)
    images = read_yolo_seg(images_dir, labels_dir, names=names)
    assert len(images) == 11 and all(im.instances for im in images)
    checked = 0
    for im in images:
        with Image.open(images_dir / im.file_name) as img:
            assert (im.height, im.width) == (img.height, img.width)
        lines = [ln for ln in (labels_dir / f"{im.image_id}.txt").read_text().splitlines() if ln.strip()]
        assert len(lines) == len(im.instances)
        for inst, line in zip(im.instances, lines):
            values = line.split()
            assert inst.category_name == names[int(values[0])]
            ring = (np.asarray(values[1:], float).reshape(-1, 2) * [im.width, im.height]).ravel()
            reference = coco_mask.decode(coco_mask.frPyObjects([ring.tolist()], im.height,
                                                               im.width))[:, :, 0]
            assert np.array_equal(inst.mask(), reference.astype(bool)) and inst.area == reference.sum()
            checked += 1
    assert checked > 50


def test_yolo_seg_reader_on_coco128(coco128_seg):
    root = coco128_seg
    images_dir, labels_dir = root / "images" / "train2017", root / "labels" / "train2017"
    with pytest.raises(AnnotationError, match="orphan_labels") as info:
        read_yolo_seg(images_dir, labels_dir)
    assert "000000000656.txt" in str(info.value)  # two label files there have no image
    images = read_yolo_seg(images_dir, labels_dir, orphan_labels="ignore")
    assert len(images) == 128
    assert sum(len(im.instances) for im in images) == 929
    assert sum(not im.instances for im in images) == 2  # background images without labels
    checked = 0
    for im in images[::4]:
        with Image.open(images_dir / im.file_name) as img:
            assert (im.height, im.width) == (img.height, img.width)
        lines = [ln for ln in (labels_dir / f"{im.image_id}.txt").read_text().splitlines()
                 if ln.strip()] if im.instances else []
        for inst, line in zip(im.instances, lines):
            values = line.split()
            assert inst.category_id == int(values[0]) and 0 <= inst.category_id < 80
            ring = (np.asarray(values[1:], float).reshape(-1, 2) * [im.width, im.height]).ravel()
            mask = inst.mask()
            assert mask.shape == (im.height, im.width) and inst.area == mask.sum() > 0
            # bit-identical to pycocotools' rasterisation of the ring in pixels
            reference = coco_mask.decode(coco_mask.frPyObjects([ring.tolist()], im.height,
                                                               im.width))[:, :, 0]
            assert np.array_equal(mask, reference.astype(bool))
            # the ring's extent holds the tight pixel box
            xs, ys = ring[0::2], ring[1::2]
            x1, y1, x2, y2 = inst.box
            assert xs.min() - 1 <= x1 <= x2 + 1 <= xs.max() + 1
            assert ys.min() - 1 <= y1 <= y2 + 1 <= ys.max() + 1
            checked += 1
    assert checked > 200


def test_labelme_reader_matches_labelme_voc_export(voc_labelme):
    """Instances, ids, classes and ``__ignore__`` regions agree with labelme's own VOC export.

    The export paints shapes in file order (later shapes cover earlier ones), so each exported
    instance is a subset of ours and what we hold beyond it is covered by another instance or an
    ignore region. One pixel (2011_000006, at a sofa polygon vertex) differs: the export was made
    with an older Pillow whose polygon rasteriser rounds vertices differently.
    """
    root = voc_labelme
    labels = (root / "labels.txt").read_text().splitlines()
    images = read_labelme(root / "data_annotated", labels=labels)
    assert [im.image_id for im in images] == ["2011_000003", "2011_000006", "2011_000025"]
    assert [len(im.instances) for im in images] == [3, 6, 3]
    assert [im.ignore_rle is not None for im in images] == [True, True, False]
    names = [n for n in labels if n != "__ignore__"]
    total_differing = 0
    for im in images:
        objects = np.array(Image.open(root / "voc" / "SegmentationObject" / f"{im.image_id}.png"))
        classes = np.array(Image.open(root / "voc" / "SegmentationClass" / f"{im.image_id}.png"))
        masks, ignore = im.masks(), im.ignore_mask()
        assert masks.shape[1:] == objects.shape == (im.height, im.width)
        assert sorted(set(np.unique(objects).tolist()) - {0}) == [i.id for i in im.instances]
        assert not ((classes == 255) & ~ignore).any()  # exported ignore pixels are ours
        assert not (ignore & (classes != 255) & ~masks.any(axis=0)).any()  # rest is painted over
        for k, inst in enumerate(im.instances):
            assert names.index(inst.category_name) == inst.category_id
            exported = objects == inst.id
            assert (classes[exported] == inst.category_id).all()
            others = np.delete(masks, k, axis=0).any(axis=0) | ignore
            missing = exported & ~masks[k]
            unexplained = masks[k] & ~exported & ~others
            total_differing += int(missing.sum() + unexplained.sum())
            assert missing.sum() <= 1 and unexplained.sum() <= 1
    assert total_differing <= 2
