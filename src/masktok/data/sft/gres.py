"""GRES: generalized referring segmentation (gRefCOCO): zero, one or several masks per phrase.

The answer lists the masks left to right, then top to bottom, by box centre; a phrase with no
target is answered "No target.".
"""

from __future__ import annotations

from typing import Any

from masktok.data.sft.base import (
    BuildConfig,
    BuildResult,
    SampleMask,
    SFTSample,
    Turn,
    reading_order,
    sample_rng,
)
from masktok.data.sft.mask_words import format_words, image_available
from masktok.data.sft.refs import RefImage
from masktok.words.prompts import build_answer, build_prompt, join_masks

TASK = "gres"


def build_gres(images: list[RefImage], words: Any, config: BuildConfig = BuildConfig()) -> BuildResult:
    """gRefCOCO refs (see :func:`~masktok.data.sft.refs.read_refs`) → GRES samples."""
    result = BuildResult(TASK, [])
    for image in images:
        if result.full(config) or not image_available(image.entry, config.missing_images, result):
            continue
        referrings = [r for r in image.referrings if image.masks_present(r, config.empty_masks, result)]
        ann_ids = list(dict.fromkeys(a for r in referrings for a in r.ann_ids))
        refs = {a: image.mask_ref(a) for a in ann_ids}
        codes = dict(zip(ann_ids, words.codes(image.entry, [refs[a] for a in ann_ids])))
        for referring in referrings:
            if result.full(config):
                break
            boxes = [image.instance(a).box for a in referring.ann_ids]
            ordered = [referring.ann_ids[i] for i in reading_order(boxes)]
            rng = sample_rng(config.seed, TASK, referring.key)
            prompt = build_prompt("gres", index=None, rng=rng, phrase=referring.sentence)
            answer = build_answer("res", masks=join_masks(
                [format_words(codes[a], words.vocabulary) for a in ordered]))
            result.samples.append(SFTSample(
                sample_id=f"{TASK}/{referring.key}", task=TASK, images=[str(image.entry.path)],
                image_sizes=[image.entry.size], turns=[Turn(prompt, answer, (0,))],
                masks=[SampleMask(0, refs[a].rle) for a in ordered],
                meta={"image_id": image.entry.image_id, "annotation_ids": [str(a) for a in ordered],
                      "no_target": not ordered}))
    return result
