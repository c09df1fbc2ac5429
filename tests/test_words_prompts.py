"""Prompt templates of both papers: completeness, filling, coordinates on the 0-999 grid."""

from __future__ import annotations

import random

import pytest

from masktok.words import prompts as P

MASK = "<|mt_start|><|mt_0011|><|mt_0347|><|mt_end|>"


def test_every_task_of_both_papers_has_templates():
    samtok_tasks = {"res", "gres", "gcg_brief", "gcg_detailed", "psg", "instance_segmentation",
                    "region_caption", "region_vqa", "zoom_in", "multi_round_first",
                    "multi_round_follow_up"}
    himtok_tasks = {"himtok_segment", "himtok_mask_then_box", "himtok_box_point", "himtok_point",
                    "himtok_token_length", "himtok_box", "himtok_existence",
                    "himtok_mask_perception"}
    assert samtok_tasks | himtok_tasks <= set(P.PROMPTS)
    # The HiMTok appendix tables hold 10 templates each (table 20: 9 instructions, 8 answers).
    for task in ("himtok_mask_then_box", "himtok_box_point", "himtok_point", "himtok_token_length"):
        assert len(P.prompt_templates(task)) == 10
    assert len(P.answer_templates("himtok_mask_then_box")) == 10
    assert len(P.answer_templates("himtok_mask")) == 10
    assert len(P.prompt_templates("himtok_box")) == 9
    assert len(P.answer_templates("himtok_box")) == 8
    for templates in list(P.PROMPTS.values()) + list(P.ANSWERS.values()):
        assert len(set(templates)) == len(templates)


def test_samtok_prompts_read_as_in_the_papers():
    assert P.build_prompt("res", phrase="the left dog") == "Please segment the left dog in this image."
    assert P.GCG_DETAILED_PROMPT.startswith("Could you please give me a detail description")
    assert "interleaved segmentation masks" in P.GCG_BRIEF_PROMPT
    caption = P.build_prompt("region_caption", mask=MASK)
    assert caption == MASK + "\nDescribe the masked area comprehensively."
    zoom = P.build_prompt("zoom_in", mask=MASK, zoom_mask="<|mt_start|><|mt_0001|><|mt_0300|>"
                          "<|mt_end|>", question="What is it?")
    assert zoom.startswith(MASK + "\nImage 2 zooms in on " + MASK) and zoom.endswith("What is it?")
    assert P.join_masks([]) == P.NO_TARGET_ANSWER == "No target."
    assert P.join_masks([MASK, MASK]) == MASK + ", " + MASK
    gcg = P.build_answer("gcg_phrase", phrase="a dog", masks=MASK)
    assert gcg == "<|object_ref_start|>a dog<|object_ref_end|>" + MASK
    line = P.build_answer("psg_line", subject="person", subject_mask=MASK, relation="riding",
                          object="horse", object_mask=MASK)
    assert line == f"person{MASK} riding horse{MASK}"
    json_answer = P.build_answer("res_json", mask=MASK, phrase="front black chair")
    assert json_answer == ('```json\n[{"mask_2d": "' + MASK + '", "label": "front black chair"}]'
                           '\n```')


def test_himtok_forms():
    assert P.build_prompt("himtok_segment", phrase="road") == "Segment <ref>road</ref>."
    assert P.build_answer("himtok_segment", mask=MASK) == f"The mask appears at {MASK}."
    fixed = P.build_prompt("himtok_token_length", phrase="cake", context="", num_tokens=16)
    assert fixed == ("First create the segmentation mask for <ref>cake</ref> by 16 tokens, then "
                     "identify its bounding box.")
    answer = P.build_answer("himtok_mask_then_box", index=3, mask=MASK, box="[[1, 2, 3, 4]]")
    assert answer == f"Sure, the mask appears at {MASK}, and here's the box: <box>[[1, 2, 3, 4]]</box>."
    prompt = P.build_prompt("himtok_box_point", index=None, rng=random.Random(0),
                            box="[[1, 2, 3, 4]]", points="[[5, 6]]")
    assert "<box>[[1, 2, 3, 4]]</box>" in prompt and "[[5, 6]]" in prompt
    for template in P.prompt_templates("himtok_mask_then_box"):
        assert P.template_fields(template) == {"phrase"}
        assert "<ref>{phrase}</ref>" in template


def test_random_choice_is_reproducible_and_covers_templates():
    seen = {P.build_prompt("himtok_box", index=None, rng=random.Random(seed), phrase="cat")
            for seed in range(200)}
    assert len(seen) == len(P.prompt_templates("himtok_box"))
    a = P.build_prompt("himtok_point", index=None, rng=random.Random(7), points="[[1, 1]]")
    b = P.build_prompt("himtok_point", index=None, rng=random.Random(7), points="[[1, 1]]")
    assert a == b


def test_fill_rejects_missing_and_unexpected_fields():
    with pytest.raises(ValueError, match="missing fields \\['phrase'\\]"):
        P.build_prompt("res")
    with pytest.raises(ValueError, match="unexpected fields \\['colour'\\]"):
        P.build_prompt("res", phrase="dog", colour="red")
    with pytest.raises(ValueError, match="unknown prompt task"):
        P.build_prompt("no_such_task", phrase="dog")
    with pytest.raises(ValueError, match="out of range"):
        P.build_prompt("res", index=5, phrase="dog")


def test_boxes_and_points_on_the_grid():
    assert P.format_box((0, 0, 639, 479), width=640, height=480) == "[[0, 0, 998, 997]]"
    assert P.format_points([(320, 240)], width=640, height=480) == "[[500, 500]]"
    text = "the box is <box>[[100, 250, 500, 999]]</box> and <box>[[0, 0, 1, 1]]</box>"
    boxes = P.parse_boxes(text, width=200, height=100)
    assert boxes == [(20.0, 25.0, 100.0, 99.9), (0.0, 0.0, 0.2, 0.1)]
    box = (13, 7, 150, 90)
    back = P.parse_boxes("<box>" + P.format_box(box, 200, 100) + "</box>", 200, 100)[0]
    assert all(abs(a - b) <= 0.2 for a, b in zip(back, box))
    with pytest.raises(ValueError, match="outside"):
        P.format_box((0, 0, 640, 10), width=640, height=480)
    with pytest.raises(ValueError, match="out of order"):
        P.format_box((50, 0, 10, 10), width=640, height=480)
    with pytest.raises(ValueError, match="malformed box"):
        P.parse_boxes("<box>[[10, 10, 5, 20]]</box>", 100, 100)
