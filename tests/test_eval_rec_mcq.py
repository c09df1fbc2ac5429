"""REC box parsing and accuracy; mask-perception multiple-choice parsing and accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from masktok.masks.iou import encode_masks
from masktok.eval.perception import multiple_choice_accuracy, parse_choice
from masktok.eval.rec import box_iou, mask_box, rec_metrics, xywh_to_xyxy
from masktok.eval.rec_answers import answer_box, box_to_pixels, parse_boxes


def test_internvl_boxes_are_per_mille_of_the_image():
    text = "The dog is at <ref>dog</ref><box>[[100, 200, 500, 999]]</box> and <box>[[0,0,10,10]]</box>"
    for protocol in ("reference", "strict"):
        assert parse_boxes(text, "internvl", protocol) == [(100, 200, 500, 999), (0, 0, 10, 10)]
        pb = answer_box(text, "internvl", width=640, height=480, protocol=protocol)
        np.testing.assert_allclose(pb.box, [64.0, 96.0, 320.0, 479.52], rtol=1e-6)  # value / 1000 × size
        assert pb.status == "ok" and pb.num_boxes == 2
    assert parse_boxes("[[1, 2, 3, 4]] without tags", "internvl", "strict") == []
    assert parse_boxes("[[1, 2, 3, 4]] without tags", "internvl", "reference") == [(1, 2, 3, 4)]


def test_qwen_boxes_normalised_and_absolute():
    qwen2 = "<|object_ref_start|>dog<|object_ref_end|><|box_start|>(100,200),(500,600)<|box_end|>"
    np.testing.assert_allclose(answer_box(qwen2, "qwen_norm", 640, 480).box, [64, 96, 320, 288])
    qwen1 = "<ref>dog</ref><box>(10,20),(30,40)</box>"
    assert parse_boxes(qwen1, "qwen_norm") == [(10, 20, 30, 40)]
    assert parse_boxes(qwen1, "qwen_vl") == [(10, 20, 30, 40)]
    qwen25 = '```json\n[{"bbox_2d": [50, 60, 250, 300], "label": "dog"}]\n```'
    # absolute pixels in the model's input frame (here 1280x960 for a 640x480 image)
    np.testing.assert_allclose(answer_box(qwen25, "qwen_abs", 640, 480, input_size=(1280, 960)).box,
                               [25, 30, 125, 150])
    np.testing.assert_allclose(answer_box(qwen25, "qwen_abs", 640, 480).box, [50, 60, 250, 300])
    np.testing.assert_allclose(box_to_pixels((1, 2, 3, 4), "pixels", 10, 10), [1, 2, 3, 4])
    with pytest.raises(ValueError, match="box_format"):
        parse_boxes("x", "yolo")


def test_box_iou_and_accuracy_hand_computed():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    pred = np.array([[0, 0, 10, 10],       # IoU 1
                     [0, 0, 10, 5],        # 50 / 100 = 0.5
                     [5, 5, 15, 15],       # 25 / 175
                     [np.nan] * 4])        # no box → 0
    ious = box_iou(pred, gt)
    np.testing.assert_allclose(ious, [1.0, 0.5, 25 / 175, 0.0])
    m = rec_metrics(pred, gt)
    assert m.accuracy == pytest.approx({0.5: 0.5, 0.7: 0.25, 0.9: 0.25})
    assert m.num_without_box == 1 and m.as_dict()["Acc@0.5"] == 0.5
    np.testing.assert_allclose(xywh_to_xyxy([1, 2, 3, 4]), [1, 2, 4, 6])
    with pytest.raises(ValueError, match="2 predicted boxes for 1"):
        box_iou(pred[:2], gt[:1])


def test_answer_edge_cases_and_mask_boxes():
    assert answer_box("I cannot find it.", "internvl", 100, 100).status == "no_box"
    assert answer_box("<box>[[500, 500, 400, 600]]</box>", "internvl", 100, 100).status == "invalid_box"
    assert answer_box("<box>[[a, b, c, d]]</box>", "internvl", 100, 100).status == "unparsable_box"
    mask = np.zeros((1, 20, 30), dtype=bool)
    mask[0, 5:8, 10:20] = True  # rows 5..7, cols 10..19 → pixel-edge box (10, 5, 20, 8)
    mb = mask_box(encode_masks(mask)[0])
    np.testing.assert_allclose(mb.box, [10, 5, 20, 8])
    assert mask_box(encode_masks(np.zeros((1, 20, 30), bool))[0]).status == "empty_mask"


def test_multiple_choice_parsing_and_accuracy():
    options = ["man on the left", "a dog", "tree"]
    assert parse_choice("B", 3) == "B"
    assert parse_choice("(C)", 3) == "C"
    assert parse_choice("A. the man on the left", 3) == "A"
    assert parse_choice("The answer is c.", 3) == "C"
    assert parse_choice("A man on the left", 3) is None  # the article is not a choice
    assert parse_choice("A man on the left", 3, ["a man on the left", "x", "y"]) == "A"
    assert parse_choice("man on the left", 3, options) == "A"
    assert parse_choice("D", 3) is None  # beyond the options
    m = multiple_choice_accuracy(["A", None, "C", "A"], ["A", "B", "C", "B"])
    assert (m.accuracy, m.num_unparsed, m.num_samples) == (0.5, 1, 4)
    with pytest.raises(ValueError, match="2 choices for 1"):
        multiple_choice_accuracy(["A", "B"], ["A"])
    with pytest.raises(ValueError, match="upper-case letter"):
        multiple_choice_accuracy(["A"], ["a"])
