"""Region VQA: questions about masked regions, one turn per question.

Questions refer to the record's masks either with ``<mask>`` placeholders (each takes the next
mask's words, across the whole conversation) or not at all, in which case the first question is
``{mask words}\n{question}`` with every mask's words on the first line. Small regions bring their
zoom-in crop in the turn that first mentions them, introduced by a note, exactly as the chat
pipeline lays out a user turn.
"""

from __future__ import annotations

from typing import Any

from masktok.data.sft.base import BuildConfig, BuildResult, SampleMask, SFTSample, Turn
from masktok.data.sft.mask_words import format_words, image_available
from masktok.data.sft.regions import Region, zoom_note, zoom_view
from masktok.words.prompts import MASK_PLACEHOLDER, MASK_SEPARATOR, build_prompt

TASK = "region_vqa"


def _fill(question: str, words: list[str]) -> str:
    parts = question.split(MASK_PLACEHOLDER)
    return "".join(part + (words[i] if i < len(words) else "") for i, part in enumerate(parts))


def build_region_vqa(regions: list[Region], words: Any, config: BuildConfig = BuildConfig()) -> BuildResult:
    """Regions with question/answer pairs → region VQA samples (one conversation per record)."""
    result = BuildResult(TASK, [])
    for region in regions:
        if result.full(config):
            break
        if not region.qa:
            raise ValueError(f"region {region.key}: region VQA needs question/answer pairs")
        placeholders = [q.count(MASK_PLACEHOLDER) for q, _ in region.qa]
        if sum(placeholders) not in (0, len(region.masks)):
            raise ValueError(f"region {region.key}: {sum(placeholders)} {MASK_PLACEHOLDER!r} "
                             f"placeholders for {len(region.masks)} masks; give one per mask or none")
        if not image_available(region.entry, config.missing_images, result):
            continue
        codes = words.codes(region.entry, region.masks)
        mask_words = [format_words(c, words.vocabulary) for c in codes]
        images, sizes = [str(region.entry.path)], [region.entry.size]
        turns, masks, zoomed = [], [], 0
        next_mask = 0
        for t, ((question, answer), count) in enumerate(zip(region.qa, placeholders)):
            if sum(placeholders) == 0:
                mentioned = list(range(len(region.masks))) if t == 0 else []
            else:
                mentioned = list(range(next_mask, next_mask + count))
                next_mask += count
            shown = [0] if t == 0 else []
            notes, note_masks = [], []
            for m in mentioned:
                view = zoom_view(region.entry, region.masks[m], words, config,
                                 f"{TASK}_{region.key}_{m}")
                if view is None:
                    continue
                images.append(str(view.path))
                sizes.append(view.size)
                shown.append(len(images) - 1)
                notes.append(zoom_note(len(images), mask_words[m], view))
                note_masks += [SampleMask(0, region.masks[m].rle),
                               SampleMask(len(images) - 1, view.rle)]
                zoomed += 1
            own = [SampleMask(0, region.masks[m].rle) for m in mentioned]
            if sum(placeholders) == 0 and t == 0:
                head = MASK_SEPARATOR.join(mask_words)
                text = build_prompt("region_vqa", mask=head, question=question)
                if notes:
                    text = "\n".join([head, *notes, question])
                masks += own + note_masks
            else:
                text = _fill(question, [mask_words[m] for m in mentioned])
                if notes:
                    text = "\n".join([*notes, text])
                masks += note_masks + own
            turns.append(Turn(text, answer, tuple(shown)))
        result.samples.append(SFTSample(
            sample_id=f"{TASK}/{region.key}", task=TASK, images=images, image_sizes=sizes,
            turns=turns, masks=masks,
            meta={"image_id": region.entry.image_id, "zoom_crops": zoomed,
                  "annotation_ids": [m.annotation_id for m in region.masks]}))
    return result
