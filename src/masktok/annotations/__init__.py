"""Annotation readers: COCO instances, COCO panoptic, YOLO-seg folders and labelme JSON.

Each returns a list of :class:`ImageAnnotations` (image id, file name, size, instances); each
:class:`Instance` carries its mask as compressed COCO RLE (``.mask()`` decodes it to (H, W)
bool), category, id, area, crowd flag and tight inclusive box. Malformed input raises
:class:`AnnotationError` (a ``ValueError``) naming the file and the record.
"""

from masktok.annotations.coco import (CocoInstancesIndex, read_coco_categories, read_coco_instances,
                                      read_coco_panoptic)
from masktok.annotations.labelme import IGNORE_LABEL, read_labelme
from masktok.annotations.records import AnnotationError, ImageAnnotations, Instance
from masktok.annotations.yolo import read_yolo_seg

__all__ = [
    "AnnotationError",
    "CocoInstancesIndex",
    "ImageAnnotations",
    "Instance",
    "IGNORE_LABEL",
    "read_coco_instances",
    "read_coco_panoptic",
    "read_coco_categories",
    "read_yolo_seg",
    "read_labelme",
]
