"""PNG files: binary masks, 8-bit thresholding, index maps and COCO panoptic RGB ids."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from masktok import masks as M


def _rng_masks(n=3, h=13, w=17, seed=0):
    return np.random.default_rng(seed).random((n, h, w)) < 0.4


def test_binary_png_round_trip(tmp_path):
    m = _rng_masks(1)[0]
    M.write_mask_png(tmp_path / "m.png", m)
    img = Image.open(tmp_path / "m.png")
    assert img.mode == "L" and set(np.unique(np.array(img)).tolist()) == {0, 255}
    assert np.array_equal(M.read_mask_png(tmp_path / "m.png"), m)


def test_read_mode_1_and_zero_one_png(tmp_path):
    m = _rng_masks(1, seed=1)[0]
    Image.fromarray(m).save(tmp_path / "bits.png")
    assert Image.open(tmp_path / "bits.png").mode == "1"
    assert np.array_equal(M.read_mask_png(tmp_path / "bits.png"), m)
    Image.fromarray(m.astype(np.uint8), mode="L").save(tmp_path / "01.png")
    assert np.array_equal(M.read_mask_png(tmp_path / "01.png"), m)


def test_grey_png_needs_threshold(tmp_path):
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    with pytest.raises(ValueError, match="threshold"):
        M.read_mask_png(tmp_path / "g.png")
    out = M.read_mask_png(tmp_path / "g.png", threshold=127)
    assert out.sum() == 128 and np.array_equal(out, grey > 127)
    with pytest.raises(ValueError, match="threshold"):
        M.read_mask_png(tmp_path / "g.png", threshold=300)


def test_read_mask_png_rejects_other_layouts(tmp_path):
    Image.new("RGB", (4, 3)).save(tmp_path / "rgb.png")
    Image.new("P", (4, 3)).save(tmp_path / "p.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="read_panoptic_png"):
        M.read_mask_png(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="read_index_png"):
        M.read_mask_png(tmp_path / "p.png")
    with pytest.raises(ValueError, match="not a readable image"):
        M.read_mask_png(tmp_path / "junk.png")
    with pytest.raises(FileNotFoundError):
        M.read_mask_png(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="2-D"):
        M.write_mask_png(tmp_path / "x.png", np.zeros((2, 3, 3), bool))


def test_index_png_round_trip_palette_and_16_bit(tmp_path):
    masks = _rng_masks(4)
    for i in range(1, 4):  # make them disjoint
        masks[i] &= ~masks[:i].any(axis=0)
    masks = masks[masks.any(axis=(1, 2))]
    n = len(masks)
    for ids, mode in (([3, 7, 255, 9][:n], "P"), ([300, 7, 65535, 2][:n], "I;16")):
        ids_map = M.masks_to_index_map(masks, ids=ids)
        M.write_index_png(tmp_path / "ids.png", ids_map)
        assert Image.open(tmp_path / "ids.png").mode == mode
        back = M.read_index_png(tmp_path / "ids.png")
        assert np.array_equal(back, ids_map)
        got, got_ids = M.index_map_to_masks(back, exclude=(0,))
        order = np.argsort(ids)
        assert got_ids.tolist() == sorted(ids)
        assert np.array_equal(got, masks[order])
    assert M.voc_palette()[3:6] == [128, 0, 0]  # VOC class 1 is dark red


def test_index_map_exclude_and_overlap_errors():
    ids = np.array([[0, 1, 255], [1, 2, 255]])
    masks, kept = M.index_map_to_masks(ids, exclude=(0, 255))
    assert kept.tolist() == [1, 2] and masks.sum() == 3
    overlap = np.ones((2, 3, 3), bool)
    with pytest.raises(ValueError, match="more than one mask"):
        M.masks_to_index_map(overlap)
    with pytest.raises(ValueError, match="positive and distinct"):
        M.masks_to_index_map(np.zeros((2, 3, 3), bool), ids=[1, 1])
    with pytest.raises(ValueError, match="expected 2 ids"):
        M.masks_to_index_map(np.zeros((2, 3, 3), bool), ids=[1])
    with pytest.raises(ValueError, match="integer ids"):
        M.index_map_to_masks(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 65535\]"):
        M.write_index_png("unused.png", np.full((2, 2), 70000))


def test_panoptic_ids_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 256 ** 3, size=(9, 11))
    rgb = M.panoptic_id_to_rgb(ids)
    assert rgb.dtype == np.uint8 and rgb.shape == (9, 11, 3)
    assert int(rgb[0, 0, 0]) + 256 * int(rgb[0, 0, 1]) + 65536 * int(rgb[0, 0, 2]) == ids[0, 0]
    assert np.array_equal(M.rgb_to_panoptic_id(rgb), ids)
    M.write_panoptic_png(tmp_path / "pan.png", ids)
    assert np.array_equal(M.read_panoptic_png(tmp_path / "pan.png"), ids)
    with pytest.raises(ValueError, match=r"256\*\*3"):
        M.panoptic_id_to_rgb(np.full((2, 2), 256 ** 3))
    Image.new("L", (3, 3)).save(tmp_path / "l.png")
    with pytest.raises(ValueError, match="RGB"):
        M.read_panoptic_png(tmp_path / "l.png")
