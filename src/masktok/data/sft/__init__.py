"""SFT conversation builders: mask words in LLaVA JSON and TRL JSONL, one builder per task.

=============== ==================================================== ===========================
task            input                                                builder
=============== ==================================================== ===========================
res             RefCOCO/+/g refs + COCO instances                    :func:`build_res`
gres            gRefCOCO grefs + COCO instances                      :func:`build_gres`
gcg             GranD-f JSON, GLaMM GCG pair or masktok GCG JSONL    :func:`build_gcg`
psg             OpenPSG JSON + panoptic PNGs                         :func:`build_psg`
instance        COCO / panoptic / YOLO instances (category names)    :func:`build_instance`
region_caption  refs (sentence = caption) or region JSONL            :func:`build_region_caption`
region_vqa      region JSONL with question/answer pairs              :func:`build_region_vqa`
multi_round     COCO / panoptic / YOLO instances                     :func:`build_multi_round`
himtok          refs or instances (single objects)                   :func:`build_himtok`
=============== ==================================================== ===========================

Words come from a tokenizer on the fly (:class:`TokenizerWords`) or from a finished
``tokenize-dataset`` output (:class:`ParquetWords`); prompts and answers from
:mod:`masktok.words.prompts`. Builds are deterministic given :attr:`BuildConfig.seed`.
"""

from masktok.data.sft.base import (
    BuildConfig,
    BuildResult,
    SampleMask,
    SFTSample,
    Turn,
    check_sample,
    reading_order,
)
from masktok.data.sft.gcg import build_gcg, grounded_from_gcg_samples
from masktok.data.sft.gres import build_gres
from masktok.data.sft.himtok_formats import (
    build_himtok,
    targets_from_instances,
    targets_from_refs,
)
from masktok.data.sft.instance import InstanceImage, build_instance, instance_images
from masktok.data.sft.mask_words import ImageEntry, MaskRef, ParquetWords, TokenizerWords
from masktok.data.sft.multi_round import build_multi_round
from masktok.data.sft.pipeline import WrittenBuild, write_build
from masktok.data.sft.psg import build_psg
from masktok.data.sft.refs import RefImage, read_refs
from masktok.data.sft.region_caption import build_region_caption
from masktok.data.sft.region_vqa import build_region_vqa
from masktok.data.sft.regions import Region, read_region_jsonl, regions_from_refs
from masktok.data.sft.res import build_res

TASKS = ("res", "gres", "gcg", "psg", "instance", "region_caption", "region_vqa", "multi_round",
         "himtok")

__all__ = [
    "TASKS", "BuildConfig", "BuildResult", "ImageEntry", "InstanceImage", "MaskRef",
    "ParquetWords", "Region", "RefImage", "SFTSample", "SampleMask", "TokenizerWords", "Turn",
    "WrittenBuild", "build_gcg", "build_gres", "build_himtok", "build_instance",
    "build_multi_round", "build_psg", "build_region_caption", "build_region_vqa", "build_res",
    "check_sample", "grounded_from_gcg_samples", "instance_images", "read_refs",
    "read_region_jsonl", "reading_order", "regions_from_refs", "targets_from_instances",
    "targets_from_refs", "write_build",
]
