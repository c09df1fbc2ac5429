"""The COCOeval wrapper (published numbers), GCG metrics, phrase similarity, caption metrics."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from masktok.eval import caption_metrics
from masktok.eval.caption_metrics import CaptionMetricsUnavailable, caption_metrics_unavailable, caption_scores
from masktok.eval.coco import coco_evaluate
from masktok.eval.gcg import GCGSample, evaluate_gcg, gcg_coco_inputs, greedy_matched_ious, image_miou, phrase_matches
from masktok.masks.iou import encode_masks
from masktok.words.phrase_similarity import embedding_similarity, lexical_similarity, mean_pooled_transformer_similarity

PUBLISHED_SEGM_AP = 0.3195452758576433
PUBLISHED_SEGM_AP50 = 0.5622883972521636


@pytest.fixture(scope="module")
def coco_files(test_data):
    root = test_data / "coco_val2014_100"
    return root / "instances_val2014_100.json", root / "instances_val2014_fakesegm100_results.json"


def test_coco_wrapper_reproduces_published_segm_numbers(coco_files):
    gt, results = coco_files
    r = coco_evaluate(gt, results)  # standard mode: categories and scores kept, all 100 images
    assert r.num_images == 100
    assert abs(r.ap - PUBLISHED_SEGM_AP) < 1e-12
    assert abs(r.ap50 - PUBLISHED_SEGM_AP50) < 1e-12
    assert "Average Precision" in r.summary


def test_gcg_ap50_goes_through_the_same_wrapper(coco_files):
    gt_path, res_path = coco_files
    gt = json.loads(gt_path.read_text())
    results = json.loads(res_path.read_text())
    names = {c["id"]: c["name"] for c in gt["categories"]}
    sizes = {img["id"]: (img["height"], img["width"]) for img in gt["images"]}
    refs, preds = [], []
    for image_id, (h, w) in sizes.items():
        anns = [a for a in gt["annotations"] if a["image_id"] == image_id and not a["iscrowd"]]
        from masktok.masks import polygons_to_rle

        refs.append(GCGSample(image_id, h, w, ["caption"], [names[a["category_id"]] for a in anns],
                              [polygons_to_rle(a["segmentation"], h, w) for a in anns]))
        dts = [r for r in results if r["image_id"] == image_id]
        preds.append(GCGSample(image_id, h, w, ["caption"], [names[r["category_id"]] for r in dts],
                               [r["segmentation"] for r in dts]))
    metrics = evaluate_gcg(refs, preds)
    coco_gt, coco_res = gcg_coco_inputs(refs, preds)
    direct = coco_evaluate(coco_gt, coco_res, class_agnostic=True, constant_score=1.0)
    assert metrics.ap50 == direct.ap50
    # class-agnostic with constant scores is a different number from the standard evaluation
    standard = coco_evaluate(gt_path, res_path)
    assert abs(metrics.ap50 - standard.ap50) > 1e-3
    assert 0.0 < metrics.miou < 1.0 and 0.0 < metrics.recall < 1.0


def strip(w: int, a: int, b: int) -> np.ndarray:
    m = np.zeros((1, w), dtype=bool)
    m[0, a:b] = True
    return m


def rles(*masks: np.ndarray) -> list[dict]:
    return encode_masks(np.stack(masks)) if masks else []


def test_greedy_miou_hand_computed_and_edge_cases():
    # global max 0.9 first (row 0, col 0), then the only remaining pair 0.1
    assert greedy_matched_ious(np.array([[0.9, 0.8], [0.85, 0.1]])) == pytest.approx([0.9, 0.1])
    gt = rles(strip(100, 0, 50), strip(100, 50, 100))
    assert image_miou(rles(strip(100, 0, 45), strip(100, 50, 80)), gt) == pytest.approx((0.9 + 0.6) / 2)
    assert image_miou([], gt) == 0.0  # empty prediction
    assert image_miou(gt, []) == 0.0  # empty ground truth
    assert image_miou([], []) == 0.0  # both empty
    assert image_miou(rles(np.zeros((1, 100), bool)), gt) == 0.0  # an all-empty mask matches nothing
    # duplicates: one-to-one matching ignores the copy, extra predictions do not lower mIoU
    assert image_miou(rles(strip(100, 0, 50), strip(100, 0, 50)), gt[:1]) == 1.0
    with pytest.raises(ValueError, match="different sizes"):
        image_miou(rles(strip(90, 0, 5)), gt)


def constant_similarity(matrix):
    def similarity(a, b):
        assert (len(a), len(b)) == np.asarray(matrix).shape
        return np.asarray(matrix, dtype=float)
    return similarity


def test_phrase_recall_follows_glamm_greedy_rule():
    gt = rles(strip(100, 0, 50), strip(100, 50, 100))
    pred = rles(strip(100, 0, 45), strip(100, 50, 80))  # IoU 0.9 and 0.6
    names = ["a", "b"]
    assert phrase_matches(gt, names, pred, names, constant_similarity([[1, 0], [0, 1]])) == [(0, 0), (1, 1)]
    # the best-IoU pair fails the text test → matching stops (GLaMM's break), (1, 1) is not taken
    assert phrase_matches(gt, names, pred, names, constant_similarity([[0.2, 0], [0, 1]])) == []
    # IoU below 0.5 is never a match even with identical phrases
    assert phrase_matches(gt, names, rles(strip(100, 0, 20), strip(100, 50, 60)), names,
                          constant_similarity([[1, 1], [1, 1]])) == []
    with pytest.raises(ValueError, match="one to one"):
        phrase_matches(gt, names, pred, ["a"], constant_similarity([[1], [1]]))


def test_gcg_samples_and_recall_edge_cases():
    with pytest.raises(ValueError, match="2 masks for 1 phrases"):
        GCGSample("img", 1, 100, ["c"], ["dog"], rles(strip(100, 0, 5), strip(100, 5, 9)))
    ref = GCGSample("img", 1, 100, ["a dog"], ["a dog", "a cat"], rles(strip(100, 0, 50), strip(100, 50, 100)))
    same = GCGSample("img", 1, 100, ["a dog"], ["the dog", "cats"], rles(strip(100, 0, 50), strip(100, 50, 100)))
    m = evaluate_gcg([ref], [same])
    assert (m.recall, m.miou, m.ap50) == pytest.approx((1.0, 1.0, 1.0))
    # duplicate predicted masks: one match per ground-truth phrase, and the copy is a false positive
    dup = GCGSample("img", 1, 100, ["c"], ["dog", "dog", "cat"],
                    rles(strip(100, 0, 50), strip(100, 0, 50), strip(100, 50, 100)))
    m = evaluate_gcg([ref], [dup])
    assert m.num_matched_phrases == 2 and m.recall == 1.0 and m.miou == 1.0 and m.ap50 < 1.0
    empty_pred = GCGSample("img", 1, 100, [""], [], [])
    m = evaluate_gcg([ref], [empty_pred])
    assert (m.recall, m.miou, m.ap50) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="no prediction for 1"):
        evaluate_gcg([ref], [])
    with pytest.raises(ValueError, match="prediction is 2x100"):
        evaluate_gcg([ref], [GCGSample("img", 2, 100, [""], [], [])])


def test_lexical_similarity_default():
    sim = lexical_similarity(["the two dogs", "a red car", "a man", "", "glasses"],
                             ["two dog", "a car", "a horse", "the", "glass"])
    assert sim[0, 0] == pytest.approx(1.0)
    assert sim[1, 1] == pytest.approx(1 / np.sqrt(2))
    assert sim[2, 2] == 0.0
    assert sim[3, 3] == 1.0 and sim[3, 0] == 0.0  # nothing left vs nothing left / vs words
    assert sim[4, 4] == 1.0
    with pytest.raises(ValueError, match="sequence of phrases"):
        lexical_similarity("a dog", ["a dog"])


def test_embedding_similarity_and_local_transformer(tmp_path):
    table = {"dog": [1.0, 0.0], "puppy": [0.9, 0.1], "car": [0.0, 1.0]}
    sim = embedding_similarity(lambda xs: np.array([table[x] for x in xs]))(["dog"], ["puppy", "car"])
    assert sim[0, 0] > 0.99 and sim[0, 1] == 0.0
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "cat", "red", "car"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32)
    transformers.BertModel(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    sim = mean_pooled_transformer_similarity(tmp_path)(["a dog", "red car"], ["a dog", "cat"])
    assert sim.shape == (2, 2) and sim[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert sim[1, 1] < 1.0 - 1e-4


def test_caption_metrics_skip_message_without_java(monkeypatch):
    monkeypatch.setattr(caption_metrics.shutil, "which", lambda name: None)
    reason = caption_metrics_unavailable()
    assert reason is not None and "java" in reason
    with pytest.raises(CaptionMetricsUnavailable, match="java"):
        caption_scores({1: ["a dog"]}, {1: "a dog"})


@pytest.mark.slow
@pytest.mark.skipif(caption_metrics_unavailable() is not None, reason=str(caption_metrics_unavailable()))
def test_meteor_and_cider_through_pycocoevalcap():
    refs = {1: ["a man rides a horse on the beach"], 2: ["two dogs play in the snow"],
            3: ["a red bus parked on the street"]}
    good = caption_scores(refs, {1: "a man rides a horse on the beach", 2: "two dogs play in the snow",
                                 3: "a red bus parked on the street"})
    bad = caption_scores(refs, {1: "a plate of food", 2: "a kitchen table", 3: "a cat sleeping"})
    assert set(good) == {"METEOR", "CIDEr"}
    assert good["METEOR"] > 0.9 > 0.2 > bad["METEOR"]
    assert good["CIDEr"] > bad["CIDEr"] >= 0.0
    with pytest.raises(ValueError, match="same image ids"):
        caption_scores(refs, {1: "x"})


def test_java_presence_is_what_the_skip_reports():
    assert (caption_metrics_unavailable() is None) == (shutil.which("java") is not None
                                                       and caption_metrics.importlib.util.find_spec("pycocoevalcap") is not None)
