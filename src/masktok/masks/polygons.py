"""Polygons ↔ masks: COCO polygon lists and YOLO-seg normalised rings.

A COCO polygon is a flat list ``[x1, y1, x2, y2, ...]`` in pixel coordinates where pixel (row r,
column c) covers the square ``[c, c+1] × [r, r+1]``; an instance is a list of such rings, united.
Rasterisation is pycocotools' (the COCO convention).

:func:`mask_to_polygons` traces the pixel *edges* of the mask (not pixel centres), so for a mask
without holes ``polygons_to_mask(mask_to_polygons(m), H, W)`` gives ``m`` back bit for bit. COCO
polygons cannot carry holes; a mask with holes raises unless ``holes="fill"`` is asked for.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
from pycocotools import mask as coco_mask

from masktok.masks.arrays import as_mask, check_size
from masktok.masks.rle import decode_checked

__all__ = [
    "check_polygons",
    "check_yolo_rings",
    "polygons_to_rle",
    "polygons_to_mask",
    "mask_to_polygons",
    "yolo_rings_to_mask",
    "mask_to_yolo_rings",
]

#: Polygon points may sit this far (pixels) outside the image: annotators click on the border.
BOUNDS_MARGIN = 1.0


def check_polygons(polygons: Any, height: int, width: int, name: str = "polygons"
                   ) -> list[list[float]]:
    """Validate COCO polygons for an image of (height, width).

    Each ring needs ≥ 3 points (6 numbers, even count), finite coordinates inside the image
    (± :data:`BOUNDS_MARGIN`). Returns the rings as lists of floats.
    """
    h, w = check_size((height, width), f"{name}: image size")
    if isinstance(polygons, (str, bytes, dict)) or not isinstance(polygons, Sequence):
        raise ValueError(f"{name}: expected a list of rings [[x1, y1, x2, y2, ...], ...], got "
                         f"{type(polygons).__name__}")
    if len(polygons) == 0:
        raise ValueError(f"{name}: no polygon given")
    if all(isinstance(v, (int, float, np.number)) for v in polygons):
        raise ValueError(f"{name}: got one flat ring; wrap it in a list: [[x1, y1, ...]]")
    rings = []
    for i, ring in enumerate(polygons):
        try:
            arr = np.asarray(ring, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name}[{i}]: not a flat list of numbers") from None
        if arr.ndim != 1:
            raise ValueError(f"{name}[{i}]: expected a flat list [x1, y1, ...], got shape "
                             f"{arr.shape}")
        if arr.size % 2:
            raise ValueError(f"{name}[{i}]: odd number of coordinates ({arr.size})")
        if arr.size < 6:
            raise ValueError(f"{name}[{i}]: a polygon needs at least 3 points, got {arr.size // 2}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}[{i}]: holds NaN or infinite coordinates")
        xs, ys = arr[0::2], arr[1::2]
        m = BOUNDS_MARGIN
        if xs.min() < -m or xs.max() > w + m or ys.min() < -m or ys.max() > h + m:
            raise ValueError(f"{name}[{i}]: points outside the {h}x{w} image (x in "
                             f"[{xs.min():g}, {xs.max():g}], y in [{ys.min():g}, {ys.max():g}])")
        rings.append(arr.tolist())
    return rings


def polygons_to_rle(polygons: Any, height: int, width: int, name: str = "polygons") -> dict:
    """COCO polygons → one compressed RLE (the rings united), ``counts`` as str."""
    rings = check_polygons(polygons, height, width, name)
    rle = coco_mask.merge(coco_mask.frPyObjects(rings, int(height), int(width)))
    return {"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")}


def polygons_to_mask(polygons: Any, height: int, width: int) -> np.ndarray:
    """COCO polygons (list of flat ``[x1, y1, ...]`` rings, pixels) → (height, width) bool."""
    rings = check_polygons(polygons, height, width)
    rle = coco_mask.merge(coco_mask.frPyObjects(rings, int(height), int(width)))
    return decode_checked(rle).astype(bool)


# Boundary edges, directed so the foreground lies on the right in image coordinates (y down):
# 0 = +x (top edges), 1 = +y (right edges), 2 = -x (bottom edges), 3 = -y (left edges).
_STEP = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])


def _boundary_loops(mask: np.ndarray) -> list[np.ndarray]:
    """Closed pixel-edge loops of a bool mask, as (K, 2) integer vertex arrays (x, y).

    Outer boundaries run clockwise on screen (positive shoelace area), holes the other way. At a
    vertex where two pixels touch only diagonally the walk turns towards the foreground, so
    diagonal neighbours get separate loops (4-connected components).
    """
    h, w = mask.shape
    p = np.pad(mask, 1)
    inner = p[1:-1, 1:-1]
    edges = []  # (start_x, start_y, direction)
    for direction, (dr, dc), (sx, sy) in (
        (0, (-1, 0), (0, 0)),  # top edge: from (c, r) to (c+1, r)
        (1, (0, 1), (1, 0)),   # right edge: from (c+1, r) to (c+1, r+1)
        (2, (1, 0), (1, 1)),   # bottom edge: from (c+1, r+1) to (c, r+1)
        (3, (0, -1), (0, 1)),  # left edge: from (c, r+1) to (c, r)
    ):
        nb = p[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]
        r, c = np.nonzero(inner & ~nb)
        edges.append(np.stack([c + sx, r + sy, np.full_like(r, direction)], axis=1))
    e = np.concatenate(edges)
    n = len(e)
    stride = w + 2
    start_key = e[:, 1] * stride + e[:, 0]
    end = e[:, :2] + _STEP[e[:, 2]]
    end_key = end[:, 1] * stride + end[:, 0]
    order = np.argsort(start_key, kind="stable")
    sorted_keys = start_key[order]
    first = np.searchsorted(sorted_keys, end_key, side="left")
    count = np.searchsorted(sorted_keys, end_key, side="right") - first
    nxt = order[first]
    ambiguous = np.flatnonzero(count == 2)
    if ambiguous.size:  # two ways out: take the right turn (towards the foreground)
        a, b = order[first[ambiguous]], order[first[ambiguous] + 1]
        want = (e[ambiguous, 2] + 1) % 4
        nxt[ambiguous] = np.where(e[a, 2] == want, a, b)
    seen = np.zeros(n, dtype=bool)
    nxt_list = nxt.tolist()
    loops = []
    for s in range(n):
        if seen[s]:
            continue
        cycle = []
        i = s
        while not seen[i]:
            seen[i] = True
            cycle.append(i)
            i = nxt_list[i]
        idx = np.asarray(cycle)
        dirs = e[idx, 2]
        turn = dirs != np.roll(dirs, 1)  # keep corner vertices only
        loops.append(e[idx[turn], :2])
    return loops


def _shoelace2(v: np.ndarray) -> int:
    """Twice the signed area of a closed integer polygon (K, 2)."""
    x, y = v[:, 0], v[:, 1]
    return int(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def mask_to_polygons(mask: Any, holes: Literal["error", "fill"] = "error") -> list[list[float]]:
    """(H, W) binary mask → COCO polygons tracing the pixel edges (exact for hole-free masks).

    Args:
        mask: (H, W) binary; must not be empty.
        holes: ``"error"`` raises ValueError when the mask has holes (COCO polygons cannot
            express them); ``"fill"`` returns the outer boundaries, i.e. the mask with its holes
            filled.

    Returns:
        One ring per 4-connected component, each ``[x1, y1, x2, y2, ...]`` (floats, corner
        vertices only), ordered by first appearance in row-major order.
    """
    if holes not in ("error", "fill"):
        raise ValueError(f"holes: expected 'error' or 'fill', got {holes!r}")
    m = as_mask(mask)
    if not m.any():
        raise ValueError("mask: empty mask has no polygon outline")
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    crop = m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]  # trace the tight box only
    offset = np.array([cols[0], rows[0]])
    outer, n_holes = [], 0
    for loop in (loop + offset for loop in _boundary_loops(crop)):
        if _shoelace2(loop) > 0:
            outer.append(loop)
        else:
            n_holes += 1
    if n_holes and holes == "error":
        raise ValueError(f"mask: has {n_holes} hole(s), which COCO polygons cannot represent; "
                         "pass holes='fill' to fill them or keep the mask as RLE")
    return [loop.astype(np.float64).ravel().tolist() for loop in outer]


def check_yolo_rings(rings: Any, name: str = "rings") -> list[np.ndarray]:
    """Validate YOLO-seg rings: flat ``[x1, y1, ...]`` lists, ≥ 3 points, finite, in [0, 1]."""
    if isinstance(rings, (str, bytes, dict)) or not isinstance(rings, Sequence) or not rings:
        raise ValueError(f"{name}: expected a non-empty list of rings [[x1, y1, ...], ...]")
    out = []
    for i, ring in enumerate(rings):
        try:
            arr = np.asarray(ring, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name}[{i}]: not a flat list of numbers") from None
        if arr.ndim != 1 or arr.size % 2:
            raise ValueError(f"{name}[{i}]: expected an even-length flat list of coordinates")
        if arr.size < 6:
            raise ValueError(f"{name}[{i}]: a polygon needs at least 3 points, got {arr.size // 2}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}[{i}]: holds NaN or infinite coordinates")
        if arr.min() < 0.0 or arr.max() > 1.0:
            raise ValueError(f"{name}[{i}]: normalised coordinates must lie in [0, 1], found "
                             f"[{arr.min():g}, {arr.max():g}]")
        out.append(arr)
    return out


def yolo_rings_to_mask(rings: Any, height: int, width: int) -> np.ndarray:
    """YOLO-seg rings (flat ``[x1, y1, ...]`` normalised to [0, 1]) → (height, width) bool."""
    h, w = check_size((height, width), "image size")
    scale = np.array([w, h], dtype=np.float64)
    pixel_rings = [(r.reshape(-1, 2) * scale).ravel().tolist()
                   for r in check_yolo_rings(rings, "rings")]
    return polygons_to_mask(pixel_rings, h, w)


def mask_to_yolo_rings(mask: Any, holes: Literal["error", "fill"] = "error") -> list[list[float]]:
    """(H, W) binary mask → YOLO-seg rings normalised by (W, H); one ring per component.

    YOLO-seg label lines hold one ring per object; a mask with several components gives several
    rings, which the caller writes as separate lines or keeps as RLE.
    """
    m = as_mask(mask)
    h, w = m.shape
    scale = np.array([w, h], dtype=np.float64)
    return [(np.asarray(r).reshape(-1, 2) / scale).ravel().tolist()
            for r in mask_to_polygons(m, holes=holes)]
