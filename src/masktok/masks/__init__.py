"""Binary masks and their file formats, as plain functions over numpy bool arrays.

A mask is an (H, W) bool array; a stack is (N, H, W). Everything accepts numpy, torch (any
device) or nested lists holding bool / 0-1 integers / 0-1 floats, validates on entry and returns
numpy bool. Conversions:

* arrays: :func:`as_mask`, :func:`as_mask_stack`
* COCO RLE: :func:`mask_to_rle`, :func:`masks_to_rles`, :func:`masks_to_rles_torch`,
  :func:`tiles_to_rles_torch` (masks given on tiles of a large image), :func:`rle_to_mask`,
  :func:`rles_to_masks`, :func:`check_rle`, :func:`check_rles` (many at once, vectorised),
  :func:`rle_counts`
* polygons: :func:`polygons_to_mask`, :func:`mask_to_polygons` (COCO, pixels),
  :func:`yolo_rings_to_mask`, :func:`mask_to_yolo_rings` (YOLO-seg, normalised)
* PNG: :func:`read_mask_png` / :func:`write_mask_png` (binary, 8-bit thresholded),
  :func:`read_index_png` / :func:`write_index_png` (palette / id maps),
  :func:`read_panoptic_png` / :func:`write_panoptic_png` (COCO panoptic RGB ids)
* boxes: :func:`mask_to_box`, :func:`masks_to_boxes`, :func:`rle_to_box` (inclusive xyxy)
* resizing: :func:`resize_mask` (stretch or keep aspect ratio)
* packed stacks: :class:`BitMasks` (8 pixels per byte, unpacked on any device)

Annotation files (COCO, panoptic, YOLO-seg, labelme) are read by :mod:`masktok.annotations`.
"""

from masktok.masks.arrays import as_mask, as_mask_stack, check_size
from masktok.masks.boxes import coco_bbox_to_xyxy, mask_to_box, masks_to_boxes, rle_to_box
from masktok.masks.png import (
    index_map_to_masks,
    masks_to_index_map,
    panoptic_id_to_rgb,
    read_index_png,
    read_mask_png,
    read_panoptic_png,
    rgb_to_panoptic_id,
    voc_palette,
    write_index_png,
    write_mask_png,
    write_panoptic_png,
)
from masktok.masks.polygons import (
    check_polygons,
    check_yolo_rings,
    mask_to_polygons,
    mask_to_yolo_rings,
    polygons_to_mask,
    polygons_to_rle,
    yolo_rings_to_mask,
)
from masktok.masks.resize import fit_size, resize_mask
from masktok.masks.rle_batch import check_rles
from masktok.masks.rle import (
    check_rle,
    compress_counts,
    mask_to_rle,
    masks_to_rles,
    masks_to_rles_torch,
    rle_area,
    rle_counts,
    rle_to_mask,
    rles_to_masks,
    tile_rles,
    tiles_to_rles_torch,
)

__all__ = [
    "BitMasks",
    "as_mask",
    "as_mask_stack",
    "check_size",
    "check_rle",
    "check_rles",
    "rle_counts",
    "rle_area",
    "mask_to_rle",
    "masks_to_rles",
    "masks_to_rles_torch",
    "rle_to_mask",
    "rles_to_masks",
    "tiles_to_rles_torch",
    "tile_rles",
    "compress_counts",
    "check_polygons",
    "check_yolo_rings",
    "polygons_to_mask",
    "polygons_to_rle",
    "mask_to_polygons",
    "yolo_rings_to_mask",
    "mask_to_yolo_rings",
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
    "voc_palette",
    "mask_to_box",
    "masks_to_boxes",
    "rle_to_box",
    "coco_bbox_to_xyxy",
    "resize_mask",
    "fit_size",
]


def __getattr__(name: str):
    # BitMasks needs torch; import it on first use so that the numpy/RLE paths stay torch-free
    if name == "BitMasks":
        from masktok.masks.bits import BitMasks

        return BitMasks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
