"""Annotation readers on small synthetic files: fields, conventions and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masktok.annotations import (
    AnnotationError,
    ImageAnnotations,
    read_coco_categories,
    read_coco_instances,
    read_coco_panoptic,
    read_labelme,
    read_yolo_seg,
)
from masktok.masks import mask_to_rle, panoptic_id_to_rgb


def _coco(tmp_path: Path, annotations: list, images=None, name="inst.json") -> Path:
    doc = {
        "images": images or [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 12},
                             {"id": 2, "file_name": "b.jpg", "height": 6, "width": 4}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}],
        "annotations": annotations,
    }
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _ann(**kw):
    rec = {"id": 1, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 20.0,
           "segmentation": [[2, 2, 7, 2, 7, 6, 2, 6]]}
    rec.update(kw)
    return rec


def test_coco_reader_fields(tmp_path):
    crowd = np.zeros((6, 4), dtype=bool)
    crowd[1:4, 2] = True
    rle = mask_to_rle(crowd, compressed=False)
    path = _coco(tmp_path, [_ann(), _ann(id=9, image_id=2, category_id=5, iscrowd=1,
                                         segmentation=rle, area=3)])
    images = read_coco_instances(path)
    assert [(im.image_id, im.file_name, im.height, im.width) for im in images] == \
        [(1, "a.jpg", 10, 12), (2, "b.jpg", 6, 4)]
    (poly,), (crowd_inst,) = images[0].instances, images[1].instances
    assert poly.box == (2, 2, 6, 5) and poly.mask().sum() == 20 and not poly.iscrowd
    assert poly.category_name == "cat" and isinstance(poly.mask_rle["counts"], str)
    assert crowd_inst.iscrowd and crowd_inst.id == 9 and crowd_inst.category_name == "dog"
    assert np.array_equal(crowd_inst.mask(), crowd) and crowd_inst.box == (2, 1, 2, 3)
    assert images[0].masks().shape == (1, 10, 12)
    assert not images[0].ignore_mask().any()
    assert read_coco_categories(path) == {3: "cat", 5: "dog"}


def test_coco_reader_defaults_area_and_iscrowd(tmp_path):
    rec = _ann()
    del rec["area"], rec["iscrowd"]
    (im, _) = read_coco_instances(_coco(tmp_path, [rec]))
    assert im.instances[0].area == 20.0 and im.instances[0].iscrowd is False


@pytest.mark.parametrize("record, message", [
    (_ann(segmentation=[[2, 2, 7, 2]]), "at least 3 points"),
    (_ann(segmentation=[[2, 2, 7, 2, 7, float("nan")]]), "NaN"),
    (_ann(segmentation=[[2, 2, 70, 2, 7, 6]]), "outside"),
    (_ann(segmentation={"size": [11, 12], "counts": [132]}), "disagrees with the image size"),
    (_ann(segmentation={"size": [10, 12], "counts": "garbage!"}), "alphabet"),
    (_ann(segmentation={"size": [10, 12], "counts": [100]}), "add up to"),
    (_ann(segmentation="polygon"), "polygons \\(list\\) or RLE"),
    (_ann(image_id=7), "image_id 7 is not in 'images'"),
    (_ann(category_id=4), "category_id 4"),
    (_ann(iscrowd=2), "iscrowd"),
    (_ann(area=-1), "area"),
    (_ann(id="x"), "id must be an integer"),
    ({k: v for k, v in _ann().items() if k != "segmentation"}, "no 'segmentation'"),
])
def test_coco_reader_names_file_and_record(tmp_path, record, message):
    path = _coco(tmp_path, [_ann(id=100), record])
    with pytest.raises(AnnotationError, match=message) as info:
        read_coco_instances(path)
    err = info.value
    assert isinstance(err, ValueError) and err.path == str(path)
    assert err.record.startswith("annotation #1") and str(path) in str(err)


def test_coco_reader_file_level_errors(tmp_path):
    with pytest.raises(AnnotationError, match="duplicate annotation id"):
        read_coco_instances(_coco(tmp_path, [_ann(), _ann()]))
    bad_image = [{"id": 1, "file_name": "a.jpg", "height": 0, "width": 12}]
    with pytest.raises(AnnotationError, match="image #0 id=1: height must be positive"):
        read_coco_instances(_coco(tmp_path, [], images=bad_image))
    (tmp_path / "broken.json").write_text("{\"images\": [")
    with pytest.raises(AnnotationError, match="invalid JSON"):
        read_coco_instances(tmp_path / "broken.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(AnnotationError, match="JSON object"):
        read_coco_instances(tmp_path / "list.json")
    with pytest.raises(FileNotFoundError):
        read_coco_instances(tmp_path / "missing.json")


def _panoptic(tmp_path, segments, ids):
    (tmp_path / "png").mkdir(exist_ok=True)
    Image.fromarray(panoptic_id_to_rgb(ids)).save(tmp_path / "png" / "a.png")
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "height": ids.shape[0],
                       "width": ids.shape[1]}],
           "categories": [{"id": 1, "name": "person"}, {"id": 90, "name": "sky"}],
           "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": segments}]}
    (tmp_path / "pan.json").write_text(json.dumps(doc))
    return tmp_path / "pan.json", tmp_path / "png"


def test_panoptic_reader(tmp_path):
    ids = np.zeros((5, 6), dtype=np.int64)
    ids[:2] = 70000
    ids[3:, 1:3] = 12
    segs = [{"id": 70000, "category_id": 90, "area": 12, "iscrowd": 0},
            {"id": 12, "category_id": 1, "area": 4, "iscrowd": 1}]
    (im,) = read_coco_panoptic(*_panoptic(tmp_path, segs, ids))
    assert [i.id for i in im.instances] == [70000, 12]
    assert [int(i.mask().sum()) for i in im.instances] == [12, 4]
    assert im.instances[1].iscrowd and im.instances[1].box == (1, 3, 2, 4)
    assert im.instances[0].category_name == "sky"


@pytest.mark.parametrize("segs, message", [
    ([{"id": 70000, "category_id": 90}], r"ids \[12\] that segments_info does not list"),
    ([{"id": 70000, "category_id": 90}, {"id": 12, "category_id": 1},
      {"id": 5, "category_id": 1}], "segment id 5 does not occur"),
    ([{"id": 70000, "category_id": 90}, {"id": 12, "category_id": 2}], "category_id 2"),
])
def test_panoptic_reader_errors(tmp_path, segs, message):
    ids = np.zeros((5, 6), dtype=np.int64)
    ids[:2] = 70000
    ids[3:, 1:3] = 12
    with pytest.raises(AnnotationError, match=message):
        read_coco_panoptic(*_panoptic(tmp_path, segs, ids))


def test_panoptic_reader_size_mismatch(tmp_path):
    json_path, png_dir = _panoptic(tmp_path, [], np.zeros((5, 6), dtype=np.int64))
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(png_dir / "a.png")
    with pytest.raises(AnnotationError, match="is 4x6 but the image is 5x6"):
        read_coco_panoptic(json_path, png_dir)


def _yolo(tmp_path, labels: dict[str, str], images=("a.jpg", "b.png"), size=(40, 20)):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name in images:
        Image.new("RGB", size).save(tmp_path / "images" / name)
    for name, text in labels.items():
        (tmp_path / "labels" / name).write_text(text)
    return tmp_path / "images", tmp_path / "labels"


def test_yolo_reader(tmp_path):
    images_dir, labels_dir = _yolo(tmp_path, {"a.txt": "3 0.1 0.1 0.6 0.1 0.6 0.5 0.1 0.5\n\n"
                                                       "0 0 0 1 0 1 1 0 1\n"})
    a, b = read_yolo_seg(images_dir, labels_dir, names=["zero", "one", "two", "three"])
    assert isinstance(a, ImageAnnotations) and (a.height, a.width) == (20, 40)
    assert a.image_id == "a" and a.file_name == "a.jpg" and not b.instances
    first, second = a.instances
    assert (first.category_id, first.category_name, first.id) == (3, "three", 1)
    assert first.box == (4, 2, 23, 9) and first.area == 160  # x 4..24, y 2..10 (exclusive)
    assert second.id == 3 and second.mask().all()


def test_yolo_reader_exif_rotation_swaps_sides(tmp_path):
    images_dir, labels_dir = _yolo(tmp_path, {}, images=())
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated by 90°
    Image.new("RGB", (40, 20)).save(images_dir / "r.jpg", exif=exif)
    (im,) = read_yolo_seg(images_dir, labels_dir)
    assert (im.height, im.width) == (40, 20)


@pytest.mark.parametrize("line, message", [
    ("1 0.1 0.1 0.5 0.1 0.5", "odd|even"),
    ("1 0.1 0.1 0.5 0.1", "box"),
    ("1 0.1 0.1 0.5 0.1 0.5 1.2", r"\[0, 1\]"),
    ("1 0.1 0.1 0.5 0.1 0.5 nan", "NaN|numbers"),
    ("x 0.1 0.1 0.5 0.1 0.5 0.5", "class"),
    ("-1 0.1 0.1 0.5 0.1 0.5 0.5", "class"),
    ("1 0.1 0.1 0.5 0.1 0.5 zz", "numbers"),
    ("9 0.1 0.1 0.5 0.1 0.5 0.5", "no name"),
])
def test_yolo_reader_errors_name_file_and_line(tmp_path, line, message):
    images_dir, labels_dir = _yolo(tmp_path, {"a.txt": "0 0.1 0.1 0.5 0.1 0.5 0.5\n" + line})
    with pytest.raises(AnnotationError, match=message) as info:
        read_yolo_seg(images_dir, labels_dir, names=["a", "b"])
    assert info.value.record == "line 2" and info.value.path.endswith("a.txt")


def test_yolo_reader_orphan_labels(tmp_path):
    images_dir, labels_dir = _yolo(tmp_path, {"c.txt": "0 0.1 0.1 0.5 0.1 0.5 0.5\n"})
    with pytest.raises(AnnotationError, match="c.txt.*no image"):
        read_yolo_seg(images_dir, labels_dir)
    assert len(read_yolo_seg(images_dir, labels_dir, orphan_labels="ignore")) == 2
    with pytest.raises(ValueError, match="orphan_labels"):
        read_yolo_seg(images_dir, labels_dir, orphan_labels="skip")
    with pytest.raises(ValueError, match="names"):
        read_yolo_seg(images_dir, labels_dir, names="person", orphan_labels="ignore")


def _labelme(tmp_path, shapes, name="img.json", h=20, w=30):
    doc = {"version": "5.0", "flags": {}, "shapes": shapes, "imagePath": name[:-5] + ".jpg",
           "imageData": None, "imageHeight": h, "imageWidth": w}
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _shape(label, points, group=None, kind="polygon"):
    return {"label": label, "points": points, "group_id": group, "shape_type": kind, "flags": {}}


def test_labelme_grouping_ignore_and_shape_types(tmp_path):
    shapes = [
        _shape("cat", [[1, 1], [8, 1], [8, 6], [1, 6]], group=0),
        _shape("dog", [[10, 10], [14, 10], [14, 14]]),
        _shape("cat", [[20, 1], [25, 1], [25, 4]], group=0),   # same instance as shape 0
        _shape("__ignore__", [[0, 15], [5, 19]], kind="rectangle"),
        _shape("dog", [[20, 12], [22, 12]], kind="circle"),
        _shape("nose", [[3, 3]], kind="point"),
    ]
    path = _labelme(tmp_path, shapes)
    with pytest.raises(AnnotationError, match="shape #5.*'point' encloses no area"):
        read_labelme(path)
    (im,) = read_labelme(path, skip_shape_types={"point"})
    assert (im.image_id, im.file_name, im.height, im.width) == ("img", "img.jpg", 20, 30)
    cat, dog, circle = im.instances
    assert [i.id for i in im.instances] == [1, 2, 4]  # the ignore shape took number 3
    assert (cat.category_name, cat.category_id, dog.category_id) == ("cat", 1, 2)
    cat_mask = cat.mask()
    assert cat_mask[1:7, 1:9].all() and cat_mask[1, 24] and not cat_mask[10:].any()
    assert cat.box == (1, 1, 25, 6)
    ignore = im.ignore_mask()
    assert ignore[15:20, 0:6].all() and ignore.sum() == 30
    assert circle.box == (18, 10, 22, 14)
    assert not any(i.category_name == "__ignore__" for i in im.instances)


def test_labelme_label_list_numbering(tmp_path):
    path = _labelme(tmp_path, [_shape("dog", [[1, 1], [8, 1], [8, 6]])])
    labels = ["__ignore__", "_background_", "cat", "dog"]
    (im,) = read_labelme(path, labels=labels)
    assert im.instances[0].category_id == 2  # _background_ 0, cat 1, dog 2 (labelme's VOC ids)
    (im,) = read_labelme(path, labels={"dog": 17})
    assert im.instances[0].category_id == 17
    with pytest.raises(AnnotationError, match="label 'dog' is not in labels"):
        read_labelme(path, labels=["cat"])


def test_labelme_folder_reads_sorted_json(tmp_path):
    _labelme(tmp_path, [_shape("b", [[1, 1], [8, 1], [8, 6]])], name="z.json")
    _labelme(tmp_path, [_shape("a", [[1, 1], [8, 1], [8, 6]])], name="m.json")
    images = read_labelme(tmp_path)
    assert [im.image_id for im in images] == ["m", "z"]
    assert [im.instances[0].category_id for im in images] == [1, 2]  # sorted labels from 1
    with pytest.raises(FileNotFoundError):
        read_labelme(tmp_path / "empty_dir_missing")


@pytest.mark.parametrize("shape, message", [
    (_shape("a", [[1, 1], [8, 1]]), "at least 3 points"),
    (_shape("a", [[1, 1], [80, 1], [8, 6]]), "outside"),
    (_shape("a", [[1, 1], [8, float("nan")], [8, 6]]), "NaN"),
    (_shape("a", [1, 1, 8, 1, 8, 6]), r"\[x, y\] pairs"),
    (_shape("a", [[1, 1], [8, 1], [8, 6]], kind="rectangle"), "rectangle needs 2 points"),
    ({"points": [[1, 1], [8, 1], [8, 6]]}, "string 'label'"),
])
def test_labelme_errors_name_file_and_shape(tmp_path, shape, message):
    path = _labelme(tmp_path, [_shape("a", [[1, 1], [8, 1], [8, 6]]), shape])
    with pytest.raises(AnnotationError, match=message) as info:
        read_labelme(path)
    assert info.value.record.startswith("shape #1") and info.value.path == str(path)


def test_labelme_file_errors(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"shapes": [], "imageHeight": 0, "imageWidth": 5,
                                "imagePath": "x.jpg"}))
    with pytest.raises(AnnotationError, match="imageHeight must be positive"):
        read_labelme(path)
    path.write_text(json.dumps({"version": "5"}))
    with pytest.raises(AnnotationError, match="not a labelme file"):
        read_labelme(path)
