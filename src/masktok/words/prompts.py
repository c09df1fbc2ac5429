"""Prompt and answer templates of every task of the SAMTok and HiMTok papers, in one module.

The chat pipeline, the SFT data builders and the evaluation runners all take their wording from
here, so a model sees at inference exactly the phrasing it was trained on.

Placeholders (``str.format`` fields):
    ``{phrase}``      a referring expression or category name;
    ``{mask}``        one mask in mask words, e.g. ``<|mt_start|><|mt_0011|><|mt_0347|><|mt_end|>``;
    ``{masks}``       several masks joined by ``", "``;
    ``{box}``         ``[[x1, y1, x2, y2]]`` on the 0–999 grid (:func:`format_box`);
    ``{points}``      ``[[x, y], …]`` on the 0–999 grid (:func:`format_points`);
    ``{num_tokens}``  the number of mask tokens HiMTok should emit;
    ``{question}``    a free-form question; ``{categories}`` a comma-separated category list.

SAMTok tasks (Qwen-VL models): RES/GRES, GCG brief/detailed, PSG, instance segmentation by
categories, region caption, region VQA, the zoom-in crop for small regions, multi-round
interactive segmentation. HiMTok tasks (InternVL models): ``<ref>``/``<box>`` forms of the
paper's appendix tables 14–20 (segmentation, segmentation then box, box/point-prompted
segmentation, fixed token length, grounding only), existence checks and mask perception.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

# ---------------------------------------------------------------------------------------------
# Shared answer pieces
# ---------------------------------------------------------------------------------------------
NO_TARGET_ANSWER = "No target."
MASK_SEPARATOR = ", "
PHRASE_START = "<|object_ref_start|>"
PHRASE_END = "<|object_ref_end|>"
MASK_PLACEHOLDER = "<mask>"  # where a user's mask goes in a free-form prompt (chat pipeline)

# ---------------------------------------------------------------------------------------------
# SAMTok: mask generation
# ---------------------------------------------------------------------------------------------
RES_PROMPTS = (
    "Please segment {phrase} in this image.",
    "Please identify and segment the {phrase} in this image",
)
GRES_PROMPTS = RES_PROMPTS
# Answers list the masks left to right, then top to bottom by box centre; or NO_TARGET_ANSWER.
RES_ANSWER = "{masks}"
# The structured answer form of the released training data.
RES_JSON_ANSWER = '```json\n[{{"mask_2d": "{mask}", "label": "{phrase}"}}]\n```'

GCG_SUFFIX = ("Please respond with interleaved segmentation masks for the corresponding parts of "
              "the answer.")
GCG_BRIEF_PROMPT = "Could you please give me a brief description of the image? " + GCG_SUFFIX
GCG_DETAILED_PROMPT = "Could you please give me a detail description of the image? " + GCG_SUFFIX
# One grounded phrase inside a GCG answer: the phrase, then its mask(s).
GCG_PHRASE = PHRASE_START + "{phrase}" + PHRASE_END + "{masks}"

PSG_PROMPT = ("Generate a scene graph for this image. Write one relation per line as "
              "'subject<mask> relation object<mask>', giving each subject and object its "
              "segmentation mask.")
PSG_LINE = "{subject}{subject_mask} {relation} {object}{object_mask}"

INSTANCE_SEGMENTATION_PROMPT = (
    "Please segment every instance of the following categories in this image: {categories}. "
    "Answer with each category followed by the masks of its instances.")
INSTANCE_SEGMENTATION_LINE = "{phrase}: {masks}"

# ---------------------------------------------------------------------------------------------
# SAMTok: mask understanding
# ---------------------------------------------------------------------------------------------
REGION_CAPTION_PROMPTS = (
    "{mask}\nDescribe the masked area comprehensively.",
    "{mask}\nDescribe the masked area in detail.",
    "{mask}\nGive a brief description of the masked area.",
)
REGION_VQA_PROMPT = "{mask}\n{question}"
# Small regions (box area / image area < 0.3) get a zoom-in crop as an extra image; one note per
# cropped region tells the model which image zooms in on which mask (images count from 1).
ZOOM_IN_NOTE = "Image {image_number} zooms in on {mask}, shown there as {zoom_mask}."
ZOOM_IN_PROMPT = "{mask}\n" + ZOOM_IN_NOTE.replace("{image_number}", "2") + "\n{question}"
MASK_UNDERSTANDING_QUESTION = "Describe the masked area comprehensively."

# ---------------------------------------------------------------------------------------------
# SAMTok: multi-round interactive segmentation (earlier masks come back as words)
# ---------------------------------------------------------------------------------------------
MULTI_ROUND_FIRST_PROMPT = "Please segment {phrase} in this image."
MULTI_ROUND_FOLLOW_UP_PROMPTS = (
    "Now please segment {phrase}.",
    "Please segment {phrase} next to {mask}.",
    "What is the relation between {mask} and {other_mask}?",
    "{mask}\nWhat is this object?",
)

# ---------------------------------------------------------------------------------------------
# HiMTok (appendix I, tables 14-20)
# ---------------------------------------------------------------------------------------------
HIMTOK_SEGMENT_PROMPT = "Segment <ref>{phrase}</ref>."
HIMTOK_SEGMENT_ANSWER = "The mask appears at {mask}."
HIMTOK_EXISTENCE_PROMPT = "Is there <ref>{phrase}</ref> in the image? Answer yes or no."
HIMTOK_EXISTENCE_ANSWERS = ("Yes.", "No.")

# Table 14: segmentation then grounding (mask-then-box chain of thought).
HIMTOK_MASK_THEN_BOX_PROMPTS = (
    "First create the segmentation mask for <ref>{phrase}</ref>, then identify its bounding box.",
    "Begin by generating the mask for <ref>{phrase}</ref>, followed by determining its box "
    "coordinates.",
    "Start with the detailed mask of <ref>{phrase}</ref>, then locate its containing box.",
    "Initially segment <ref>{phrase}</ref>, then find its bounding box region.",
    "First produce the mask for <ref>{phrase}</ref>, then specify its box location.",
    "Commence with the mask of <ref>{phrase}</ref>, then determine its box boundaries.",
    "Start by segmenting <ref>{phrase}</ref>, then outline its bounding region.",
    "First extract the mask of <ref>{phrase}</ref>, then mark its box coordinates.",
    "Begin with the precise mask for <ref>{phrase}</ref>, then identify its box location.",
    "Initially create the mask for <ref>{phrase}</ref>, then define its bounding box.",
)
# Table 15: responses for segmentation then grounding.
HIMTOK_MASK_THEN_BOX_ANSWERS = (
    "Certainly, you can find the mask at {mask}, and the box is represented as <box>{box}</box>.",
    "Of course, the mask located is {mask}, while the box is shown as <box>{box}</box>.",
    "Absolutely, the mask is situated at {mask}, with the box described as <box>{box}</box>.",
    "Sure, the mask appears at {mask}, and here's the box: <box>{box}</box>.",
    "Indeed, the mask can be found at {mask}, with the box marked as <box>{box}</box>.",
    "OK, the mask is at {mask}, and the box is indicated as <box>{box}</box>.",
    "Affirmative, you have the mask at {mask}, and the box is designated <box>{box}</box>.",
    "Got it, the mask is at {mask}, and you will see the box like <box>{box}</box>.",
    "Sure, the mask appears at {mask}, and here is the box represented: <box>{box}</box>.",
    "Yes indeed, find the mask at {mask}, and the box outlined as <box>{box}</box>.",
)
# Table 16: box- and point-prompted segmentation.
HIMTOK_BOX_POINT_PROMPTS = (
    "Generate the segmentation mask for the object located within the bounding box "
    "<box>{box}</box> and at the points {points} in the provided image.",
    "Extract the mask for the object inside the <box>{box}</box> bounding box and corresponding "
    "to the points {points} in the given image.",
    "Create the mask for the object found in the region defined by <box>{box}</box> and "
    "identified by the points {points} in this image.",
    "Identify the object mask within the bounding box <box>{box}</box> and marked by the points "
    "{points} in the image.",
    "Acquire the segmentation mask of the object enclosed by <box>{box}</box> and situated at the "
    "points {points} in the image.",
    "Determine the mask for the object that is located within the area specified by "
    "<box>{box}</box> and identified by the points {points} in the image.",
    "Produce the mask for the object situated in the <box>{box}</box> box and at the points "
    "{points} within the image.",
    "Locate the mask for the object that lies inside the <box>{box}</box> boundaries and "
    "corresponds to the points {points} in the image.",
    "Segment the mask for the object found within the bounds of <box>{box}</box> and marked at "
    "the points {points} in the given image.",
    "Outline the mask of the object residing within the box <box>{box}</box> and corresponding "
    "to the points {points} in the image.",
)
# Table 17: point-prompted segmentation.
HIMTOK_POINT_PROMPTS = (
    "Generate the segmentation mask for the object located at the points {points} in the "
    "provided image.",
    "Extract the mask for the object that corresponds to the points {points} in the given image.",
    "Create the mask for the object identified by the points {points} in this image.",
    "Identify the object mask corresponding to the points {points} in the image.",
    "Acquire the segmentation mask of the object marked at the points {points} in the image.",
    "Determine the mask for the object located at the specified points {points} in the image.",
    "Produce the mask for the object situated at the points {points} within the image.",
    "Locate the mask for the object that is identified by the points {points} in the image.",
    "Segment the mask for the object found at the points {points} in the given image.",
    "Outline the mask of the object located at the specified points {points} in the image.",
)
# Table 18: responses for segmentation only.
HIMTOK_MASK_ANSWERS = (
    "Certainly, the mask is located at {mask}.",
    "Of course, you can find the mask at {mask}.",
    "Absolutely, the mask is available at {mask}.",
    "Sure, the mask is positioned at {mask}.",
    "Indeed, the mask appears at {mask}.",
    "OK, the mask is situated at {mask}.",
    "Affirmative, the mask can be found at {mask}.",
    "Got it, the mask is at {mask}.",
    "Sure, the mask is present at {mask}.",
    "Yes indeed, you will find the mask at {mask}.",
)
# Table 19: segmentation with a fixed number of mask tokens. ``{context}`` is the optional text
# the paper's template carries right after the reference (empty for a plain reference).
HIMTOK_TOKEN_LENGTH_PROMPTS = (
    "First create the segmentation mask for <ref>{phrase}</ref>{context} by {num_tokens} tokens, "
    "then identify its bounding box.",
    "Begin by generating the mask for <ref>{phrase}</ref>{context} by {num_tokens} tokens, "
    "followed by determining its box coordinates.",
    "Start with the detailed mask of <ref>{phrase}</ref>{context} by {num_tokens} tokens, then "
    "locate its containing box.",
    "Initially segment <ref>{phrase}</ref>{context} by {num_tokens} tokens, then find its "
    "bounding box region.",
    "First produce the mask for <ref>{phrase}</ref>{context} by {num_tokens} tokens, then specify "
    "its box location.",
    "Commence with the mask of <ref>{phrase}</ref>{context} by {num_tokens} tokens, then "
    "determine its box boundaries.",
    "Start by segmenting <ref>{phrase}</ref>{context} by {num_tokens} tokens, then outline its "
    "bounding region.",
    "First extract the mask of <ref>{phrase}</ref>{context} by {num_tokens} tokens, then mark its "
    "box coordinates.",
    "Begin with the precise mask for <ref>{phrase}</ref>{context} by {num_tokens} tokens, then "
    "identify its box location.",
    "Initially create the mask for <ref>{phrase}</ref>{context} by {num_tokens} tokens, then "
    "define its bounding box.",
)
# Table 20: grounding without mask tokens.
HIMTOK_BOX_PROMPTS = (
    "Please provide the bounding box of <ref>{phrase}</ref>.",
    "Locate the bounding box for <ref>{phrase}</ref>.",
    "Identify the box coordinates of <ref>{phrase}</ref>.",
    "Determine the bounding region for <ref>{phrase}</ref>.",
    "Find the box boundaries of <ref>{phrase}</ref>.",
    "Mark the box location of <ref>{phrase}</ref>.",
    "Specify the box coordinates for <ref>{phrase}</ref>.",
    "Outline the bounding box of <ref>{phrase}</ref>.",
    "Can you show the box for <ref>{phrase}</ref>?",
)
HIMTOK_BOX_ANSWERS = (
    "Certainly, the box is located at <box>{box}</box>.",
    "Of course, here's the bounding box: <box>{box}</box>.",
    "The requested box coordinates are <box>{box}</box>.",
    "Found the bounding region: <box>{box}</box>.",
    "Here's the box location: <box>{box}</box>.",
    "The object's box is marked as <box>{box}</box>.",
    "Bounding box determined: <box>{box}</box>.",
    "Located the boundaries at <box>{box}</box>.",
)
# Mask perception (appendix E): pick the expression that matches a given mask.
HIMTOK_MASK_PERCEPTION_PROMPT = ("{mask}\nWhich expression matches the object of this mask? "
                                 "Options: {options}. Answer with the option letter.")

# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
PROMPTS: dict[str, tuple[str, ...]] = {
    "res": RES_PROMPTS,
    "gres": GRES_PROMPTS,
    "gcg_brief": (GCG_BRIEF_PROMPT,),
    "gcg_detailed": (GCG_DETAILED_PROMPT,),
    "psg": (PSG_PROMPT,),
    "instance_segmentation": (INSTANCE_SEGMENTATION_PROMPT,),
    "region_caption": REGION_CAPTION_PROMPTS,
    "region_vqa": (REGION_VQA_PROMPT,),
    "zoom_in": (ZOOM_IN_PROMPT,),
    "zoom_in_note": (ZOOM_IN_NOTE,),
    "multi_round_first": (MULTI_ROUND_FIRST_PROMPT,),
    "multi_round_follow_up": MULTI_ROUND_FOLLOW_UP_PROMPTS,
    "himtok_segment": (HIMTOK_SEGMENT_PROMPT,),
    "himtok_existence": (HIMTOK_EXISTENCE_PROMPT,),
    "himtok_mask_then_box": HIMTOK_MASK_THEN_BOX_PROMPTS,
    "himtok_box_point": HIMTOK_BOX_POINT_PROMPTS,
    "himtok_point": HIMTOK_POINT_PROMPTS,
    "himtok_token_length": HIMTOK_TOKEN_LENGTH_PROMPTS,
    "himtok_box": HIMTOK_BOX_PROMPTS,
    "himtok_mask_perception": (HIMTOK_MASK_PERCEPTION_PROMPT,),
}

ANSWERS: dict[str, tuple[str, ...]] = {
    "res": (RES_ANSWER,),
    "res_json": (RES_JSON_ANSWER,),
    "gcg_phrase": (GCG_PHRASE,),
    "psg_line": (PSG_LINE,),
    "instance_segmentation_line": (INSTANCE_SEGMENTATION_LINE,),
    "himtok_segment": (HIMTOK_SEGMENT_ANSWER,),
    "himtok_existence": HIMTOK_EXISTENCE_ANSWERS,
    "himtok_mask": HIMTOK_MASK_ANSWERS,
    "himtok_mask_then_box": HIMTOK_MASK_THEN_BOX_ANSWERS,
    "himtok_box": HIMTOK_BOX_ANSWERS,
}

_FIELD = re.compile(r"(?<!\{)\{([a-z_]+)\}(?!\})")


def template_fields(template: str) -> set[str]:
    """The ``{field}`` names a template needs (``{{``/``}}`` escapes excluded)."""
    return set(_FIELD.findall(template))


def _lookup(table: dict[str, tuple[str, ...]], kind: str, task: str) -> tuple[str, ...]:
    if task not in table:
        raise ValueError(f"task: unknown {kind} task {task!r}; known: {sorted(table)}")
    return table[task]


def prompt_templates(task: str) -> tuple[str, ...]:
    """Every instruction template of ``task`` (a key of :data:`PROMPTS`)."""
    return _lookup(PROMPTS, "prompt", task)


def answer_templates(task: str) -> tuple[str, ...]:
    """Every answer template of ``task`` (a key of :data:`ANSWERS`)."""
    return _lookup(ANSWERS, "answer", task)


def fill(template: str, **fields: object) -> str:
    """``template`` with its fields filled; a missing or unexpected field is a ValueError."""
    needed = template_fields(template)
    missing = sorted(needed - set(fields))
    extra = sorted(set(fields) - needed)
    if missing or extra:
        raise ValueError(f"template {template[:60]!r}…: missing fields {missing}, "
                         f"unexpected fields {extra}")
    return template.format(**fields)


def build_prompt(task: str, *, index: int | None = 0, rng: random.Random | None = None,
                 **fields: object) -> str:
    """Fill one instruction template of ``task``: template ``index``, or a random one when
    ``index`` is None (drawn from ``rng``, as the SFT data builders do)."""
    return _pick_and_fill(prompt_templates(task), index, rng, fields)


def build_answer(task: str, *, index: int | None = 0, rng: random.Random | None = None,
                 **fields: object) -> str:
    """Fill one answer template of ``task`` (see :func:`build_prompt`)."""
    return _pick_and_fill(answer_templates(task), index, rng, fields)


def _pick_and_fill(templates: tuple[str, ...], index: int | None, rng: random.Random | None,
                   fields: dict[str, object]) -> str:
    if index is None:
        template = (rng or random.Random()).choice(templates)
    elif not 0 <= index < len(templates):
        raise ValueError(f"index: {index} out of range for {len(templates)} templates")
    else:
        template = templates[index]
    return fill(template, **fields)


def join_masks(words: Sequence[str]) -> str:
    """Several masks' words as one answer (``", "``-separated), or ``"No target."`` if none."""
    return MASK_SEPARATOR.join(words) if words else NO_TARGET_ANSWER


# ---------------------------------------------------------------------------------------------
# InternVL-style coordinates on the 0-999 grid
# ---------------------------------------------------------------------------------------------
GRID = 1000


def _to_grid(value: float, extent: int, name: str) -> int:
    if extent <= 0:
        raise ValueError(f"{name}: image extent must be positive, got {extent}")
    if not 0 <= value < extent:
        raise ValueError(f"{name}: coordinate {value} outside [0, {extent})")
    return min(GRID - 1, int(value * GRID / extent))


def format_box(box: Sequence[float], width: int, height: int) -> str:
    """An inclusive pixel box (x1, y1, x2, y2) → ``[[x1, y1, x2, y2]]`` on the 0–999 grid."""
    if len(box) != 4:
        raise ValueError(f"box: expected 4 numbers (x1, y1, x2, y2), got {list(box)}")
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        raise ValueError(f"box: corners out of order: {list(box)}")
    values = [_to_grid(x1, width, "box"), _to_grid(y1, height, "box"),
              _to_grid(x2, width, "box"), _to_grid(y2, height, "box")]
    return "[[" + ", ".join(str(v) for v in values) + "]]"


def format_points(points: Sequence[Sequence[float]], width: int, height: int) -> str:
    """Pixel points [(x, y), …] → ``[[x, y], …]`` on the 0–999 grid."""
    if not points:
        raise ValueError("points: expected at least one (x, y) point")
    parts = []
    for point in points:
        if len(point) != 2:
            raise ValueError(f"points: expected (x, y) pairs, got {list(point)}")
        parts.append(f"[{_to_grid(point[0], width, 'points')}, {_to_grid(point[1], height, 'points')}]")
    return "[" + ", ".join(parts) + "]"


_BOX = re.compile(r"<box>\s*\[\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]\]\s*</box>")


def parse_boxes(text: str, width: int, height: int) -> list[tuple[float, float, float, float]]:
    """Every ``<box>[[x1, y1, x2, y2]]</box>`` (0–999 grid) of ``text`` → pixel xyxy boxes.

    A grid value g maps back to the left edge of its cell, g · extent / 1000.
    Raises ValueError for grid values above 999 or corners out of order.
    """
    boxes = []
    for match in _BOX.finditer(text):
        values = [int(v) for v in match.groups()]
        if max(values) >= GRID or values[2] < values[0] or values[3] < values[1]:
            raise ValueError(f"text: malformed box {match.group(0)!r} (0-999 grid, x1<=x2, y1<=y2)")
        x1, y1, x2, y2 = values
        boxes.append((x1 * width / GRID, y1 * height / GRID, x2 * width / GRID,
                      y2 * height / GRID))
    return boxes
