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

from __future__ import annotations

from typing import Any

TASKS = ("res", "gres", "gcg", "psg", "instance", "region_caption", "region_vqa", "multi_round",
         "himtok")

# name → module under masktok.data.sft; imported on first use, so reading the configs and the
# task names (the command line does) does not load the builders.
_LAZY = {
    "BuildConfig": "base", "BuildResult": "base", "SampleMask": "base", "SFTSample": "base", "Turn": "base",
    "check_sample": "base", "reading_order": "base",
    "build_gcg": "gcg", "grounded_from_gcg_samples": "gcg",
    "build_gres": "gres",
    "build_himtok": "himtok_formats", "targets_from_instances": "himtok_formats",
    "targets_from_refs": "himtok_formats",
    "InstanceImage": "instance", "build_instance": "instance", "instance_images": "instance",
    "ImageEntry": "mask_words", "MaskRef": "mask_words", "ParquetWords": "mask_words",
    "TokenizerWords": "mask_words",
    "build_multi_round": "multi_round",
    "WrittenBuild": "pipeline", "write_build": "pipeline",
    "build_psg": "psg",
    "RefImage": "refs", "read_refs": "refs",
    "build_region_caption": "region_caption",
    "build_region_vqa": "region_vqa",
    "Region": "regions", "read_region_jsonl": "regions", "regions_from_refs": "regions",
    "build_res": "res",
}

__all__ = ["TASKS", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"masktok.data.sft.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'masktok.data.sft' has no attribute {name!r}")
