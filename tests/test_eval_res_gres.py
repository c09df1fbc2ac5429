"""RES and GRES metrics: hand-computed edge cases, kernel agreement, the ReLA rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from masktok.eval.gres import GRESAccumulator, gres_metrics
from masktok.masks.iou import (
    dense_intersection_union,
    dense_iou_matrix,
    encode_masks,
    intersection_union,
    rle_intersection_union,
    rle_iou_matrix,
    torch_intersection_union,
    union_rle,
)
from masktok.eval.res import RESAccumulator, res_metrics
from masktok.masks import mask_to_rle


def rows(h: int, w: int, *ranges: tuple[int, int]) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    for a, b in ranges:
        m[a:b] = True
    return m


def empty(h: int = 4, w: int = 4) -> np.ndarray:
    return np.zeros((h, w), dtype=bool)


def px(n: int, h: int = 4, w: int = 4, offset: int = 0) -> np.ndarray:
    m = np.zeros(h * w, dtype=bool)
    m[offset:offset + n] = True
    return m.reshape(h, w)


# Five RES samples, I/U worked out by hand:
#   A: rows 0-1 vs rows 1-2 → I 4, U 12;  B: empty vs 4 px → I 0, U 4;  C: both empty → 0, 0;
#   D: 2 px vs empty → I 0, U 2;          E: identical 6 px → I 6, U 6.
RES_PRED = np.stack([rows(4, 4, (0, 2)), empty(), empty(), px(2), px(6)])
RES_GT = np.stack([rows(4, 4, (1, 3)), px(4), empty(), empty(), px(6)])


def test_res_hand_computed_edge_cases():
    acc = RESAccumulator()
    inter, union = acc.update(RES_PRED, RES_GT)
    assert inter.tolist() == [4, 0, 0, 0, 6] and union.tolist() == [12, 4, 0, 2, 6]
    m = acc.compute()
    assert m.ciou == pytest.approx(10 / 24)
    assert m.giou == pytest.approx((1 / 3 + 0 + 1 + 0 + 1) / 5)  # both empty scores 1
    assert m.precision[0.5] == pytest.approx(2 / 5) and m.precision[0.9] == pytest.approx(2 / 5)
    assert m.num_samples == 5
    assert m.as_dict()["Pr@0.7"] == pytest.approx(0.4)


def test_res_kernels_agree_dense_torch_rle():
    rng = np.random.default_rng(0)
    pred = rng.random((7, 19, 23)) > 0.6
    gt = rng.random((7, 19, 23)) > 0.5
    pred[2] = False
    gt[2] = False
    expected_i = (pred & gt).reshape(7, -1).sum(1)
    expected_u = (pred | gt).reshape(7, -1).sum(1)
    for inter, union in (dense_intersection_union(pred, gt),
                         rle_intersection_union(encode_masks(pred), encode_masks(gt)),
                         intersection_union([mask_to_rle(m) for m in pred], gt),
                         tuple(t.numpy() for t in torch_intersection_union(torch.from_numpy(pred), gt)),
                         intersection_union(pred, gt, device="cpu")):
        np.testing.assert_array_equal(inter, expected_i)
        np.testing.assert_array_equal(union, expected_u)
    dense = dense_iou_matrix(pred, gt)
    np.testing.assert_allclose(rle_iou_matrix(encode_masks(pred), encode_masks(gt)), dense)
    assert dense[2, 2] == 0.0  # two empty masks do not match in IoU matrices


def test_res_device_accumulation_matches_numpy():
    cpu = RESAccumulator().update(RES_PRED, RES_GT)
    acc = RESAccumulator(device="cpu")
    inter, union = acc.update(torch.from_numpy(RES_PRED), RES_GT)
    assert inter.tolist() == cpu[0].tolist()
    # the torch kernel itself (what a CUDA device runs), accumulated as tensors
    dev = RESAccumulator()
    dev.add_counts(*torch_intersection_union(torch.from_numpy(RES_PRED), torch.from_numpy(RES_GT)))
    assert isinstance(dev.counts()[0], torch.Tensor)
    assert dev.compute().as_dict() == pytest.approx(acc.compute().as_dict())
    ref = RESAccumulator()
    ref.update(RES_PRED, RES_GT)
    assert acc.compute().as_dict() == pytest.approx(ref.compute().as_dict())


def test_res_duplicate_predictions_change_nothing_and_sizes_must_match():
    masks = encode_masks(np.stack([px(6), px(6), px(3)]))
    single = union_rle(masks[:1], (4, 4))
    assert union_rle(masks, (4, 4)) == single  # duplicates and a subset: the union is unchanged
    with pytest.raises(ValueError, match="different sizes"):
        RESAccumulator().update(np.zeros((1, 4, 4), bool), np.zeros((1, 4, 5), bool))
    with pytest.raises(ValueError, match="different sizes"):
        rle_intersection_union(encode_masks(np.zeros((1, 4, 4), bool)), encode_masks(np.zeros((1, 5, 4), bool)))
    with pytest.raises(ValueError, match="different sizes"):
        union_rle([mask_to_rle(empty()), mask_to_rle(empty(4, 5))], (4, 4))
    with pytest.raises(ValueError, match="at least one sample"):
        res_metrics([], [])
    with pytest.raises(ValueError, match="0 <= I <= U"):
        res_metrics([3], [2])


def test_res_all_empty_gives_giou_one_and_ciou_zero():
    m = res_metrics([0, 0], [0, 0])
    assert m.giou == 1.0 and m.ciou == 0.0 and m.precision[0.9] == 1.0


# Six GRES samples (4x4), outcomes worked out by hand with ReLA's rules:
#   1 GT empty, answer "no target"         → TP  I 0 U 0  IoU 1
#   2 GT empty, 3 px predicted             → FN  I 0 U 3  IoU 0
#   3 GT 8 px, answer "no target"          → FP  I 0 U 8  IoU 0
#   4 GT rows 1-2, pred rows 0-1           → TN  I 4 U 12 IoU 1/3
#   5 GT 6 px, identical prediction        → TN  I 6 U 6  IoU 1
#   6 GT 4 px, flag no-target + 2 px inside → FP  I 0 U 4  IoU 0 (the mask stays in U, as ReLA)
GRES_PRED = np.stack([empty(), px(3), empty(), rows(4, 4, (0, 2)), px(6), px(2)])
GRES_GT = np.stack([empty(), empty(), px(8), rows(4, 4, (1, 3)), px(6), px(4)])
GRES_FLAGS = [True, False, True, False, False, True]


def test_gres_hand_computed_edge_cases():
    acc = GRESAccumulator()
    acc.update(encode_masks(GRES_PRED), encode_masks(GRES_GT), pred_no_target=GRES_FLAGS)
    s = acc.samples()
    assert s.inter.tolist() == [0, 0, 0, 4, 6, 0]
    assert s.union.tolist() == [0, 3, 8, 12, 6, 4]
    m = acc.compute()
    assert m.counts == {"TP": 1, "FN": 1, "FP": 2, "TN": 2}
    assert m.n_acc == pytest.approx(1 / 2) and m.t_acc == pytest.approx(2 / 4)
    assert m.ciou == pytest.approx(10 / 33)
    assert m.giou == pytest.approx((1 + 0 + 0 + 1 / 3 + 1 + 0) / 6)
    assert m.precision[0.7] == pytest.approx(1 / 4)  # over the 4 targeted samples only


def test_gres_no_target_from_empty_answer_and_kernels_agree():
    flags_from_masks = [m.sum() == 0 for m in GRES_PRED]
    a = GRESAccumulator()
    a.update(GRES_PRED, GRES_GT)  # no flags: an answer without masks is "no target"
    b = GRESAccumulator(device="cpu")
    b.update(torch.from_numpy(GRES_PRED), torch.from_numpy(GRES_GT), pred_no_target=flags_from_masks)
    assert a.compute().as_dict() == pytest.approx(b.compute().as_dict(), nan_ok=True)
    # sample 6 now has a mask → counted as targeted-predicted (TN with IoU 2/4)
    assert a.compute().counts == {"TP": 1, "FN": 1, "FP": 1, "TN": 3}


def relA_loop(inter, union, gt_nt, pred_nt):
    """DESIGN §8 written out sample by sample, to check the vectorised version."""
    ai = au = aiou = 0.0
    nt = {"TP": 0, "TN": 0, "FP": 0, "FN": 0}
    pr, targeted = 0, 0
    for i, u, g, p in zip(inter, union, gt_nt, pred_nt):
        if g:
            if p:
                nt["TP"] += 1
                aiou += 1
            else:
                nt["FN"] += 1
                au += u
        else:
            if p:
                nt["FP"] += 1
                i = 0
            else:
                nt["TN"] += 1
            iou = i / u if u else 0.0
            aiou += iou
            ai += i
            au += u
            targeted += 1
            pr += iou >= 0.7
    return ai / au, aiou / len(inter), nt["TP"] / (nt["TP"] + nt["FN"]), nt["TN"] / (nt["TN"] + nt["FP"]), pr / targeted


def test_gres_matches_sample_loop_on_random_data():
    rng = np.random.default_rng(3)
    n = 200
    gt_nt = rng.random(n) < 0.3
    pred_nt = rng.random(n) < 0.3
    gt_area = np.where(gt_nt, 0, rng.integers(1, 50, n))
    inter = np.where(gt_nt, 0, rng.integers(0, 50, n) % (gt_area + 1))
    union = gt_area + rng.integers(0, 30, n)
    m = gres_metrics(inter, union, gt_nt, pred_nt)
    ciou, giou, n_acc, t_acc, pr7 = relA_loop(inter, union, gt_nt, pred_nt)
    assert (m.ciou, m.giou, m.n_acc, m.t_acc, m.precision[0.7]) == pytest.approx((ciou, giou, n_acc, t_acc, pr7))


def test_gres_reference_conventions_and_errors():
    # no no-target sample in the set: the official evaluator reports N-acc = T-acc = 0
    m = gres_metrics([4], [8], [False], [False])
    assert m.n_acc == 0.0 and m.t_acc == 0.0 and m.giou == 0.5
    # only correct no-target answers: ΣU = 0 and no targeted sample → cIoU and Pr@t undefined
    m = gres_metrics([0, 0], [0, 0], [True, True], [True, True])
    assert m.giou == 1.0 and m.n_acc == 1.0 and math.isnan(m.ciou) and math.isnan(m.precision[0.7])
    with pytest.raises(ValueError, match="flagged no-target"):
        GRESAccumulator().update(np.stack([px(2)]), np.stack([px(2)]), gt_no_target=[True])
    with pytest.raises(ValueError, match="different sizes"):
        GRESAccumulator().update(np.zeros((1, 4, 4), bool), np.zeros((1, 3, 4), bool))
    with pytest.raises(ValueError, match="pred_no_target has 1 flags for 2"):
        GRESAccumulator().update(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4), bool), pred_no_target=[True])
