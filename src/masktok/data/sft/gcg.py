"""GCG: grounded conversation generation (GranD-f / GLaMM data).

"Could you please give me a detail description of the image? Please respond with interleaved
segmentation masks…" → the caption with each grounded phrase wrapped as
``<|object_ref_start|>phrase<|object_ref_end|>`` and followed by its mask words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from masktok.annotations.grandf import GroundedCaption
from masktok.data.sft.base import BuildConfig, BuildResult, SampleMask, SFTSample, Turn
from masktok.data.sft.mask_words import ImageEntry, MaskRef, format_words, image_available
from masktok.words.prompts import build_answer, build_prompt

TASK = "gcg"
STYLES = ("detailed", "brief")


def grounded_from_gcg_samples(samples: list[Any]) -> list[GroundedCaption]:
    """Evaluation-suite :class:`~masktok.eval.gcg.GCGSample` records (GLaMM GCG pair or masktok
    GCG JSONL: phrases without offsets) → :class:`GroundedCaption`, each phrase located in the
    first caption after the previous one (case-insensitive).

    Raises:
        ValueError: a sample without a file name, or a phrase not found in order in its caption.
    """
    out = []
    for sample in samples:
        if not sample.file_name:
            raise ValueError(f"GCG image {sample.image_id!r}: no file name")
        caption = sample.captions[0]
        lowered, cursor, spans = caption.lower(), 0, []
        for phrase in sample.phrases:
            start = lowered.find(phrase.lower().strip(), cursor)
            if start < 0 or not phrase.strip():
                raise ValueError(f"GCG image {sample.image_id!r}: phrase {phrase!r} does not occur "
                                 f"in the caption after character {cursor}: {caption!r}")
            end = start + len(phrase.strip())
            spans.append((start, end))
            cursor = end
        out.append(GroundedCaption(
            image_id=sample.image_id, file_name=sample.file_name, height=sample.height,
            width=sample.width, caption=caption, spans=tuple(spans),
            phrases=tuple(caption[s:e] for s, e in spans), masks=tuple(sample.masks)))
    return out


def build_gcg(captions: list[GroundedCaption], images_dir: str | Path, words: Any,
              config: BuildConfig = BuildConfig(), style: str = "detailed") -> BuildResult:
    """Grounded captions → GCG samples (one per caption, the ``style`` prompt)."""
    if style not in STYLES:
        raise ValueError(f"style: expected one of {STYLES}, got {style!r}")
    result = BuildResult(TASK, [])
    prompt = build_prompt(f"gcg_{style}")
    for k, item in enumerate(captions):
        if result.full(config):
            break
        entry = ImageEntry(str(item.image_id), Path(images_dir) / item.file_name, item.height,
                           item.width)
        if not image_available(entry, config.missing_images, result):
            continue
        if not item.spans:
            result.skip("caption without grounded phrase")
            continue
        codes = words.codes(entry, [MaskRef(rle) for rle in item.masks])
        pieces, cursor = [], 0
        for (start, end), code in zip(item.spans, codes):
            pieces.append(item.caption[cursor:start])
            pieces.append(build_answer("gcg_phrase", phrase=item.caption[start:end],
                                       masks=format_words(code, words.vocabulary)))
            cursor = end
        pieces.append(item.caption[cursor:])
        result.samples.append(SFTSample(
            sample_id=f"{TASK}/{item.image_id}-{k}", task=TASK, images=[str(entry.path)],
            image_sizes=[entry.size], turns=[Turn(prompt, "".join(pieces), (0,))],
            masks=[SampleMask(0, rle) for rle in item.masks],
            meta={"image_id": entry.image_id, "phrases": list(item.phrases)}))
    return result
