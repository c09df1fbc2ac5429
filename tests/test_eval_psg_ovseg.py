"""PSG R@K / mR@K (standard and corrected) and open-vocabulary semantic segmentation mIoU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from masktok.masks.iou import encode_masks
from masktok.eval.ovseg import UNLABELED, SemSegConfusion, semantic_map_from_masks
from masktok.eval.psg import SceneGraph, evaluate_psg, triplet_hits
from masktok.eval.scene_datasets import read_openpsg, read_semseg_dir

RIDING, ON = 3, 5


def strip(a: int, b: int, w: int = 100) -> np.ndarray:
    m = np.zeros((1, w), dtype=bool)
    m[0, a:b] = True
    return m


def graph(image_id, labels, masks, relations, scores=None, w=100):
    return SceneGraph(image_id, 1, w, labels, encode_masks(np.stack(masks)) if masks else [],
                      np.asarray(relations, dtype=np.int64).reshape(-1, 3), scores=scores)


# GT: person [0,20), horse [20,50), grass [50,100); person riding horse, horse on grass, person on grass.
GT = graph("img", [0, 1, 2], [strip(0, 20), strip(20, 50), strip(50, 100)],
           [(0, 1, RIDING), (1, 2, ON), (0, 2, ON)])
# Prediction: the three objects plus a second copy of the person (IoU 0.9 with the GT person).
# Ranked triplets: A riding B (hits g0); D on C (hits g2 only through the duplicate);
# B riding A (no hit); B on C (hits g1).
PRED = graph("img", [0, 1, 2, 0], [strip(0, 20), strip(20, 50), strip(50, 100), strip(0, 18)],
             [(0, 1, RIDING), (3, 2, ON), (1, 0, RIDING), (1, 2, ON)])


def test_psg_recall_hand_computed_standard_and_corrected():
    hits = triplet_hits(GT, PRED)
    assert hits.tolist() == [[True, False, False], [False, False, True], [False, False, False],
                             [False, True, False]]
    std = evaluate_psg([GT], [PRED], ks=(1, 2, 4))
    assert std.recall == pytest.approx({1: 1 / 3, 2: 2 / 3, 4: 1.0})
    assert std.mean_recall[4] == pytest.approx((1 + 1) / 56)  # 2 predicates at recall 1, 54 at 0
    corr = evaluate_psg([GT], [PRED], ks=(1, 2, 4), protocol="strict")
    # the duplicate person gets no ground-truth instance, so "D on C" no longer hits
    assert corr.recall == pytest.approx({1: 1 / 3, 2: 1 / 3, 4: 2 / 3})
    assert corr.mean_recall[4] == pytest.approx((1 + 0.5) / 56)
    assert "R@4" in corr.as_dict() and corr.protocol == "strict"


def test_psg_ranking_duplicates_and_edge_cases():
    # scores rank the triplets: the best one is now "B on C"
    scored = graph("img", PRED.labels, [strip(0, 20), strip(20, 50), strip(50, 100), strip(0, 18)],
                   PRED.relations, scores=[0.1, 0.2, 0.3, 0.9])
    assert evaluate_psg([GT], [scored], ks=(1,)).recall[1] == pytest.approx(1 / 3)
    assert triplet_hits(GT, scored)[0].tolist() == [False, True, False]
    # a duplicated triplet hits the same ground truth once
    dup = graph("img", [0, 1], [strip(0, 20), strip(20, 50)], [(0, 1, RIDING)] * 5)
    assert evaluate_psg([GT], [dup], ks=(5,)).recall[5] == pytest.approx(1 / 3)
    # empty prediction (strict: scored 0); an unknown label (-1) never matches
    empty = graph("img", [], [], [])
    assert evaluate_psg([GT], [empty], ks=(20,), protocol="strict").recall[20] == 0.0
    unknown = graph("img", [-1, 1], [strip(0, 20), strip(20, 50)], [(0, 1, RIDING)])
    assert evaluate_psg([GT], [unknown], ks=(20,)).recall[20] == 0.0
    # an image without ground-truth relations is left out and counted
    bare = graph("bare", [0], [strip(0, 5)], [])
    m = evaluate_psg([GT, bare], [PRED, graph("bare", [], [], [])], ks=(4,))
    assert m.num_images == 1 and m.num_images_without_relations == 1 and m.recall[4] == 1.0
    with pytest.raises(ValueError, match="no ground-truth image has a relation"):
        evaluate_psg([bare], [graph("bare", [], [], [])])
    with pytest.raises(ValueError, match="prediction is 1x90"):
        triplet_hits(GT, graph("img", [0], [strip(0, 5, 90)], [(0, 0, ON)], w=90))
    with pytest.raises(ValueError, match="outside 0..1"):
        graph("x", [0, 1], [strip(0, 5), strip(5, 9)], [(0, 2, ON)])
    with pytest.raises(ValueError, match="1 images without a prediction"):
        evaluate_psg([GT], [])


def test_openpsg_reader_on_real_panoptic_pngs(test_data, tmp_path):
    src = test_data / "coco_panoptic_sample"
    pan = json.loads((src / "panoptic_examples.json").read_text())
    cats = json.loads((src / "panoptic_coco_categories.json").read_text())
    things = [c for c in cats if c["isthing"]]
    stuff = [c for c in cats if not c["isthing"]]
    index = {c["id"]: k for k, c in enumerate(things + stuff)}
    sizes = {img["id"]: img for img in pan["images"]}
    data = []
    for ann in pan["annotations"]:
        segs = [{**s, "category_id": index[s["category_id"]]} for s in ann["segments_info"]]
        img = sizes[ann["image_id"]]
        data.append({"file_name": img["file_name"], "height": img["height"], "width": img["width"],
                     "image_id": str(ann["image_id"]), "pan_seg_file_name": ann["file_name"],
                     "segments_info": segs, "relations": [[0, 1, 0], [1, 2, 7], [2, 0, 55]]})
    psg = {"data": data, "thing_classes": [c["name"] for c in things],
           "stuff_classes": [c["name"] for c in stuff], "predicate_classes": [f"p{i}" for i in range(56)],
           "test_image_ids": [d["image_id"] for d in data], "train_image_ids": []}
    (tmp_path / "psg.json").write_text(json.dumps(psg))
    ds = read_openpsg(tmp_path / "psg.json", src / "panoptic_examples")
    assert len(ds.graphs) == 2 and len(ds.object_classes) == 133
    g = ds.graphs[0]
    assert len(g.masks) == len(data[0]["segments_info"]) and g.relations.shape == (3, 3)
    m = evaluate_psg(ds.graphs, ds.graphs)
    assert m.recall[20] == 1.0 and m.mean_recall[20] == pytest.approx(3 / 56)
    with pytest.raises(ValueError, match="no 'val_image_ids'"):
        read_openpsg(tmp_path / "psg.json", src / "panoptic_examples", split="val")


def test_smaller_area_wins_overlaps():
    masks = np.stack([strip(0, 6, 6), strip(2, 4, 6), strip(3, 5, 6)])
    # pixel 3 is claimed by all three; classes 1 and 2 have the same (smallest) area → listed first wins
    assert semantic_map_from_masks(masks, [0, 1, 2], 1, 6).tolist() == [[0, 0, 1, 1, 2, 0]]
    assert semantic_map_from_masks(masks[[0, 2, 1]], [0, 2, 1], 1, 6).tolist() == [[0, 0, 1, 2, 2, 0]]
    assert semantic_map_from_masks(encode_masks(masks), [0, 1, 2], 1, 6).tolist() == [[0, 0, 1, 1, 2, 0]]
    assert (semantic_map_from_masks(np.zeros((0, 1, 6), bool), [], 1, 6) == UNLABELED).all()
    with pytest.raises(ValueError, match="different sizes"):
        semantic_map_from_masks(masks, [0, 1, 2], 1, 7)
    with pytest.raises(ValueError, match="3 masks for 2 class ids"):
        semantic_map_from_masks(masks, [0, 1], 1, 6)


def test_semseg_miou_hand_computed():
    conf = SemSegConfusion(num_classes=3)
    conf.update(np.array([[0, 0, 1, 1, 2, 0]]), np.array([[0, 0, 1, 1, 1, 255]]))
    m = conf.compute()
    # class 0: TP 2, |GT| 2, |pred| 2 → 1; class 1: TP 2, |GT| 3, |pred| 2 → 2/3; class 2 absent from GT
    assert m.miou == pytest.approx((1 + 2 / 3) / 2)
    assert m.pixel_accuracy == pytest.approx(4 / 5)
    assert np.isnan(m.per_class_iou[2])
    # an unclaimed pixel (-1) is an error for its ground-truth class
    conf.update(np.array([[UNLABELED]]), np.array([[0]]))
    assert conf.compute().per_class_iou[0] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="ground-truth labels must be in 0..2"):
        conf.update(np.array([[0]]), np.array([[7]]))
    with pytest.raises(ValueError, match="one size"):
        conf.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="no labelled pixel"):
        SemSegConfusion(2).compute()


def test_voc_label_pngs_with_background_reduced(voc_labelme):
    voc = voc_labelme / "voc"
    ds = read_semseg_dir(voc / "SegmentationClass", voc / "class_names.txt", reduce_zero_label=True)
    assert len(ds.classes) == 20 and ds.classes[0] == "aeroplane"
    conf = SemSegConfusion(len(ds.classes))
    for im in ds.images:
        gt = ds.label_map(im)
        assert set(np.unique(gt)) <= set(range(20)) | {255}
        conf.update(np.where(gt == 255, UNLABELED, gt), gt)
    assert conf.compute().miou == 1.0
