"""Masks as PNG files: binary masks, 8-bit masks (thresholded), index maps and panoptic ids.

* binary: written as 8-bit grayscale 0/255; read from mode ``1`` or ``L``. An ``L`` file that is
  not plainly binary ({0, 1} or {0, 255}) needs an explicit ``threshold`` (pixel > threshold);
  no threshold is suggested, since grey levels can carry meaning (ADE20K object masks: 128 is the
  occluded part — read them with :func:`masktok.annotations.read_ade20k_object_mask`).
* index map: one integer id per pixel (palette ``P`` images such as PASCAL VOC, ``L``, 16-bit),
  turned into one mask per id.
* COCO panoptic: RGB where the segment id is ``R + 256·G + 256²·B``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from masktok.masks.arrays import as_mask, as_mask_stack, to_numpy

__all__ = [
    "read_mask_png",
    "write_mask_png",
    "read_index_png",
    "write_index_png",
    "index_map_to_masks",
    "masks_to_index_map",
    "rgb_to_panoptic_id",
    "panoptic_id_to_rgb",
    "read_panoptic_png",
    "write_panoptic_png",
]


def _open(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from exc
    if img.width == 0 or img.height == 0:
        raise ValueError(f"{path}: empty image size {img.height}x{img.width}")
    return img


def read_mask_png(path: str | Path, threshold: int | None = None) -> np.ndarray:
    """A binary mask PNG → (H, W) bool.

    Args:
        path: a mode ``1`` or 8-bit grayscale (``L``) image.
        threshold: for ``L`` images, foreground is ``pixel > threshold``. None accepts only
            plainly binary files ({0, 1} or {0, 255}) and raises on anything else.

    Raises:
        ValueError: palette / RGB / 16-bit images (use :func:`read_index_png` or
            :func:`read_panoptic_png`), or a grey-level image without ``threshold``.
    """
    img = _open(path)
    if img.mode == "1":
        return np.array(img, dtype=bool)
    if img.mode != "L":
        raise ValueError(f"{path}: a {img.mode} image is not a binary mask; use read_index_png "
                         "for palette/id maps or read_panoptic_png for COCO panoptic RGB")
    arr = np.array(img)
    if threshold is not None:
        if isinstance(threshold, bool) or not 0 <= int(threshold) <= 255:
            raise ValueError(f"threshold: expected an int in [0, 255], got {threshold!r}")
        return arr > int(threshold)
    values = np.unique(arr)
    levels = set(values.tolist())
    if levels <= {0, 1} or levels <= {0, 255}:
        return arr > 0
    if levels == {0, 128, 255} or levels == {128, 255} or levels == {0, 128}:
        raise ValueError(f"{path}: 8-bit mask holds the levels {sorted(levels)}: this looks like an "
                         "ADE20K object mask (255 visible, 128 occluded part); read it with "
                         "masktok.annotations.read_ade20k_object_mask(path, region='visible' | "
                         "'occluded' | 'amodal') — a threshold would decide silently whether the "
                         "occluded part belongs to the object")
    raise ValueError(f"{path}: 8-bit mask holds {len(values)} grey levels "
                     f"({values[:6].tolist()}{'...' if len(values) > 6 else ''}); pass threshold=T "
                     "(foreground is pixel > T) chosen for what these levels mean in your data")


def write_mask_png(path: str | Path, mask: Any) -> None:
    """(H, W) binary mask → 8-bit grayscale PNG with 0 / 255."""
    m = as_mask(mask)
    Image.fromarray(m.astype(np.uint8) * 255, mode="L").save(Path(path), format="PNG")


def read_index_png(path: str | Path) -> np.ndarray:
    """An id map (palette ``P``, ``L``, ``I;16`` or ``I``) → (H, W) int64 ids (palette indices)."""
    img = _open(path)
    if img.mode not in ("P", "L", "I;16", "I;16B", "I;16L", "I"):
        raise ValueError(f"{path}: a {img.mode} image is not an index map (expected palette, "
                         "8-bit or 16-bit grayscale)")
    return np.array(img).astype(np.int64)


def voc_palette(n: int = 256) -> list[int]:
    """The PASCAL VOC colour map (bit-interleaved) as a flat RGB list of ``n`` entries."""
    palette = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def write_index_png(path: str | Path, index_map: Any) -> None:
    """(H, W) non-negative ids → PNG: palette (VOC colours) if all ids < 256, else 16-bit."""
    ids = to_numpy(index_map, "index_map")
    if ids.ndim != 2 or 0 in ids.shape:
        raise ValueError(f"index_map: expected a non-empty (H, W) array, got shape {ids.shape}")
    if ids.dtype.kind not in "iub":
        raise ValueError(f"index_map: expected integer ids, got dtype {ids.dtype}")
    if ids.min() < 0 or ids.max() > 65535:
        raise ValueError(f"index_map: ids must lie in [0, 65535], found [{ids.min()}, {ids.max()}]")
    if ids.max() < 256:
        img = Image.fromarray(ids.astype(np.uint8), mode="P")
        img.putpalette(voc_palette())
    else:
        img = Image.fromarray(ids.astype(np.uint16))
    img.save(Path(path), format="PNG")


def index_map_to_masks(index_map: Any, exclude: Iterable[int] = (0,)
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) integer id map → (masks (N, H, W) bool, ids (N,) int64), one mask per present id.

    Args:
        exclude: ids that are not instances (background 0; PASCAL VOC also uses 255 for
            boundaries/ignore, pass ``exclude=(0, 255)`` there).
    """
    ids = to_numpy(index_map, "index_map")
    if ids.ndim != 2 or 0 in ids.shape:
        raise ValueError(f"index_map: expected a non-empty (H, W) array, got shape {ids.shape}")
    if ids.dtype.kind not in "iub":
        raise ValueError(f"index_map: expected integer ids, got dtype {ids.dtype}")
    present = np.unique(ids)
    keep = present[~np.isin(present, np.asarray(list(exclude), dtype=np.int64))]
    masks = ids[None, :, :] == keep[:, None, None]
    return masks, keep.astype(np.int64)


def masks_to_index_map(masks: Any, ids: Sequence[int] | None = None) -> np.ndarray:
    """(N, H, W) non-overlapping masks → (H, W) int64 id map (0 = background).

    Args:
        ids: the id of each mask (positive, distinct); default 1..N.

    Raises:
        ValueError: overlapping masks (an id map holds one id per pixel) or bad ids.
    """
    m = as_mask_stack(masks)
    n = m.shape[0]
    if ids is None:
        id_arr = np.arange(1, n + 1, dtype=np.int64)
    else:
        id_arr = np.asarray(list(ids), dtype=np.int64)
        if id_arr.shape != (n,):
            raise ValueError(f"ids: expected {n} ids, got {id_arr.shape[0]}")
        if n and (id_arr.min() <= 0 or len(np.unique(id_arr)) != n):
            raise ValueError("ids: must be positive and distinct (0 is background)")
    cover = m.sum(axis=0)
    if cover.max(initial=0) > 1:
        raise ValueError(f"masks: {int((cover > 1).sum())} pixel(s) belong to more than one mask; "
                         "an id map cannot hold overlapping masks")
    out = np.zeros(m.shape[1:], dtype=np.int64)
    for mask, i in zip(m, id_arr):
        out[mask] = i
    return out


def rgb_to_panoptic_id(rgb: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (H, W) int64 segment ids ``R + 256·G + 256²·B``."""
    arr = to_numpy(rgb, "rgb")
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"rgb: expected (H, W, 3) uint8, got shape {arr.shape} {arr.dtype}")
    arr = arr.astype(np.int64)
    return arr[..., 0] + 256 * arr[..., 1] + 256 * 256 * arr[..., 2]


def panoptic_id_to_rgb(ids: Any) -> np.ndarray:
    """(H, W) segment ids in [0, 256³) → (H, W, 3) uint8 RGB (inverse of rgb_to_panoptic_id)."""
    arr = to_numpy(ids, "ids")
    if arr.ndim != 2 or arr.dtype.kind not in "iu":
        raise ValueError(f"ids: expected (H, W) integers, got shape {arr.shape} {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= 256 ** 3):
        raise ValueError("ids: panoptic segment ids must lie in [0, 256**3)")
    arr = arr.astype(np.int64)
    return np.stack([arr % 256, (arr // 256) % 256, arr // (256 * 256)], axis=-1).astype(np.uint8)


def read_panoptic_png(path: str | Path) -> np.ndarray:
    """A COCO panoptic RGB PNG → (H, W) int64 segment ids (0 = void)."""
    img = _open(path)
    if img.mode != "RGB":
        raise ValueError(f"{path}: COCO panoptic PNGs are RGB, got mode {img.mode}")
    return rgb_to_panoptic_id(np.array(img))


def write_panoptic_png(path: str | Path, ids: Any) -> None:
    """(H, W) segment ids → COCO panoptic RGB PNG."""
    ids_arr = to_numpy(ids, "ids")
    if ids_arr.ndim != 2 or 0 in ids_arr.shape:
        raise ValueError(f"ids: expected a non-empty (H, W) array, got shape {ids_arr.shape}")
    Image.fromarray(panoptic_id_to_rgb(ids_arr), mode="RGB").save(Path(path), format="PNG")
