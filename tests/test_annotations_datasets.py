"""ADE20K, Cityscapes, Mapillary Vistas and LVIS readers, pixel-exact against each dataset's own
decoding of the samples in tests/data (built from real COCO masks, see tests/data/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masktok.annotations import (
    AnnotationError,
    read_ade20k_object_mask,
    read_ade20k_objects,
    read_ade20k_seg,
    read_cityscapes_instance_png,
    read_coco_instances,
    read_lvis,
    read_mapillary_instance_png,
)
from masktok.masks import read_mask_png

from conftest import TEST_DATA

DATA = Path(__file__).parent / "data"
ADE = DATA / "ade20k" / "ADE_sample_00000641"
CITYSCAPES = DATA / "cityscapes" / "coco_257_gtFine_instanceIds.png"
MAPILLARY = DATA / "mapillary" / "coco_257.png"
LVIS = DATA / "lvis" / "lvis_v1_sample.json"


def ade20k_toolkit_decoding(seg_png: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ADE20K toolkit's decoding (utils/utils_ade20k.py, loadAde20K): class mask from R and
    G, instance mask = rank of the B value."""
    seg = np.array(Image.open(seg_png))
    r, g, b = seg[:, :, 0], seg[:, :, 1], seg[:, :, 2]
    classes = (r / 10).astype(np.int32) * 256 + g.astype(np.int32)
    instances = np.unique(b, return_inverse=True)[1].reshape(b.shape)
    return classes, instances


def test_ade20k_seg_matches_the_toolkit_decoding():
    for png in (ADE.with_name(ADE.name + "_seg.png"), ADE.with_name(ADE.name + "_parts_1.png")):
        classes, instances = ade20k_toolkit_decoding(png)
        ann = read_ade20k_seg(png)
        masks = ann.masks()
        assert len(ann.instances) == len(np.unique(instances)) - 1  # B = 0 is unlabeled
        for inst, mask in zip(ann.instances, masks):
            k = np.unique(instances[mask])
            assert len(k) == 1 and np.array_equal(mask, instances == k[0])  # pixel-exact
            assert np.all(classes[mask] == inst.category_id)
        covered = masks.any(axis=0)
        assert np.array_equal(covered, classes != 0)
    names = {i.category_name for i in read_ade20k_seg(ADE.with_name(ADE.name + "_seg.png")).instances}
    assert "person, individual, someone, somebody, mortal, soul" in names  # from NAME.json


def test_ade20k_objects_visible_occluded_amodal():
    meta = json.loads(ADE.with_suffix(".json").read_text())["annotation"]["object"]
    source = TEST_DATA / "coco_val2014_100" / "instances_val2014_100.json"
    coco = {i.id: i for im in read_coco_instances(source) if im.image_id == 641
            for i in im.instances} if source.is_file() else {}
    visible = read_ade20k_objects(ADE.with_suffix(".json"))
    occluded = read_ade20k_objects(ADE.with_suffix(".json"), region="occluded")
    amodal = read_ade20k_objects(ADE.with_suffix(".json"), region="amodal")
    whole = [o for o in meta if o["parts"]["part_level"] == 0]
    assert [i.id for i in visible.instances] == [o["id"] for o in whole]
    assert sum(i.area for i in occluded.instances) > 0  # smaller objects hide parts of larger ones
    for obj, v, o, a in zip(whole, visible.masks(), occluded.masks(), amodal.masks()):
        png = np.array(Image.open(ADE.parent / obj["instance_mask"]))
        assert np.array_equal(v, png == 255) and np.array_equal(o, png == 128)
        assert np.array_equal(a, v | o) and not (v & o).any()
        if coco:  # the amodal mask is the COCO instance it was built from
            assert np.array_equal(a, coco[obj["coco_annotation_id"]].mask())
    # visible regions are the _seg.png instances
    seg = read_ade20k_seg(ADE.with_name(ADE.name + "_seg.png"))
    assert sorted(m.sum() for m in seg.masks()) == sorted(m.sum() for m in visible.masks() if m.any())
    parts = read_ade20k_objects(ADE.with_suffix(".json"), part_level=1)
    assert [i.category_name for i in parts.instances] == ["upper part", "lower part"]
    assert read_ade20k_object_mask(ADE.parent / whole[0]["instance_mask"], "amodal").sum() == amodal.instances[0].area
    with pytest.raises(ValueError, match="region must be one of"):
        read_ade20k_objects(ADE.with_suffix(".json"), region="all")


def test_grey_object_masks_are_never_thresholded_silently(tmp_path):
    obj = ADE.parent / json.loads(ADE.with_suffix(".json").read_text())["annotation"]["object"][0]["instance_mask"]
    with pytest.raises(ValueError, match="ADE20K object mask") as err:
        read_mask_png(obj)
    assert "127" not in str(err.value)  # no threshold that would merge the occluded part
    grey = np.array([[0, 10, 200]], dtype=np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    with pytest.raises(ValueError, match="pass threshold=T") as err:
        read_mask_png(tmp_path / "g.png")
    assert "127" not in str(err.value)
    Image.fromarray(np.array([[0, 128, 77]], dtype=np.uint8), mode="L").save(tmp_path / "bad.png")
    with pytest.raises(AnnotationError, match="only 0, 128"):
        read_ade20k_object_mask(tmp_path / "bad.png")


def test_cityscapes_instance_png_matches_cityscapesscripts():
    instances2dict = pytest.importorskip("cityscapesscripts.evaluation.instances2dict").instances2dict
    official = instances2dict([str(CITYSCAPES)])[str(CITYSCAPES.resolve())]
    ids = np.array(Image.open(CITYSCAPES))
    ann = read_cityscapes_instance_png(CITYSCAPES)
    expected = {d["instID"]: (d["labelID"], d["pixelCount"], name)
                for name, items in official.items() for d in items if d["labelID"] != 0}
    got = {i.id: (i.category_id, int(i.area), i.category_name) for i in ann.instances}
    assert got == expected
    for inst, mask in zip(ann.instances, ann.masks()):
        assert np.array_equal(mask, ids == inst.id)  # pixel-exact
    crowd = [i for i in ann.instances if i.iscrowd]
    assert [(i.id, i.category_name) for i in crowd] == [(24, "person")]  # a bare label id of a thing class
    with_unlabeled = read_cityscapes_instance_png(CITYSCAPES, ignore=())
    assert len(with_unlabeled.instances) == len(ann.instances) + 1


def test_mapillary_instance_png_matches_the_vistas_decoding():
    ids = np.array(Image.open(MAPILLARY))
    labels = np.array(ids / 256, dtype=np.uint8)  # mapillary_vistas/evaluation/evaluation.py
    ann = read_mapillary_instance_png(MAPILLARY, labels={19: "Person", 48: "Traffic Light", 61: "Truck"},
                                      ignore=(0,))
    for inst, mask in zip(ann.instances, ann.masks()):
        assert np.array_equal(mask, ids == inst.id)
        assert np.all(labels[mask] == inst.category_id) and inst.id % 256 == inst.id - 256 * inst.category_id
    assert {i.category_name for i in ann.instances} == {"Person", "Traffic Light", "Truck"}
    assert len(ann.instances) == len(np.unique(ids)) - 1
    with pytest.raises(AnnotationError, match="16-bit"):
        read_mapillary_instance_png(DATA / "ade20k" / "ADE_sample_00000641_seg.png")


def test_lvis_matches_pycocotools_decoding_as_the_lvis_api():
    from pycocotools.coco import COCO  # the LVIS API's ann_to_rle calls these same functions

    ds = read_lvis(LVIS)
    raw = json.loads(LVIS.read_text())
    coco = COCO()
    coco.dataset = raw
    coco.createIndex()
    n = 0
    for image in ds.images:
        for inst, mask in zip(image.instances, image.masks()):
            assert np.array_equal(mask, coco.annToMask(coco.anns[inst.id]).astype(bool))
            n += 1
    assert n == len(raw["annotations"]) > 10
    assert ds.images[0].file_name == "val2014/COCO_val2014_000000000641.jpg"  # from coco_url
    first = raw["images"][0]
    assert ds.negative_category_ids[first["id"]] == first["neg_category_ids"]
    assert ds.not_exhaustive_category_ids[first["id"]] == first["not_exhaustive_category_ids"]
    assert {c.frequency for c in ds.categories.values()} == {"f"}


def test_lvis_bad_records_name_the_record(tmp_path):
    raw = json.loads(LVIS.read_text())
    raw["images"][1]["neg_category_ids"] = [999999]
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(AnnotationError, match=r"image #1 id=923: 'neg_category_ids' names unknown"):
        read_lvis(tmp_path / "bad.json")
    del raw["images"][1]["coco_url"]
    raw["images"][1]["neg_category_ids"] = []
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(AnnotationError, match="needs 'file_name' or a 'coco_url'"):
        read_lvis(tmp_path / "bad.json")
