"""Instance segmentation by category lists (COCO-style instance annotations).

"Please segment every instance of the following categories in this image: {categories}. …" →
one line per listed category, ``category: masks`` (left to right, then top to bottom), with
"No target." for listed categories absent from the image (negatives).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from masktok.annotations import ImageAnnotations, Instance
from masktok.data.tokenize.shards import DatasetSource, source_images
from masktok.data.sft.base import (
    BuildConfig,
    BuildResult,
    SampleMask,
    SFTSample,
    Turn,
    reading_order,
    sample_rng,
)
from masktok.data.sft.mask_words import ImageEntry, MaskRef, format_words, image_available, mask_present
from masktok.words.prompts import build_answer, build_prompt, join_masks

TASK = "instance"


@dataclass
class InstanceImage:
    """An image with its instance annotations (category names required by the builders)."""

    annotations: ImageAnnotations
    entry: ImageEntry

    def targets(self, empty_masks: str = "error", result: Any = None) -> list[Instance]:
        """Non-crowd instances with a mask (what answers may list); an empty one raises under
        ``empty_masks="error"``, is left out (counted in ``result`` when given) under ``"skip"``."""
        return [i for i in self.annotations.instances if not i.iscrowd
                and mask_present(f"image {self.entry.image_id}: annotation {i.id}", i.box is None,
                                 empty_masks, result)]

    def mask_ref(self, inst: Instance) -> MaskRef:
        return MaskRef(inst.mask_rle, str(inst.id))


def instance_images(source: DatasetSource) -> list[InstanceImage]:
    """A coco / panoptic / yolo / refs source → its images with annotations, in source order."""
    if source.images is None:
        raise ValueError(f"{source.kind} source: SFT conversations show the images; give the image folder")
    out = []
    for loaded in source_images(source):
        assert loaded.image_path is not None
        ann = loaded.annotations
        out.append(InstanceImage(ann, ImageEntry(str(ann.image_id), loaded.image_path, ann.height,
                                                 ann.width)))
    return out


def category_name(inst: Instance, image: InstanceImage) -> str:
    if not inst.category_name:
        raise ValueError(f"image {image.entry.image_id}: instance {inst.id} has no category name "
                         f"(YOLO folders need class names)")
    return inst.category_name


def build_instance(images: list[InstanceImage], words: Any, config: BuildConfig = BuildConfig(),
                   negatives: int = 1, max_categories: int | None = None) -> BuildResult:
    """Instance annotations → one sample per image that has a target.

    Args:
        negatives: absent categories (drawn from every name in ``images``) added per sample.
        max_categories: list at most this many present categories (a random subset).
    """
    if negatives < 0 or (max_categories is not None and max_categories < 1):
        raise ValueError(f"negatives must be >= 0 and max_categories >= 1, got {negatives} / "
                         f"{max_categories}")
    vocabulary_names = sorted({category_name(i, img) for img in images
                               for i in img.targets(config.empty_masks)})
    result = BuildResult(TASK, [])
    for image in images:
        if result.full(config):
            break
        targets = image.targets(config.empty_masks, result)
        if not targets:
            result.skip("image without instances")
            continue
        if not image_available(image.entry, config.missing_images, result):
            continue
        rng = sample_rng(config.seed, TASK, image.entry.image_id)
        by_name: dict[str, list[Instance]] = {}
        for inst in targets:
            by_name.setdefault(category_name(inst, image), []).append(inst)
        present = sorted(by_name)
        if max_categories is not None and len(present) > max_categories:
            present = sorted(rng.sample(present, max_categories))
        absent = [n for n in vocabulary_names if n not in by_name]
        listed = present + rng.sample(absent, min(negatives, len(absent)))
        rng.shuffle(listed)
        chosen = [inst for name in listed for inst in by_name.get(name, [])]
        codes = dict(zip((id(i) for i in chosen),
                         words.codes(image.entry, [image.mask_ref(i) for i in chosen])))
        lines, masks = [], []
        for name in listed:
            insts = by_name.get(name, [])
            ordered = [insts[k] for k in reading_order([i.box for i in insts])]
            lines.append(build_answer("instance_segmentation_line", phrase=name, masks=join_masks(
                [format_words(codes[id(i)], words.vocabulary) for i in ordered])))
            masks += [SampleMask(0, i.mask_rle) for i in ordered]
        prompt = build_prompt("instance_segmentation", categories=", ".join(listed))
        result.samples.append(SFTSample(
            sample_id=f"{TASK}/{image.entry.image_id}", task=TASK, images=[str(image.entry.path)],
            image_sizes=[image.entry.size], turns=[Turn(prompt, "\n".join(lines), (0,))],
            masks=masks, meta={"image_id": image.entry.image_id, "categories": listed,
                               "annotation_ids": [str(i.id) for i in chosen]}))
    return result
