"""The ``reference`` protocol against independent re-statements of the published scorers (GLaMM's
GCG mIoU / recall, OpenPSG's R@K / mR@K, InternVL's box reader) on random synthetic predictions
that hit every edge case: empty masks on both sides, images without a predicted triplet,
repeated ground-truth triplets, boxes without tags, as fractions, or unreadable."""

from __future__ import annotations

import re
from functools import reduce

import numpy as np
import pytest

from masktok.eval.gcg import GCGSample, evaluate_gcg
from masktok.eval.psg import SceneGraph, evaluate_psg
from masktok.eval.rec import box_iou
from masktok.eval.rec_answers import answer_box
from masktok.masks import rle_to_mask
from masktok.masks.iou import encode_masks
from masktok.words.phrase_similarity import lexical_similarity

W = 24
PHRASES = ["a man", "the dog", "a red car", "men", "a tree"]


def random_masks(rng, n: int) -> np.ndarray:
    out = np.zeros((n, 1, W), dtype=bool)
    for k in range(n):
        if rng.random() < 0.25:
            continue  # empty
        a = int(rng.integers(0, W - 1))
        out[k, 0, a:int(rng.integers(a + 1, W + 1))] = True
    return out


def glamm_iou(a: np.ndarray, b: np.ndarray) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(np.logical_and(a, b)) / np.sum(np.logical_or(a, b))  # 0/0 → NaN, as GLaMM


def glamm_scores(refs, preds):
    """GLaMM eval/gcg/evaluate.py, restated: compute_miou and find_best_matches per image."""
    mious, tp, total = [], 0, 0
    for ref, pred in zip(refs, preds):
        g = [rle_to_mask(m) for m in ref.masks]
        p = [rle_to_mask(m) for m in pred.masks]
        m = np.array([[glamm_iou(a, b) for b in g] for a in p]).reshape(len(p), len(g))
        paired = []
        while m.size > 0 and np.max(m) > 0:
            i = np.unravel_index(np.argmax(m, axis=None), m.shape)
            paired.append(m[i])
            m = np.delete(np.delete(m, i[0], axis=0), i[1], axis=1)
        mious.append(np.mean(paired) if paired else 0.0)
        ious = np.array([[glamm_iou(a, b) for b in p] for a in g]).reshape(len(g), len(p))
        sims = lexical_similarity(ref.phrases, pred.phrases)
        total += len(ref.phrases)
        while ious.size > 0:
            i = np.unravel_index(np.argmax(ious), ious.shape)
            if ious[i] < 0.5 or sims[i] < 0.5:
                break
            tp += 1
            ious[i[0], :] = 0
            ious[:, i[1]] = 0
            sims[i[0], :] = 0
            sims[:, i[1]] = 0
    return float(np.mean(mious)), tp / total


@pytest.mark.parametrize("seed", range(6))
def test_gcg_reference_equals_glamm_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    refs, preds = [], []
    for image in range(12):
        ng, npred = int(rng.integers(0, 5)), int(rng.integers(0, 5))
        refs.append(GCGSample(image, 1, W, ["c"], list(rng.choice(PHRASES, ng)),
                              encode_masks(random_masks(rng, ng))))
        preds.append(GCGSample(image, 1, W, ["c"], list(rng.choice(PHRASES, npred)),
                               encode_masks(random_masks(rng, npred))))
    got = evaluate_gcg(refs, preds, similarity=lexical_similarity)
    miou, recall = glamm_scores(refs, preds)
    assert got.miou == pytest.approx(miou, abs=1e-12) and got.recall == pytest.approx(recall, abs=1e-12)


def openpsg_scores(gts, preds, ks=(20, 50), num_rel=56):
    """OpenPSG, restated: the test loader drops repeated (s, o, p) triplets; sgg_evaluation skips
    images without predicted relations; SGRecall / SGMeanRecall on pred_to_gt lists."""
    recall = {k: [] for k in ks}
    collect = {k: [[] for _ in range(num_rel)] for k in ks}
    for gt, pred in zip(gts, preds):
        rels = []
        for r in gt.relations.tolist():
            if tuple(r) not in rels:
                rels.append(tuple(r))
        rels = np.array(rels).reshape(-1, 3)
        if len(rels) == 0 or len(pred.relations) == 0:
            continue
        gm = [rle_to_mask(m) for m in gt.masks]
        pm = [rle_to_mask(m) for m in pred.masks]
        pred_to_gt = [[] for _ in range(len(pred.relations))]
        for gi, (gs, go, gp) in enumerate(rels):
            for pi, (ps, po, pp) in enumerate(pred.relations.tolist()):
                same = (gt.labels[gs], gp, gt.labels[go]) == (pred.labels[ps], pp, pred.labels[po])
                if same and glamm_iou(gm[gs], pm[ps]) >= 0.5 and glamm_iou(gm[go], pm[po]) >= 0.5:
                    pred_to_gt[pi].append(gi)
        for k in ks:
            match = reduce(np.union1d, pred_to_gt[:k])
            recall[k].append(len(match) / len(rels))
            hit, count = [0] * num_rel, [0] * num_rel
            for r in rels:
                count[r[2]] += 1
            for g in match:
                hit[rels[int(g), 2]] += 1
            for n in range(num_rel):
                if count[n]:
                    collect[k][n].append(hit[n] / count[n])
    return ({k: float(np.mean(v)) for k, v in recall.items()},
            {k: sum(np.mean(c) if c else 0.0 for c in collect[k]) / num_rel for k in ks})


@pytest.mark.parametrize("seed", range(6))
def test_psg_reference_equals_openpsg_on_random_predictions(seed):
    rng = np.random.default_rng(100 + seed)
    gts, preds = [], []
    for image in range(15):
        n = int(rng.integers(2, 5))
        masks = random_masks(rng, n)
        masks[:, 0, 0] = True  # ground-truth segments are never empty
        labels = rng.integers(0, 3, n)
        rels = rng.integers(0, n, (int(rng.integers(1, 5)), 2))
        rels = np.column_stack([rels, rng.integers(0, 4, len(rels))])
        if rng.random() < 0.3:
            rels = np.vstack([rels, rels[:1]])  # a repeated triplet
        gts.append(SceneGraph(image, 1, W, labels, encode_masks(masks), rels))
        m = int(rng.integers(0, 5))
        pmasks = np.concatenate([masks, random_masks(rng, m)])[rng.permutation(n + m)[:max(m, 1)]]
        pmasks[:, 0, 0] = True
        plabels = rng.integers(0, 3, len(pmasks))
        prels = np.zeros((0, 3), int) if rng.random() < 0.3 else np.column_stack(
            [rng.integers(0, len(pmasks), (6, 2)), rng.integers(0, 4, 6)])
        preds.append(SceneGraph(image, 1, W, plabels, encode_masks(pmasks), prels))
    got = evaluate_psg(gts, preds, ks=(20, 50))
    recall, mean_recall = openpsg_scores(gts, preds)
    for k in (20, 50):
        assert got.recall[k] == pytest.approx(recall[k], abs=1e-12)
        assert got.mean_recall[k] == pytest.approx(mean_recall[k], abs=1e-12)


def internvl_acc(answer: str, gt_box, w: int, h: int) -> float:
    """InternVL internvl_chat/eval/refcoco/evaluate_grounding.py, restated (float32 torch → numpy)."""
    found = re.findall(r"\[*\[(.*?),(.*?),(.*?),(.*?)\]\]*", answer)
    try:
        box = np.array([float(v) for v in found[0]], dtype=np.float32)
    except (IndexError, ValueError):
        box = np.zeros(4, dtype=np.float32)
    if box.sum() >= 4:
        box = box / np.float32(1000)
    box = box * np.array([w, h, w, h], dtype=np.float32)
    gt = np.asarray(gt_box, dtype=np.float32)
    lt, rb = np.maximum(box[:2], gt[:2]), np.minimum(box[2:], gt[2:])
    inter = np.prod(np.clip(rb - lt, 0, None))
    union = (box[2] - box[0]) * (box[3] - box[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(inter / union >= 0.5)


def test_rec_internvl_reference_equals_internvl_on_random_answers():
    rng = np.random.default_rng(7)
    forms = ["<box>[[{},{},{},{}]]</box>", "[[{}, {}, {}, {}]]", "[{},{},{},{}]", "the [[{}, {}, {}, {}]] box",
             "[[a, {}, {}, {}]]", "[ref] [[{},{},{},{}]]", "no box {} {} {} {}"]
    for _ in range(300):
        w, h = int(rng.integers(50, 900)), int(rng.integers(50, 900))
        gt = [float(rng.uniform(0, w / 2)), float(rng.uniform(0, h / 2)), 0, 0]
        gt[2], gt[3] = gt[0] + float(rng.uniform(5, w / 2)), gt[1] + float(rng.uniform(5, h / 2))
        if rng.random() < 0.3:
            values = [round(gt[0] / w, 2), round(gt[1] / h, 2), round(gt[2] / w, 2), round(gt[3] / h, 2)]
        else:
            values = [int(rng.integers(0, 1000)) for _ in range(4)]
            if rng.random() < 0.5:
                values = [int(gt[0] / w * 1000), int(gt[1] / h * 1000), int(gt[2] / w * 1000), int(gt[3] / h * 1000)]
        answer = forms[int(rng.integers(0, len(forms)))].format(*values)
        parsed = answer_box(answer, "internvl", w, h)
        pred = parsed.box if parsed.box is not None else np.full(4, np.nan)
        ours = float(box_iou(pred[None], np.asarray(gt)[None], float32=True)[0] >= 0.5)
        assert ours == internvl_acc(answer, gt, w, h), answer
