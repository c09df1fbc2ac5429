"""Multi-round interactive segmentation: one conversation per image, earlier masks come back.

Round 1 asks for a category ("Please segment {phrase} in this image."); each later round is,
at random among what the image allows: another category ("Now please segment {phrase}."), a
category next to a mask answered earlier ("Please segment {phrase} next to {mask}.", answered
with the instances whose boxes touch that mask's box grown by 5 % of the image), or an earlier
mask to name ("{mask}\nWhat is this object?", answered with its category). Masks are listed left
to right, then top to bottom; a category has all its instances as the answer.
"""

from __future__ import annotations

from typing import Any

from masktok.annotations import Instance
from masktok.data.sft.base import (
    BuildConfig,
    BuildResult,
    SampleMask,
    SFTSample,
    Turn,
    reading_order,
    sample_rng,
)
from masktok.data.sft.instance import InstanceImage, category_name
from masktok.data.sft.mask_words import format_words, image_available
from masktok.words.prompts import build_prompt, join_masks, prompt_templates, template_fields

TASK = "multi_round"
ADJACENT_MARGIN = 0.05


def _follow_up_index(fields: set[str]) -> int:
    for i, template in enumerate(prompt_templates("multi_round_follow_up")):
        if template_fields(template) == fields:
            return i
    raise ValueError(f"no multi-round follow-up template takes exactly the fields {sorted(fields)}")


def adjacent(a: Instance, b: Instance, margin: float) -> bool:
    """Whether ``b``'s box touches ``a``'s box grown by ``margin`` pixels on every side."""
    ax1, ay1, ax2, ay2 = a.box  # type: ignore[misc]
    bx1, by1, bx2, by2 = b.box  # type: ignore[misc]
    return not (bx1 > ax2 + margin or bx2 < ax1 - margin or by1 > ay2 + margin or by2 < ay1 - margin)


def build_multi_round(images: list[InstanceImage], words: Any, config: BuildConfig = BuildConfig(),
                      rounds: int = 3) -> BuildResult:
    """Instance annotations → multi-round conversations of ``rounds`` turns (fewer when the
    image runs out of categories and masks)."""
    if rounds < 2:
        raise ValueError(f"rounds: a multi-round conversation needs at least 2, got {rounds}")
    segment_next = _follow_up_index({"phrase"})
    segment_near = _follow_up_index({"phrase", "mask"})
    name_mask = _follow_up_index({"mask"})
    result = BuildResult(TASK, [])
    for image in images:
        if result.full(config):
            break
        by_name: dict[str, list[Instance]] = {}
        for inst in image.targets(config.empty_masks, result):
            by_name.setdefault(category_name(inst, image), []).append(inst)
        if len(by_name) < 2:
            result.skip("image with fewer than 2 categories")
            continue
        if not image_available(image.entry, config.missing_images, result):
            continue
        rng = sample_rng(config.seed, TASK, image.entry.image_id)
        everything = [i for insts in by_name.values() for i in insts]
        codes = dict(zip((id(i) for i in everything),
                         words.codes(image.entry, [image.mask_ref(i) for i in everything])))

        def words_of(insts: list[Instance]) -> tuple[str, list[Instance]]:
            ordered = [insts[k] for k in reading_order([i.box for i in insts])]
            return join_masks([format_words(codes[id(i)], words.vocabulary) for i in ordered]), ordered

        margin = ADJACENT_MARGIN * max(image.entry.size)
        remaining = sorted(by_name)
        rng.shuffle(remaining)
        first = remaining.pop()
        answer, ordered = words_of(by_name[first])
        turns = [Turn(build_prompt("multi_round_first", phrase=first), answer, (0,))]
        masks = [SampleMask(0, i.mask_rle) for i in ordered]
        answered: list[Instance] = list(ordered)
        answered_ids = {id(i) for i in ordered}
        named: set[int] = set()
        for _ in range(rounds - 1):
            near = [(a, name) for a in answered for name in remaining
                    if any(adjacent(a, b, margin) for b in by_name[name] if b is not a)]
            unnamed = [a for a in answered if id(a) not in named]
            options = (["segment"] if remaining else []) + (["near"] if near else []) \
                + (["name"] if unnamed else [])
            if not options:
                break
            kind = rng.choice(options)
            if kind == "name":
                target = rng.choice(unnamed)
                named.add(id(target))
                mask_words = format_words(codes[id(target)], words.vocabulary)
                prompt = build_prompt("multi_round_follow_up", index=name_mask, mask=mask_words)
                turns.append(Turn(prompt, category_name(target, image)))
                masks.append(SampleMask(0, target.mask_rle))
                continue
            if kind == "near":
                anchor, name = rng.choice(near)
                insts = [b for b in by_name[name] if b is not anchor and adjacent(anchor, b, margin)]
                mask_words = format_words(codes[id(anchor)], words.vocabulary)
                prompt = build_prompt("multi_round_follow_up", index=segment_near, phrase=name,
                                      mask=mask_words)
                masks.append(SampleMask(0, anchor.mask_rle))
            else:
                name = remaining[-1]
                insts = by_name[name]
                prompt = build_prompt("multi_round_follow_up", index=segment_next, phrase=name)
            if name in remaining:
                remaining.remove(name)
            answer, ordered = words_of(insts)
            turns.append(Turn(prompt, answer))
            masks += [SampleMask(0, i.mask_rle) for i in ordered]
            answered += [i for i in ordered if id(i) not in answered_ids]
            answered_ids.update(id(i) for i in ordered)
        result.samples.append(SFTSample(
            sample_id=f"{TASK}/{image.entry.image_id}", task=TASK, images=[str(image.entry.path)],
            image_sizes=[image.entry.size], turns=turns, masks=masks,
            meta={"image_id": image.entry.image_id, "rounds": len(turns)}))
    return result
