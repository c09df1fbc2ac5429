"""Polygons (COCO, YOLO-seg) ↔ masks: exact round trips, hole handling and validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from masktok import masks as M

# pycocotools' own decode warns under numpy 2 when called directly for reference masks
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

PROPERTY = settings(derandomize=True, max_examples=150, deadline=None)
small_masks = st.tuples(st.integers(1, 14), st.integers(1, 14)).flatmap(
    lambda hw: arrays(np.bool_, hw))


def _has_holes(m: np.ndarray) -> bool:
    # background pixels not 8-connected to the outside (COCO polygons, 4-connected foreground)
    return bool((ndimage.binary_fill_holes(m, structure=np.ones((3, 3))) & ~m).any())


@PROPERTY
@given(small_masks)
def test_polygon_round_trip_is_exact_without_holes(m):
    if not m.any():
        with pytest.raises(ValueError, match="empty"):
            M.mask_to_polygons(m)
        return
    h, w = m.shape
    filled = ndimage.binary_fill_holes(m, structure=np.ones((3, 3)))
    if _has_holes(m):
        with pytest.raises(ValueError, match="hole"):
            M.mask_to_polygons(m)
    else:
        polys = M.mask_to_polygons(m)
        assert np.array_equal(M.polygons_to_mask(polys, h, w), m)
        assert len(polys) == ndimage.label(m)[1]  # one ring per 4-connected component
    polys = M.mask_to_polygons(m, holes="fill")
    assert np.array_equal(M.polygons_to_mask(polys, h, w), filled)


def test_polygons_are_corner_vertices_on_pixel_edges():
    m = np.zeros((6, 8), dtype=bool)
    m[1:4, 2:7] = True
    m[4, 2] = True
    (ring,) = M.mask_to_polygons(m)
    pts = np.asarray(ring).reshape(-1, 2)
    assert len(pts) == 6  # an L shape: six corners, no collinear vertices
    assert {tuple(p) for p in pts} == {(2, 1), (7, 1), (7, 4), (3, 4), (3, 5), (2, 5)}


def test_diagonal_pixels_give_separate_rings():
    m = np.array([[1, 0], [0, 1]], dtype=bool)
    polys = M.mask_to_polygons(m)
    assert len(polys) == 2
    assert np.array_equal(M.polygons_to_mask(polys, 2, 2), m)


def test_ring_with_hole():
    m = np.ones((5, 5), dtype=bool)
    m[2, 2] = False
    with pytest.raises(ValueError, match="1 hole"):
        M.mask_to_polygons(m)
    assert M.polygons_to_mask(M.mask_to_polygons(m, holes="fill"), 5, 5).all()
    with pytest.raises(ValueError, match="holes"):
        M.mask_to_polygons(m, holes="keep")


def test_polygons_to_mask_matches_pycocotools_and_unites_rings():
    from pycocotools import mask as coco_mask

    rings = [[1.5, 1.2, 8.7, 2.0, 6.1, 7.9], [10, 10, 14, 10, 14, 13, 10, 13]]
    ref = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(rings, 16, 20))).astype(bool)
    out = M.polygons_to_mask(rings, 16, 20)
    assert np.array_equal(out, ref)
    assert out[10:13, 10:14].all() and out.sum() > 12
    rle = M.polygons_to_rle(rings, 16, 20)
    assert np.array_equal(M.rle_to_mask(rle), ref)


@pytest.mark.parametrize("polys, message", [
    ([[1, 1, 5, 1]], "at least 3 points"),
    ([[1, 1, 5, 1, 5]], "odd number"),
    ([[1, 1, 5, 1, 5, float("nan")]], "NaN"),
    ([[1, 1, 5, 1, 5, float("inf")]], "NaN or infinite"),
    ([[1, 1, 50, 1, 5, 5]], "outside"),
    ([[-3, 1, 5, 1, 5, 5]], "outside"),
    ([], "no polygon"),
    ([1, 1, 5, 1, 5, 5], "wrap it in a list"),
    ([[[1, 1], [5, 1], [5, 5]]], "flat list"),
    ([["a", 1, 5, 1, 5, 5]], "numbers"),
    ({"polygons": []}, "list of rings"),
])
def test_polygon_validation(polys, message):
    with pytest.raises(ValueError, match=message):
        M.polygons_to_mask(polys, 10, 10)


def test_polygon_empty_image_size():
    with pytest.raises(ValueError, match="empty image size"):
        M.polygons_to_mask([[0, 0, 1, 0, 1, 1]], 0, 10)


def test_yolo_rings_round_trip_and_validation():
    m = np.zeros((30, 40), dtype=bool)
    m[5:20, 8:31] = True
    m[25:28, 2:5] = True
    rings = M.mask_to_yolo_rings(m)
    assert len(rings) == 2
    assert all(0.0 <= v <= 1.0 for r in rings for v in r)
    assert rings[0][:2] == [8 / 40, 5 / 30]
    assert np.array_equal(M.yolo_rings_to_mask(rings, 30, 40), m)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.yolo_rings_to_mask([[0.1, 0.1, 1.5, 0.1, 0.5, 0.5]], 30, 40)
    with pytest.raises(ValueError, match="at least 3 points"):
        M.yolo_rings_to_mask([[0.1, 0.1, 0.5, 0.5]], 30, 40)
    with pytest.raises(ValueError, match="non-empty list"):
        M.yolo_rings_to_mask([], 30, 40)
