"""RES: referring expression segmentation (RefCOCO / RefCOCO+ / RefCOCOg).

One sample per sentence: "Please segment {phrase} in this image." → the referred mask's words.
"""

from __future__ import annotations

from typing import Any

from masktok.data.sft.base import BuildConfig, BuildResult, SampleMask, SFTSample, Turn, sample_rng
from masktok.data.sft.mask_words import format_words, image_available
from masktok.data.sft.refs import RefImage
from masktok.words.prompts import build_answer, build_prompt

TASK = "res"


def build_res(images: list[RefImage], words: Any, config: BuildConfig = BuildConfig()) -> BuildResult:
    """RefCOCO-family refs (see :func:`~masktok.data.sft.refs.read_refs`) → RES samples.

    Sentences referring to several instances (or none) belong to GRES and raise ValueError here.
    """
    result = BuildResult(TASK, [])
    for image in images:
        if result.full(config) or not image_available(image.entry, config.missing_images, result):
            continue
        for referring in image.referrings:
            if len(referring.ann_ids) != 1:
                raise ValueError(f"sentence {referring.key}: RES needs exactly one referred "
                                 f"instance, got {len(referring.ann_ids)} (use the gres task)")
        referrings = [r for r in image.referrings if image.masks_present(r, config.empty_masks, result)]
        refs = [image.mask_ref(r.ann_ids[0]) for r in referrings]
        codes = words.codes(image.entry, refs)
        for referring, ref, code in zip(referrings, refs, codes):
            if result.full(config):
                break
            rng = sample_rng(config.seed, TASK, referring.key)
            prompt = build_prompt("res", index=None, rng=rng, phrase=referring.sentence)
            answer = build_answer("res", masks=format_words(code, words.vocabulary))
            result.samples.append(SFTSample(
                sample_id=f"{TASK}/{referring.key}", task=TASK, images=[str(image.entry.path)],
                image_sizes=[image.entry.size], turns=[Turn(prompt, answer, (0,))],
                masks=[SampleMask(0, ref.rle)],
                meta={"image_id": image.entry.image_id, "annotation_ids": [ref.annotation_id]}))
    return result
