"""PSG: panoptic scene graph generation (OpenPSG).

"Generate a scene graph for this image…" → one line per relation,
``subject<mask words> relation object<mask words>``, in the file's relation order (repeated
triplets once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from masktok.data.sft.base import BuildConfig, BuildResult, SampleMask, SFTSample, Turn
from masktok.data.sft.mask_words import ImageEntry, MaskRef, format_words, image_available
from masktok.words.prompts import build_answer, build_prompt

TASK = "psg"


def build_psg(dataset: Any, images_dir: str | Path, words: Any,
              config: BuildConfig = BuildConfig()) -> BuildResult:
    """An OpenPSG dataset (:func:`masktok.eval.scene_datasets.read_openpsg`) → PSG samples.

    Class names are written as the evaluation compares them
    (:func:`~masktok.annotations.class_names.normalize_class_name`: ``-merged``/``-other``/``-stuff``
    dropped, separators as spaces). Images without relations are counted and left out.
    """
    from masktok.annotations.class_names import normalize_class_name

    classes = [normalize_class_name(c) for c in dataset.object_classes]
    result = BuildResult(TASK, [])
    prompt = build_prompt("psg")
    for graph in dataset.graphs:
        if result.full(config):
            break
        file_name = graph.extras.get("file_name")
        if not file_name:
            raise ValueError(f"scene graph {graph.image_id!r}: no file_name")
        entry = ImageEntry(str(graph.image_id), Path(images_dir) / file_name, graph.height,
                           graph.width)
        if not image_available(entry, config.missing_images, result):
            continue
        triplets = list(dict.fromkeys(tuple(int(v) for v in row) for row in graph.relations))
        if not triplets:
            result.skip("image without relations")
            continue
        used = sorted({i for s, o, _ in triplets for i in (s, o)})
        codes = dict(zip(used, words.codes(entry, [MaskRef(graph.masks[i]) for i in used])))
        lines, masks = [], []
        for subject, obj, predicate in triplets:
            if not 0 <= predicate < len(dataset.predicate_classes):
                raise ValueError(f"scene graph {graph.image_id!r}: predicate {predicate} is unknown")
            lines.append(build_answer(
                "psg_line", subject=classes[graph.labels[subject]],
                subject_mask=format_words(codes[subject], words.vocabulary),
                relation=dataset.predicate_classes[predicate], object=classes[graph.labels[obj]],
                object_mask=format_words(codes[obj], words.vocabulary)))
            masks += [SampleMask(0, graph.masks[subject]), SampleMask(0, graph.masks[obj])]
        result.samples.append(SFTSample(
            sample_id=f"{TASK}/{graph.image_id}", task=TASK, images=[str(entry.path)],
            image_sizes=[entry.size], turns=[Turn(prompt, "\n".join(lines), (0,))], masks=masks,
            meta={"image_id": entry.image_id, "relations": len(triplets)}))
    return result
