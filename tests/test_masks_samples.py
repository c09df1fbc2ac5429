"""The bundled sample images and masks: loading, size budget, licences and provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from masktok import masks as M
from masktok.samples import load_samples, samples_dir

REDISTRIBUTABLE = {"Attribution License", "Attribution-ShareAlike License"}


def test_load_samples_shapes_and_metadata():
    samples = load_samples()
    assert 3 <= len(samples) <= 12
    total = 0
    for image, masks, meta in samples:
        assert image.mode == "RGB" and max(image.size) <= 640
        assert masks.dtype == np.bool_ and masks.shape == (len(meta["categories"]),
                                                           image.height, image.width)
        assert masks.any(axis=(1, 2)).all()
        assert M.masks_to_rles(masks) == meta["rles"]
        assert meta["license"]["name"] in REDISTRIBUTABLE
        assert meta["flickr_url"].startswith("http")
        total += len(masks)
    assert 8 <= total <= 12


def test_sample_folder_is_small_and_attributed():
    folder = samples_dir()
    files = [p for p in folder.iterdir() if p.is_file()]
    assert sum(len(p.read_bytes()) for p in files) < 2 * 1024 * 1024
    readme = (folder / "README.md").read_text()
    doc = json.loads((folder / "samples.json").read_text())
    for entry in doc["images"]:
        assert entry["file"] in readme and entry["flickr_url"] in readme
        assert (folder / entry["file"]).is_file()


def test_samples_match_the_coco_source(test_data):
    """Images are the original JPEGs; masks are pycocotools' rasterisation of the annotations;
    licences are the ones COCO lists for those images."""
    root = test_data / "coco_val2014_100"
    coco = json.loads((root / "instances_val2014_100.json").read_text())
    licenses = {lic["id"]: lic for lic in coco["licenses"]}
    images = {im["id"]: im for im in coco["images"]}
    anns = {a["id"]: a for a in coco["annotations"]}
    for _, masks, meta in load_samples():
        src = images[meta["coco_image_id"]]
        assert licenses[src["license"]]["name"] == meta["license"]["name"]
        assert licenses[src["license"]]["url"] == meta["license"]["url"]
        assert src["flickr_url"] == meta["flickr_url"] and src["file_name"] == meta["file"]
        assert (samples_dir() / meta["file"]).read_bytes() == (root / "images" /
                                                                src["file_name"]).read_bytes()
        for mask, ann_id, cat in zip(masks, meta["coco_annotation_ids"], meta["category_ids"]):
            ann = anns[ann_id]
            assert ann["image_id"] == meta["coco_image_id"] and ann["category_id"] == cat
            assert not ann["iscrowd"]
            assert np.array_equal(mask, M.polygons_to_mask(ann["segmentation"], src["height"],
                                                           src["width"]))


@pytest.mark.parametrize("index", [0, 3])
def test_sample_masks_survive_every_format(tmp_path, index):
    _, masks, _ = load_samples()[index]
    for k, mask in enumerate(masks):
        M.write_mask_png(tmp_path / f"{k}.png", mask)
        back = M.read_mask_png(tmp_path / f"{k}.png")
        assert np.array_equal(M.rle_to_mask(M.mask_to_rle(back, compressed=False)), mask)
        polys = M.mask_to_polygons(mask, holes="fill")
        assert (M.polygons_to_mask(polys, *mask.shape) >= mask).all()
