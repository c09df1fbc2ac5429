"""Mask arrays, COCO RLE, boxes and resizing: behaviour and validation on synthetic masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as coco_mask

from masktok import masks as M

PROPERTY = settings(derandomize=True, max_examples=60, deadline=None)

small_masks = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda hw: arrays(np.bool_, hw))
small_stacks = st.tuples(st.integers(0, 4), st.integers(1, 16), st.integers(1, 16)).flatmap(
    lambda nhw: arrays(np.bool_, nhw))


def _blob(h=9, w=11):
    m = np.zeros((h, w), dtype=bool)
    m[2:6, 3:9] = True
    m[7, 1] = True
    return m


# --- as_mask / as_mask_stack -------------------------------------------------------------------

@pytest.mark.parametrize("convert", [
    lambda m: m, lambda m: m.astype(np.uint8), lambda m: m.astype(np.int64),
    lambda m: m.astype(np.float32), lambda m: torch.from_numpy(m),
    lambda m: torch.from_numpy(m).to(torch.uint8), lambda m: torch.from_numpy(m).bfloat16(),
    lambda m: m.tolist(),
])
def test_as_mask_accepts_binary_inputs(convert):
    m = _blob()
    out = M.as_mask(convert(m))
    assert out.dtype == np.bool_ and out.shape == m.shape
    assert np.array_equal(out, m)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 3, 4), bool), "2-D"),
    (np.zeros(5, bool), "2-D"),
    (np.zeros((0, 4), bool), "empty image size"),
    (np.zeros((4, 0), np.uint8), "empty image size"),
    (np.array([[0, 2], [1, 0]], np.uint8), "only 0 and 1"),
    (np.array([[0, -1], [1, 0]]), "only 0 and 1"),
    (np.array([[0.0, np.nan], [1.0, 0.0]]), "NaN"),
    (np.array([[0.2, 0.9], [1.0, 0.0]]), "threshold"),
    (np.array([["a", "b"]]), "dtype"),
    ("mask", "expected an array"),
    (None, "expected an array"),
])
def test_as_mask_rejects(bad, message):
    with pytest.raises(ValueError, match=message):
        M.as_mask(bad, name="m")


def test_as_mask_names_the_input():
    with pytest.raises(ValueError, match=r"^pred: "):
        M.as_mask(np.zeros((1, 2, 3)), name="pred")


def test_as_mask_stack():
    stack = np.stack([_blob(), ~_blob()])
    assert np.array_equal(M.as_mask_stack(torch.from_numpy(stack).float()), stack)
    assert M.as_mask_stack(np.zeros((0, 5, 6), np.uint8)).shape == (0, 5, 6)
    with pytest.raises(ValueError, match="as_mask"):
        M.as_mask_stack(_blob())
    with pytest.raises(ValueError, match="empty image size"):
        M.as_mask_stack(np.zeros((2, 0, 3), bool))
    with pytest.raises(ValueError, match="NaN"):
        M.as_mask_stack(torch.full((1, 2, 2), float("nan")))


# --- RLE ---------------------------------------------------------------------------------------

@PROPERTY
@given(small_masks)
def test_rle_round_trip_and_pycocotools_agreement(m):
    rle = M.mask_to_rle(m)
    assert rle["size"] == list(m.shape) and isinstance(rle["counts"], str)
    ref = coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))
    assert rle["counts"] == ref["counts"].decode()
    unc = M.mask_to_rle(m, compressed=False)
    assert sum(unc["counts"]) == m.size
    assert M.rle_counts(rle) == unc["counts"]
    assert np.array_equal(M.rle_to_mask(rle), m)
    assert np.array_equal(M.rle_to_mask(unc), m)
    assert M.rle_area(rle) == int(m.sum())


def test_uncompressed_counts_follow_coco_convention():
    m = np.array([[1, 0, 0], [1, 1, 0]], dtype=bool)  # column-major: 1 1 0 1 0 0
    assert M.mask_to_rle(m, compressed=False)["counts"] == [0, 2, 1, 1, 2]
    assert M.mask_to_rle(~m, compressed=False)["counts"] == [2, 1, 1, 2]


@PROPERTY
@given(small_stacks)
def test_masks_to_rles_matches_single_and_torch(stack):
    rles = M.masks_to_rles(stack)
    assert rles == [M.mask_to_rle(m) for m in stack]
    assert M.masks_to_rles_torch(torch.from_numpy(stack)) == rles
    assert M.masks_to_rles_torch(torch.from_numpy(stack).to(torch.uint8), compressed=False) == \
        M.masks_to_rles(stack, compressed=False)
    if len(stack):
        assert np.array_equal(M.rles_to_masks(rles), stack)


def test_masks_to_rles_torch_large_and_edge_cases():
    g = torch.Generator().manual_seed(0)
    stack = torch.rand((6, 97, 131), generator=g) < 0.5
    stack[0] = False
    stack[1] = True
    stack[2, :, 0] = True
    stack[3, -1, -1] = True
    assert M.masks_to_rles_torch(stack) == M.masks_to_rles(stack.numpy())
    assert M.masks_to_rles_torch(torch.zeros((0, 3, 4), dtype=torch.bool)) == []
    with pytest.raises(ValueError, match="torch tensor"):
        M.masks_to_rles_torch(stack.numpy())
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        M.masks_to_rles_torch(stack[0])
    with pytest.raises(ValueError, match="only 0 and 1"):
        M.masks_to_rles_torch(torch.full((1, 2, 2), 3))
    with pytest.raises(ValueError, match="NaN"):
        M.masks_to_rles_torch(torch.full((1, 2, 2), float("nan")))


def test_rle_size_must_agree():
    rle = M.mask_to_rle(_blob())
    with pytest.raises(ValueError, match="disagrees"):
        M.rle_to_mask(rle, size=(9, 12))
    assert M.rle_to_mask(rle, size=(9, 11)).shape == (9, 11)
    with pytest.raises(ValueError, match="disagrees"):
        M.rles_to_masks([rle, M.mask_to_rle(np.ones((3, 3), bool))])


@pytest.mark.parametrize("bad, message", [
    ({"size": [4, 5], "counts": "5220003"[:-1] + "5"}, "add up to"),  # runs too long
    ({"size": [8, 5], "counts": "5220003"}, "add up to"),  # pycocotools would read garbage
    ({"size": [4, 5], "counts": ""}, "add up to"),
    ({"size": [4, 5], "counts": "!!!"}, "alphabet"),
    ({"size": [4, 5], "counts": "52200\x7f"}, "alphabet"),
    ({"size": [4, 5], "counts": "522000S"}, "middle of a count"),
    ({"size": [4, 5], "counts": [1, 2, 3]}, "add up to"),
    ({"size": [4, 5], "counts": [25, -5]}, "negative"),
    ({"size": [4, 5], "counts": [1.5, 18.5]}, "integers"),
    ({"size": [0, 5], "counts": []}, "empty image size"),
    ({"size": [4], "counts": "5220003"}, "height, width"),
    ({"size": [4.0, 5.0], "counts": "5220003"}, "integers"),
    ({"counts": "5220003"}, "'size' and 'counts'"),
    ({"size": [4, 5], "counts": 7}, "string or a list"),
    ([1, 2], "COCO RLE dict"),
])
def test_rle_validation(bad, message):
    with pytest.raises(ValueError, match=message):
        M.rle_to_mask(bad)


def test_a_validated_rle_is_not_trusted_under_another_size():
    valid = {"size": [4, 5], "counts": "5220003"}
    assert M.check_rle(valid)["counts"] == b"5220003"
    assert M.check_rle(valid)["counts"] == b"5220003"  # seen before: not parsed again
    with pytest.raises(ValueError, match="add up to"):
        M.check_rle({"size": [8, 5], "counts": "5220003"})
    with pytest.raises(ValueError, match="disagrees"):
        M.check_rle(valid, size=(5, 4))


def test_rle_accepts_bytes_counts_and_rles_to_masks_needs_size_when_empty():
    m = _blob()
    rle = M.mask_to_rle(m)
    assert np.array_equal(M.rle_to_mask({"size": rle["size"], "counts": rle["counts"].encode()}), m)
    assert M.rles_to_masks([], size=(3, 4)).shape == (0, 3, 4)
    with pytest.raises(ValueError, match="no size"):
        M.rles_to_masks([])
    with pytest.raises(ValueError, match="one dict"):
        M.rles_to_masks(rle)


# --- boxes -------------------------------------------------------------------------------------

@PROPERTY
@given(small_masks)
def test_boxes_are_tight_and_inclusive(m):
    if not m.any():
        with pytest.raises(ValueError, match="empty"):
            M.mask_to_box(m)
        assert M.rle_to_box(M.mask_to_rle(m)) is None
        return
    x1, y1, x2, y2 = M.mask_to_box(m)
    assert m[:, x1].any() and m[:, x2].any() and m[y1].any() and m[y2].any()
    assert not m[:, :x1].any() and not m[:, x2 + 1:].any()
    assert not m[:y1].any() and not m[y2 + 1:].any()
    assert M.rle_to_box(M.mask_to_rle(m)) == (x1, y1, x2, y2)
    assert M.masks_to_boxes(m[None]).tolist() == [[x1, y1, x2, y2]]
    assert M.masks_to_boxes(torch.from_numpy(m[None])).tolist() == [[x1, y1, x2, y2]]


def test_masks_to_boxes_single_pixel_and_errors():
    m = np.zeros((2, 5, 7), dtype=bool)
    m[0, 4, 6] = True
    m[1, 0, 0] = True
    expected = [[6, 4, 6, 4], [0, 0, 0, 0]]
    assert M.masks_to_boxes(m).tolist() == expected
    out = M.masks_to_boxes(torch.from_numpy(m).float())
    assert out.dtype == np.int64 and out.tolist() == expected
    m[1] = False
    for x in (m, torch.from_numpy(m)):
        with pytest.raises(ValueError, match="mask 1 is empty"):
            M.masks_to_boxes(x)
    assert M.coco_bbox_to_xyxy([10, 20, 5, 4]) == (10, 20, 14, 23)
    with pytest.raises(ValueError, match="w, h > 0"):
        M.coco_bbox_to_xyxy([1, 2, 0, 3])


# --- resizing ----------------------------------------------------------------------------------

def test_resize_stretch_integer_factor_is_exact_and_reversible():
    m = _blob()
    up = M.resize_mask(m, (27, 22))
    assert up.shape == (27, 22)
    assert np.array_equal(up, np.repeat(np.repeat(m, 3, axis=0), 2, axis=1))
    assert np.array_equal(M.resize_mask(up, m.shape), m)


def test_resize_keep_aspect_letterboxes_bottom_right():
    m = np.zeros((50, 100), dtype=bool)
    m[10:40, 20:60] = True
    out = M.resize_mask(m, (64, 64), keep_aspect=True)
    assert out.shape == (64, 64)
    assert M.fit_size((50, 100), (64, 64)) == (32, 64)
    assert not out[32:].any()
    inner = out[:32]
    assert np.array_equal(inner, M.resize_mask(m, (32, 64)))
    # pixel-centre sampling at scale 0.64: output column j reads source column (j + 0.5) / 0.64
    assert M.mask_to_box(inner) == (13, 6, 37, 25)
    tall = M.resize_mask(m.T, (64, 64), keep_aspect=True)
    assert not tall[:, 32:].any() and tall[:, :32].any()


def test_resize_bilinear_keeps_area_roughly_and_validates():
    m = np.zeros((200, 200), dtype=bool)
    yy, xx = np.mgrid[:200, :200]
    m[(yy - 100) ** 2 + (xx - 100) ** 2 < 60 ** 2] = True
    small = M.resize_mask(m, (50, 50), mode="bilinear")
    assert abs(int(small.sum()) * 16 - int(m.sum())) / m.sum() < 0.02
    with pytest.raises(ValueError, match="mode"):
        M.resize_mask(m, (5, 5), mode="cubic")
    with pytest.raises(ValueError, match="empty image size"):
        M.resize_mask(m, (0, 5))
    with pytest.raises(ValueError, match="integers"):
        M.resize_mask(m, (5.5, 5))
