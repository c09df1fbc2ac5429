"""The held-out COCO 2017 split, the training records it leaves, and the tokenizer evaluation sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from pycocotools import mask as coco_mask

from masktok.data.mask_pools import heldout
from masktok.eval.tokenizer_sets import MaskScores, summarize, worse_share

NEEDED = ("coco2017_masks", "coco_val2014_100", "coco128_seg", "coco_panoptic_sample", "voc_labelme",
          "refseg_examples")


@pytest.fixture(scope="module")
def heldout_data() -> Path:
    """The shared data folder holding the COCO 2017 masks beside the other training sources."""
    missing = [name for name in NEEDED if not (SHARED_DATA / name).is_dir()]
    if missing:
        pytest.skip(f"{missing} not found in {SHARED_DATA} (set MASKTOK_SHARED_DATA to the shared data folder)")
    return SHARED_DATA


def _area(rle: dict) -> int:
    return int(coco_mask.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")}))


def test_split_is_deterministic_and_an_eighth(heldout_data):
    ids = heldout.coco2017_image_ids(heldout_data)
    held = {i for i in ids if heldout.is_held_out(i)}
    assert len(ids) == 1707 and len(held) == 215
    assert held == {i for i in sorted(ids) if heldout.is_held_out(i)}


def test_training_records_leave_out_every_evaluation_image(heldout_data):
    records, counts = heldout.training_records(heldout_data)
    val2014 = heldout.val2014_image_ids(heldout_data)
    coco_ids = set()
    for record in records:
        if "coco2017_masks" in record.source:
            image = int(record.image_key.rsplit(":", 1)[1])
            assert not heldout.is_held_out(image)
            coco_ids.add(image)
        elif "coco128_seg" in record.source:
            assert int(record.image_key.rsplit("/", 1)[-1]) not in val2014
    assert not coco_ids & val2014
    assert counts["coco:coco_val2017_masks.json.gz"] + counts["coco:coco_train2017_masks.json.gz"] == 5441
    assert sum(counts.values()) == len(records)
    assert len(heldout.heldout_records(heldout_data)) == 822


def test_native_and_thin_sets(heldout_data):
    sets = heldout.evaluation_sets(heldout_data, ("coco_val2014_100", "coco_val2014_100_unseen", "coco2017_heldout",
                                                 "thin_sparse"))
    assert sum(len(img.rles) for img in sets["coco_val2014_100"]) == 839
    seen = heldout.coco128_image_ids(heldout_data)
    unseen_ids = {int(img.name.split("image ")[1]) for img in sets["coco_val2014_100_unseen"]}
    assert len(unseen_ids) == 57 and not unseen_ids & seen
    held_ids = {int(img.name.split("image ")[1].split()[0]) for img in sets["coco2017_heldout"]}
    assert held_ids and not held_ids & seen and all(heldout.is_held_out(i) for i in held_ids)
    thin = sets["thin_sparse"]
    assert sum(len(img.rles) for img in thin) > 40
    for img in thin:
        for rle, label in zip(img.rles, img.labels):
            x, y, w, h = coco_mask.toBbox({"size": rle["size"], "counts": rle["counts"].encode("ascii")})
            assert _area(rle) < 0.2 * w * h, label
    assert any("union" in label for img in thin for label in img.labels)


def test_large_canvases_scale_or_place_the_polygons(heldout_data, monkeypatch):
    picked = sorted(i for i in heldout.coco2017_image_ids(heldout_data)
                    if heldout.is_held_out(i) and i not in heldout.coco128_image_ids(heldout_data))[:3]
    monkeypatch.setattr(heldout, "is_held_out", lambda image_id: image_id in picked)
    sets = heldout.evaluation_sets(heldout_data, ("coco2017_heldout", "scaled_2k_4k", "canvas_2k_4k"))
    native = {img.name.split("|")[1].split()[1]: img for img in sets["coco2017_heldout"]}
    assert len(sets["scaled_2k_4k"]) == len(sets["canvas_2k_4k"]) == 3
    for scaled, canvas in zip(sets["scaled_2k_4k"], sets["canvas_2k_4k"]):
        assert (scaled.height, scaled.width) == (canvas.height, canvas.width)
        assert 2000 <= max(scaled.height, scaled.width) <= 4000
        small = native[scaled.name.split("|")[1].split()[1]]
        factor = max(scaled.height, scaled.width) / max(small.height, small.width)
        crowd_free = [r for r, label in zip(small.rles, small.labels) if label in canvas.labels]
        for rle_small, rle_canvas, rle_scaled in zip(crowd_free, canvas.rles, scaled.rles):
            assert abs(_area(rle_canvas) - _area(rle_small)) <= 0.02 * _area(rle_small) + 4  # moved, not resized
            if _area(rle_small) >= 200:  # smaller ones: rasterisation steps dominate
                assert _area(rle_scaled) == pytest.approx(_area(rle_small) * factor ** 2, rel=0.1)
    with pytest.raises(ValueError, match="unknown evaluation sets"):
        heldout.evaluation_sets(heldout_data, ("coco_val2014",))


def test_summary_counts_masks_that_get_worse():
    ious = np.array([[0.5, 0.7, 0.9], [0.6, 0.5, 0.8], [0.2, 0.3, 0.3]])
    scores = MaskScores(ious=ious, areas=np.array([100, 2000, 20000]), lengths=(4, 16, 32))
    assert worse_share(scores) == {"4→16": pytest.approx(1 / 3), "16→32": 0.0, "any": pytest.approx(1 / 3)}
    table = summarize(scores, by_area=True)
    assert table["all"]["masks"] == 3 and table["all"]["miou"]["32"] == pytest.approx(2.0 / 3)
    assert table["small"]["masks"] == 1 and table["medium"]["masks"] == 1 and table["large"]["masks"] == 1
