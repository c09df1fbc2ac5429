"""Annotation readers: COCO instances, COCO panoptic, YOLO-seg folders, labelme JSON, LVIS,
ADE20K full-dataset annotations and Cityscapes / Mapillary Vistas 16-bit instance PNGs.

Each returns a list of :class:`ImageAnnotations` (image id, file name, size, instances); each
:class:`Instance` carries its mask as compressed COCO RLE (``.mask()`` decodes it to (H, W)
bool), category, id, area, crowd flag and tight inclusive box. Malformed input raises
:class:`AnnotationError` (a ``ValueError``) naming the file and the record.
"""

from masktok.annotations.ade20k import read_ade20k_object_mask, read_ade20k_objects, read_ade20k_seg
from masktok.annotations.coco import (CocoInstancesIndex, read_coco_categories, read_coco_instances,
                                      read_coco_panoptic)
from masktok.annotations.instance_id_png import read_cityscapes_instance_png, read_mapillary_instance_png
from masktok.annotations.labelme import IGNORE_LABEL, read_labelme
from masktok.annotations.lvis import LVISDataset, read_lvis
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
    "read_lvis",
    "LVISDataset",
    "read_ade20k_seg",
    "read_ade20k_objects",
    "read_ade20k_object_mask",
    "read_cityscapes_instance_png",
    "read_mapillary_instance_png",
]
