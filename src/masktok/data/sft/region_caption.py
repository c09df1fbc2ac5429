"""Region caption: "{mask words}\nDescribe the masked area comprehensively." → the caption.

A small region (box area / image area < 0.3) also gets its zoom-in crop as a second image; the
prompt then reads ``{words}\nImage 2 zooms in on {words}, shown there as {crop words}.\n{question}``
(the layout of the chat pipeline), where the question is the chosen caption prompt's.
"""

from __future__ import annotations

from typing import Any

from masktok.data.sft.base import BuildConfig, BuildResult, SampleMask, SFTSample, Turn, sample_rng
from masktok.data.sft.mask_words import format_words, image_available
from masktok.data.sft.regions import Region, zoom_view
from masktok.words.prompts import build_prompt, fill, prompt_templates

TASK = "region_caption"


def caption_question(template: str) -> str:
    """A caption prompt template without its leading mask line (the question alone)."""
    return fill(template, mask="").lstrip("\n")


def build_region_caption(regions: list[Region], words: Any,
                         config: BuildConfig = BuildConfig()) -> BuildResult:
    """Captioned single-mask regions → region caption samples (zoom-in variant for small ones)."""
    result = BuildResult(TASK, [])
    templates = prompt_templates("region_caption")
    for region in regions:
        if result.full(config):
            break
        if region.caption is None or len(region.masks) != 1:
            raise ValueError(f"region {region.key}: a region caption needs one mask and a caption")
        if not image_available(region.entry, config.missing_images, result):
            continue
        rng = sample_rng(config.seed, TASK, region.key)
        template = rng.choice(templates)
        mask = region.masks[0]
        mask_words = format_words(words.codes(region.entry, [mask])[0], words.vocabulary)
        view = zoom_view(region.entry, mask, words, config, f"{TASK}_{region.key}")
        images, sizes = [str(region.entry.path)], [region.entry.size]
        masks = [SampleMask(0, mask.rle)]
        if view is None:
            prompt, shown = fill(template, mask=mask_words), (0,)
        else:
            prompt = build_prompt("zoom_in", mask=mask_words, zoom_mask=view.words,
                                  question=caption_question(template))
            images.append(str(view.path))
            sizes.append(view.size)
            masks += [SampleMask(0, mask.rle), SampleMask(1, view.rle)]
            shown = (0, 1)
        result.samples.append(SFTSample(
            sample_id=f"{TASK}/{region.key}", task=TASK, images=images, image_sizes=sizes,
            turns=[Turn(prompt, region.caption, shown)], masks=masks,
            meta={"image_id": region.entry.image_id, "zoom": view is not None,
                  "annotation_ids": [mask.annotation_id]}))
    return result
