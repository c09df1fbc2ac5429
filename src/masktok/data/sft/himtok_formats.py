"""HiMTok's conversation formats (InternVL style, paper appendix I, tables 14–20).

========== ================================================ ===================================
format     prompt                                            answer
========== ================================================ ===================================
segment    "Segment <ref>{phrase}</ref>."                    "The mask appears at {mask}."
mask_then  mask-then-box chain of thought (table 14)         mask and box (table 15)
_box
box_to     box + points inside the mask (table 16)           the mask (table 18)
_mask
point_to   points inside the mask (table 17)                 the mask (table 18)
_mask
token      mask-then-box with a fixed number of mask         the first ``num_tokens`` codes and
_length    tokens (table 19)                                  the box (table 15)
box        grounding only (table 20)                         the box (table 20 answers)
========== ================================================ ===================================

Boxes and points are written on InternVL's 0–999 grid (``<box>[[x1, y1, x2, y2]]</box>``).
Targets are single objects: single-instance referring sentences, or categories with exactly
one instance in their image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from masktok.data.sft.base import BuildConfig, BuildResult, SampleMask, SFTSample, Turn, sample_rng
from masktok.data.sft.instance import InstanceImage, category_name
from masktok.data.sft.mask_words import ImageEntry, MaskRef, format_words, image_available
from masktok.masks import rle_to_mask
from masktok.words.prompts import build_answer, build_prompt, format_box, format_points

log = logging.getLogger(__name__)

TASK = "himtok"
FORMATS = ("segment", "mask_then_box", "box_to_mask", "point_to_mask", "token_length", "box")


def default_token_lengths(max_codes: int) -> tuple[int, ...]:
    """Powers of two from 4 (or 1 for shorter words) up to ``max_codes``, plus ``max_codes``
    (official HiMTok: 4, 8, 16, 32)."""
    lengths = [n for n in (1, 2, 4, 8, 16, 32, 64, 128) if n <= max_codes and (n >= 4 or max_codes < 4)]
    return tuple(sorted(set(lengths) | {max_codes}))


@dataclass(frozen=True)
class Target:
    """One object to segment: its phrase, mask and tight inclusive box."""

    key: str
    entry: ImageEntry
    phrase: str
    mask: MaskRef
    box: tuple[int, int, int, int]


def targets_from_refs(images: list[Any], empty_masks: str = "error") -> list[Target]:
    """Single-instance sentences of :class:`~masktok.data.sft.refs.RefImage` records; a sentence
    about an empty mask raises under ``empty_masks="error"`` and is left out (logged) under ``"skip"``."""
    out, left_out = [], 0
    for image in images:
        for r in image.referrings:
            if len(r.ann_ids) == 1 and not image.masks_present(r, empty_masks):
                left_out += 1
            elif len(r.ann_ids) == 1:
                inst = image.instance(r.ann_ids[0])
                out.append(Target(r.key, image.entry, r.sentence, image.mask_ref(r.ann_ids[0]),
                                  inst.box))
    if left_out:
        log.warning("left out %d sentences about an empty mask (empty_masks='skip')", left_out)
    return out


def targets_from_instances(images: list[InstanceImage], empty_masks: str = "error") -> list[Target]:
    """Categories with exactly one (non-crowd) instance in their image; empty masks follow
    ``empty_masks`` (:meth:`InstanceImage.targets`; left out and logged under ``"skip"``)."""
    out = []
    for image in images:
        by_name: dict[str, list] = {}
        targets = image.targets(empty_masks)
        if len(targets) < sum(not i.iscrowd for i in image.annotations.instances):
            log.warning("image %s: left out instances with an empty mask (empty_masks='skip')",
                        image.entry.image_id)
        for inst in targets:
            by_name.setdefault(category_name(inst, image), []).append(inst)
        for name, insts in by_name.items():
            if len(insts) == 1:
                out.append(Target(f"{image.entry.image_id}-{insts[0].id}", image.entry, name,
                                  image.mask_ref(insts[0]), insts[0].box))
    return out


def _points(rle: dict, rng: Any, max_points: int) -> list[tuple[int, int]]:
    ys, xs = np.nonzero(rle_to_mask(rle))
    picks = rng.sample(range(len(xs)), min(rng.randint(1, max_points), len(xs)))
    return [(int(xs[k]), int(ys[k])) for k in sorted(picks)]


def _sample(fmt: str, target: Target, codes: tuple[int, ...], vocabulary: Any, rng: Any,
            token_lengths: tuple[int, ...], max_points: int) -> tuple[str, str, bool]:
    """(prompt, answer, answer has the mask) of one format."""
    h, w = target.entry.size
    box = format_box(target.box, w, h)
    mask_words = format_words(codes, vocabulary)
    if fmt == "segment":
        return (build_prompt("himtok_segment", phrase=target.phrase),
                build_answer("himtok_segment", mask=mask_words), True)
    if fmt == "mask_then_box":
        return (build_prompt("himtok_mask_then_box", index=None, rng=rng, phrase=target.phrase),
                build_answer("himtok_mask_then_box", index=None, rng=rng, mask=mask_words, box=box),
                True)
    if fmt in ("box_to_mask", "point_to_mask"):
        points = format_points(_points(target.mask.rle, rng, max_points), w, h)
        prompt = (build_prompt("himtok_box_point", index=None, rng=rng, box=box, points=points)
                  if fmt == "box_to_mask" else
                  build_prompt("himtok_point", index=None, rng=rng, points=points))
        return prompt, build_answer("himtok_mask", index=None, rng=rng, mask=mask_words), True
    if fmt == "token_length":
        length = rng.choice(token_lengths)
        prompt = build_prompt("himtok_token_length", index=None, rng=rng, phrase=target.phrase,
                              context="", num_tokens=length)
        return prompt, build_answer("himtok_mask_then_box", index=None, rng=rng,
                                    mask=format_words(codes[:length], vocabulary), box=box), True
    return (build_prompt("himtok_box", index=None, rng=rng, phrase=target.phrase),
            build_answer("himtok_box", index=None, rng=rng, box=box), False)


def build_himtok(targets: list[Target], words: Any, config: BuildConfig = BuildConfig(),
                 formats: tuple[str, ...] = FORMATS, token_lengths: tuple[int, ...] | None = None,
                 mix: bool = True, max_points: int = 3) -> BuildResult:
    """Targets → HiMTok-format samples.

    Args:
        formats: which formats to produce (see the module table).
        token_lengths: the mask-token counts ``token_length`` samples ask for (each ≤ the
            vocabulary's ``max_codes``; HiMTok words only); None: :func:`default_token_lengths`.
        mix: one format per target, drawn from ``formats``; False: one sample per format.
        max_points: points per point prompt are drawn from 1..max_points.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats: expected a non-empty subset of {FORMATS}, got {list(formats)}")
    if token_lengths is None:
        token_lengths = default_token_lengths(words.vocabulary.max_codes)
    if "token_length" in formats:
        if not words.vocabulary.prefixes_are_words:
            raise ValueError("token_length: fixed token counts are prefixes of coarse-to-fine words; "
                             f"a {words.vocabulary.name} word holds exactly {words.vocabulary.max_codes} codes")
        too_long = [n for n in token_lengths if not 1 <= n <= words.vocabulary.max_codes]
        if too_long or not token_lengths:
            raise ValueError(f"token_lengths: expected values in [1, {words.vocabulary.max_codes}], "
                             f"got {list(token_lengths)}")
    if max_points < 1:
        raise ValueError(f"max_points: expected >= 1, got {max_points}")
    result = BuildResult(TASK, [])
    by_image: dict[str, list[Target]] = {}
    for target in targets:
        by_image.setdefault(str(target.entry.path), []).append(target)
    for group in by_image.values():
        if result.full(config):
            break
        entry = group[0].entry
        if not image_available(entry, config.missing_images, result):
            continue
        all_codes = words.codes(entry, [t.mask for t in group])
        for target, codes in zip(group, all_codes):
            rng = sample_rng(config.seed, TASK, target.key)
            chosen = [rng.choice(formats)] if mix else list(formats)
            for fmt in chosen:
                if result.full(config):
                    break
                if fmt == "token_length" and len(codes) < max(token_lengths):
                    raise ValueError(f"target {target.key}: {len(codes)} codes cannot be cut to "
                                     f"{max(token_lengths)} tokens")
                prompt, answer, has_mask = _sample(fmt, target, codes, words.vocabulary, rng,
                                                   tuple(token_lengths), max_points)
                result.samples.append(SFTSample(
                    sample_id=f"{TASK}/{fmt}/{target.key}", task=TASK, images=[str(entry.path)],
                    image_sizes=[entry.size], turns=[Turn(prompt, answer, (0,))],
                    masks=[SampleMask(0, target.mask.rle)] if has_mask else [],
                    meta={"image_id": entry.image_id, "format": fmt,
                          "annotation_ids": [target.mask.annotation_id]}))
    return result
