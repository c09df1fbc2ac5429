"""Mask I/O on real data (``tests/data``, the fetched labelme VOC export): RLE ↔ mask ↔ PNG round
trips, bit-exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from masktok import masks as M


@pytest.fixture(scope="module")
def coco_gt(test_data):
    return json.loads((test_data / "coco_val2014_100" / "instances_val2014_100.json").read_text())


@pytest.fixture(scope="module")
def fake_results(test_data):
    path = test_data / "coco_val2014_100" / "instances_val2014_fakesegm100_results.json"
    return json.loads(path.read_text())


def test_fake_segm_rle_round_trip_is_bit_exact(fake_results, tmp_path):
    """734 real compressed RLEs: string → mask → string is the identity, also via torch and PNG."""
    assert len(fake_results) == 734
    by_size: dict[tuple, list] = {}
    for i, rec in enumerate(fake_results):
        rle = rec["segmentation"]
        mask = M.rle_to_mask(rle)
        assert mask.shape == tuple(rle["size"])
        assert M.mask_to_rle(mask)["counts"] == rle["counts"]
        unc = M.mask_to_rle(mask, compressed=False)
        assert M.rle_counts(rle) == unc["counts"]
        assert M.mask_to_rle(M.rle_to_mask(unc))["counts"] == rle["counts"]
        if i % 10 == 0:  # PNG for a tenth of them keeps the test fast
            M.write_mask_png(tmp_path / "m.png", mask)
            assert np.array_equal(M.read_mask_png(tmp_path / "m.png"), mask)
        by_size.setdefault(tuple(rle["size"]), []).append(rle)
    for size, rles in sorted(by_size.items(), key=lambda kv: -len(kv[1]))[:8]:
        stack = M.rles_to_masks(rles, size=size)
        assert [r["counts"] for r in M.masks_to_rles_torch(torch.from_numpy(stack))] == \
            [r["counts"] for r in rles]


def test_coco_gt_masks_rle_png_polygon_round_trips(coco_gt, tmp_path):
    """All 839 ground-truth masks: polygons/RLE → mask → RLE → mask → PNG → mask, bit-exact;
    mask → traced polygons → mask gives the mask back (holes filled where it has holes)."""
    images = {im["id"]: im for im in coco_gt["images"]}
    n_holes = 0
    for k, ann in enumerate(coco_gt["annotations"]):
        im = images[ann["image_id"]]
        h, w = im["height"], im["width"]
        seg = ann["segmentation"]
        mask = (M.polygons_to_mask(seg, h, w) if isinstance(seg, list)
                else M.rle_to_mask(seg, size=(h, w)))
        rle = M.mask_to_rle(mask)
        assert np.array_equal(M.rle_to_mask(rle, size=(h, w)), mask)
        if k % 10 == 0:
            M.write_mask_png(tmp_path / "m.png", mask)
            assert M.mask_to_rle(M.read_mask_png(tmp_path / "m.png")) == rle
        if k % 2 == 0 and mask.any():
            traced = M.polygons_to_mask(M.mask_to_polygons(mask, holes="fill"), h, w)
            x1, y1, x2, y2 = M.mask_to_box(mask)
            crop = (slice(y1, y2 + 1), slice(x1, x2 + 1))
            filled = ndimage.binary_fill_holes(mask[crop], structure=np.ones((3, 3)))
            assert np.array_equal(traced[crop], filled) and traced.sum() == filled.sum()
            n_holes += int(not np.array_equal(filled, mask[crop]))
    assert n_holes > 0  # the real set exercises the hole path too


def test_refseg_8bit_masks_threshold_and_round_trip(test_data, tmp_path):
    """The four 8-bit masks (256 grey levels) need a threshold; at 127 they round-trip."""
    for i in range(4):
        path = test_data / "refseg_examples" / "masks" / f"{i}.png"
        with pytest.raises(ValueError, match="threshold"):
            M.read_mask_png(path)
        grey = np.array(Image.open(path))
        mask = M.read_mask_png(path, threshold=127)
        assert np.array_equal(mask, grey > 127) and 0 < mask.sum() < mask.size
        image = Image.open(test_data / "refseg_examples" / "images" / f"{i}.jpg")
        assert mask.shape == (image.height, image.width)
        M.write_mask_png(tmp_path / f"{i}.png", mask)
        back = M.read_mask_png(tmp_path / f"{i}.png")
        assert np.array_equal(M.rle_to_mask(M.mask_to_rle(back)), mask)


def test_voc_index_pngs_round_trip(voc_labelme, tmp_path):
    """PASCAL VOC palette PNGs: instance ids (255 = ignore) → masks → index PNG → same ids."""
    for path in sorted((voc_labelme / "voc" / "SegmentationObject").glob("*.png")):
        ids = M.read_index_png(path)
        assert np.array_equal(ids, np.array(Image.open(path)))
        masks, kept = M.index_map_to_masks(ids, exclude=(0, 255))
        assert 0 not in kept and 255 not in kept and len(kept) >= 3
        assert int(masks.sum()) == int(((ids != 0) & (ids != 255)).sum())
        rebuilt = M.masks_to_index_map(masks, ids=kept)
        M.write_index_png(tmp_path / path.name, rebuilt)
        assert np.array_equal(M.read_index_png(tmp_path / path.name),
                              np.where(ids == 255, 0, ids))


def test_panoptic_png_ids_round_trip_and_counts(test_data, tmp_path):
    """Panoptic RGB ids: every listed segment's pixel count equals its JSON ``area``."""
    root = test_data / "coco_panoptic_sample"
    doc = json.loads((root / "panoptic_examples.json").read_text())
    n = 0
    for ann in doc["annotations"]:
        ids = M.read_panoptic_png(root / "panoptic_examples" / ann["file_name"])
        values, counts = np.unique(ids, return_counts=True)
        count = dict(zip(values.tolist(), counts.tolist()))
        for seg in ann["segments_info"]:
            assert count[seg["id"]] == seg["area"]
            n += 1
        M.write_panoptic_png(tmp_path / ann["file_name"], ids)
        assert np.array_equal(M.read_panoptic_png(tmp_path / ann["file_name"]), ids)
        assert np.array_equal(np.array(Image.open(tmp_path / ann["file_name"])),
                              np.array(Image.open(root / "panoptic_examples" / ann["file_name"])))
    assert n == 50
