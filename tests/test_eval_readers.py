"""Ground-truth readers (RefCOCO refs, gRefCOCO, GLaMM GCG) and answer parsing (GCG, PSG)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from masktok.eval.answers import DecodedAnswer, clean_caption, split_gcg_answer, split_psg_answer
from masktok.eval.datasets import load_referring, read_glamm_gcg, read_grefcoco, read_refcoco
from masktok.masks.iou import rle_areas
from masktok.eval.recon import reconstruction_ious
from masktok.annotations.class_names import class_index
from masktok.eval.scene_runner import run_gcg
from masktok.masks import rle_to_mask


@pytest.fixture(scope="module")
def coco(test_data):
    path = test_data / "coco_val2014_100" / "instances_val2014_100.json"
    return path, json.loads(path.read_text())


def test_refcoco_pickle_and_grefcoco_json(coco, tmp_path):
    path, data = coco
    anns = [a for a in data["annotations"] if not a["iscrowd"]][:6]
    refs = [{"ref_id": k, "ann_id": a["id"], "image_id": a["image_id"], "split": "val" if k < 4 else "testA",
             "category_id": a["category_id"],
             "sentences": [{"sent_id": 100 + 2 * k, "sent": f"thing {k}"}, {"sent_id": 101 + 2 * k, "sent": "it"}]}
            for k, a in enumerate(anns)]
    (tmp_path / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    samples = read_refcoco(tmp_path / "refs(unc).p", path, split="val")
    assert len(samples) == 8 and samples[0].sample_id == "100" and samples[0].sentence == "thing 0"
    assert samples[0].boxes == [anns[0]["bbox"]]
    assert int(rle_areas(samples[0].masks)[0]) > 0
    assert [s.sample_id for s in load_referring(tmp_path / "refs(unc).p", path)][-1] == "111"

    grefs = [{"ref_id": 0, "ann_id": [anns[0]["id"], anns[1]["id"]] if anns[0]["image_id"] == anns[1]["image_id"]
              else [anns[0]["id"]], "image_id": anns[0]["image_id"], "split": "val", "no_target": False,
              "sentences": [{"sent_id": 1, "sent": "both"}]},
             {"ref_id": 1, "ann_id": [-1], "image_id": anns[0]["image_id"], "split": "val", "no_target": True,
              "sentences": [{"sent_id": 2, "sent": "a unicorn"}]}]
    (tmp_path / "grefs(unc).json").write_text(json.dumps(grefs))
    g = read_grefcoco(tmp_path / "grefs(unc).json", path, split="val")
    assert len(g) == 2 and len(g[0].masks) == len(grefs[0]["ann_id"]) and g[1].no_target and g[1].masks == []
    assert load_referring(tmp_path / "grefs(unc).json", path)[1].no_target

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.p").write_bytes(pickle.dumps([Evil()]))
    with pytest.raises(ValueError, match="refusing to unpickle"):
        read_refcoco(tmp_path / "evil.p", path)
    with pytest.raises(ValueError, match="pass the COCO instances"):
        load_referring(tmp_path / "refs(unc).p")
    bad = [{**refs[0], "ann_id": 999999999}]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="ann_id 999999999 is not in"):
        read_refcoco(tmp_path / "bad.json", path)


def test_glamm_gcg_files_through_the_runner(coco, tmp_path):
    path, data = coco
    names = {c["id"]: c["name"] for c in data["categories"]}
    image_ids = [img["id"] for img in data["images"][:5]]
    from masktok.masks import polygons_to_rle

    sizes = {img["id"]: img for img in data["images"]}
    mask_gt = {"images": [sizes[i] for i in image_ids], "annotations": [], "categories": [{"id": 1}]}
    cap_gt = {"images": [{"id": i} for i in image_ids], "annotations": []}
    preds = []
    for i in image_ids:
        anns = [a for a in data["annotations"] if a["image_id"] == i and not a["iscrowd"]]
        h, w = sizes[i]["height"], sizes[i]["width"]
        rles = [polygons_to_rle(a["segmentation"], h, w) for a in anns]
        for a, r in zip(anns, rles):
            mask_gt["annotations"].append({"id": a["id"], "image_id": i, "category_id": 1, "segmentation": r,
                                           "area": a["area"], "iscrowd": 0, "bbox": a["bbox"]})
        labels = [names[a["category_id"]] for a in anns]
        cap_gt["annotations"].append({"id": i, "image_id": i, "caption": " and ".join(labels), "labels": labels})
        # GLaMM's own prediction layout: caption, phrases, pred_masks; the last phrase is paraphrased away
        preds.append({"image_id": i, "caption": " and ".join(labels), "phrases": labels[:-1] + ["zebra"],
                      "pred_masks": rles})
    (tmp_path / "mask.json").write_text(json.dumps(mask_gt))
    (tmp_path / "cap.json").write_text(json.dumps(cap_gt))
    (tmp_path / "pred.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    refs = read_glamm_gcg(tmp_path / "mask.json", tmp_path / "cap.json")
    assert [r.image_id for r in refs] == image_ids
    n_phrases = sum(len(r.phrases) for r in refs)
    result = run_gcg(tmp_path / "pred.jsonl", tmp_path / "mask.json", tmp_path / "out", captions=tmp_path / "cap.json",
                     caption_metrics=False)
    m = result.metrics
    assert m["AP50"] == 1.0 and m["mIoU"] == 1.0
    assert m["num_gt_phrases"] == n_phrases
    assert m["Recall"] == pytest.approx((n_phrases - len(image_ids)) / n_phrases)  # "zebra" never matches
    assert (tmp_path / "out" / "metrics.json").is_file()


def decoded(text: str, spans: list[tuple[int, int]], masks: np.ndarray, decodable: list[int]) -> DecodedAnswer:
    return DecodedAnswer(masks=masks[decodable] if decodable else np.zeros((0, *masks.shape[1:]), bool),
                         offsets=[spans[i] for i in decodable], all_offsets=spans,
                         statuses=["ok" if i in decodable else "truncated" for i in range(len(spans))])


def test_split_gcg_answer_pairs_masks_with_phrases():
    m = np.zeros((5, 1, 10), dtype=bool)
    for k in range(5):
        m[k, 0, 2 * k:2 * k + 2] = True
    S, E = "<|object_ref_start|>", "<|object_ref_end|>"
    parts = ["A ", S, "dog", E, "[M0]", " and ", S, "two cats", E, "[M1]", ", ", "[M2]", " near ", S, "a tree", E,
             " under ", "[M3]", " and ", "[BAD]", "."]
    text, spans, pos = "", [], 0
    for p in parts:
        if p.startswith("[M") or p == "[BAD]":
            spans.append((pos, pos + len(p)))
        text += p
        pos += len(p)
    ans = split_gcg_answer(text, decoded(text, spans, m, [0, 1, 2, 3]))
    assert ans.phrases == ["dog", "two cats"]
    assert rle_to_mask(ans.masks[1]).tolist() == (m[1] | m[2]).tolist()  # a phrase's masks are united
    assert ans.phrases_without_mask == ["a tree"]  # its mask follows other words → a stray mask
    assert ans.stray_masks == 1 and ans.undecoded_spans == 1
    assert ans.caption == "A dog and two cats, near a tree under and."
    assert clean_caption("x <|object_ref_start|>y<|object_ref_end|> .", []) == "x y."


def test_split_psg_answer_reads_triplet_lines():
    m = np.zeros((4, 1, 8), dtype=bool)
    for k in range(4):
        m[k, 0, 2 * k:2 * k + 2] = True
    objects = class_index(["person", "horse", "grass-merged", "dining table"])
    predicates = class_index(["on", "riding", "in front of"])
    lines = ["person[A] riding horse[B]", "horse[B] on grass[C]", "person[A] in front of dining table[D]",
             "person[A] flies", "cat[A] on horse[B]"]
    text = "\n".join(lines)
    tags = {"[A]": 0, "[B]": 1, "[C]": 2, "[D]": 3}
    spans, which = [], []
    for tag, k in tags.items():
        start = 0
        while (i := text.find(tag, start)) >= 0:
            spans.append((i, i + len(tag)))
            which.append(k)
            start = i + 1
    order = np.argsort([s[0] for s in spans])
    spans = [spans[i] for i in order]
    masks = m[[which[i] for i in order]]
    ans = split_psg_answer(text, decoded(text, spans, masks, list(range(len(spans)))), objects, predicates)
    assert ans.malformed_lines == 1  # "person flies" has one mask
    # identical masks with one label are one instance; "cat" is not a class → a separate, unknown instance
    assert ans.labels == [0, 1, 2, 3, -1]
    assert ans.relations == [(0, 1, 1), (1, 2, 0), (0, 3, 2), (4, 1, 0)]
    assert ans.unknown_names == 1


class ShiftTokenizer:
    """Encodes masks as themselves and decodes them shifted one pixel per missing code."""

    def encode(self, image, masks):
        self.masks = torch.as_tensor(np.asarray(masks))
        return torch.zeros(len(masks), 3, dtype=torch.long)

    def decode(self, image, codes, *, size=None):
        return torch.roll(self.masks, 3 - codes.shape[1], dims=2)


def test_reconstruction_ious_per_prefix_length():
    masks = np.zeros((2, 4, 10), dtype=bool)
    masks[0, :, 0:4] = True  # shifted by 1: I 12, U 20
    ious = reconstruction_ious(ShiftTokenizer(), None, masks, [1, 2, 3])
    assert ious[3].tolist() == [1.0, 1.0]  # exact at full length; two empty masks score 1
    assert ious[2][0] == pytest.approx(12 / 20) and ious[1][0] == pytest.approx(8 / 24)
    with pytest.raises(ValueError, match="outside 1..3"):
        reconstruction_ious(ShiftTokenizer(), None, masks, [4])
    assert reconstruction_ious(ShiftTokenizer(), None, np.zeros((0, 4, 10), bool)) == {}
