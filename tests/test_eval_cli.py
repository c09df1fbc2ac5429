"""``masktok eval …`` end to end on the real data in ``tests/data`` (and the fetched labelme VOC export)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from masktok.cli import app
from masktok.eval.datasets import read_coco_referring
from masktok.eval.report import json_ready
from masktok.masks import mask_to_rle, read_mask_png, resize_mask, rle_to_mask
from masktok.tokenizers.base import DecodedWords
from masktok.words import SAMTOK_VOCABULARY, format_mask_words, parse_mask_words

runner = CliRunner()


class LookupTokenizer:
    """A mask tokenizer that remembers every mask it encodes (code = its index, spelled as a
    SAMTok word pair); decoding is exact. Follows ``masktok.tokenizers.base.MaskTokenizer``."""

    vocabulary = SAMTOK_VOCABULARY

    def __init__(self, table: list[dict] | None = None):
        self.table = list(table or [])

    @classmethod
    def from_pretrained(cls, path, device="cpu", dtype=None):
        return cls(json.loads((Path(path) / "table.json").read_text()))

    def save_pretrained(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "table.json").write_text(json.dumps(self.table))

    def encode(self, image, masks):
        codes = []
        for m in np.asarray(masks, dtype=bool):
            self.table.append(mask_to_rle(m))
            k = len(self.table) - 1
            codes.append((k // 256, k % 256))
        return torch.tensor(codes, dtype=torch.long).reshape(-1, 2)

    def decode(self, image, codes, *, size=None, threshold=None, return_logits=False):
        out = []
        for c0, c1 in codes.tolist():
            m = rle_to_mask(self.table[c0 * 256 + c1])
            out.append(m if size is None or m.shape == tuple(size) else resize_mask(m, size))
        return torch.from_numpy(np.stack(out)) if out else torch.zeros(0, *(size or (1, 1)), dtype=torch.bool)

    def encode_words(self, image, masks):
        return [format_mask_words(c, self.vocabulary) for c in self.encode(image, masks).tolist()]

    def decode_words(self, image, text, *, size=None, lenient=False):
        spans = parse_mask_words(text, self.vocabulary, lenient=lenient)
        idx = [i for i, s in enumerate(spans) if s.decodable and len(s.codes) == 2]
        masks = self.decode(image, torch.tensor([spans[i].codes for i in idx]).reshape(-1, 2), size=size)
        return DecodedWords(masks=masks, spans=spans, decoded_span_indices=idx)


def invoke(*args: str):
    result = runner.invoke(app, ["eval", *map(str, args)])
    return result


def metrics_of(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())["metrics"]


@pytest.fixture(scope="module")
def coco(test_data):
    root = test_data / "coco_val2014_100"
    return root / "instances_val2014_100.json", root / "images"


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(json_ready(r)) + "\n" for r in records))
    return path


def test_res_gres_rec_on_coco_ground_truth_with_perturbations(coco, tmp_path):
    instances, images = coco
    samples = read_coco_referring(instances)
    rng = np.random.default_rng(0)
    preds, inter, union = [], [], []
    for k, s in enumerate(samples):
        gt = rle_to_mask(s.masks[0])
        if k % 10 == 0:
            pred = np.zeros_like(gt)
        else:
            pred = np.roll(gt, int(rng.integers(-4, 5)), axis=int(rng.integers(0, 2)))
        masks = [mask_to_rle(pred)] if pred.any() else []
        if k % 7 == 0 and masks:
            masks = masks * 2  # duplicated answer masks: the union is unchanged
        preds.append({"id": s.sample_id, "masks": masks})
        inter.append(np.count_nonzero(pred & gt))
        union.append(np.count_nonzero(pred | gt))
    pred_file = write_jsonl(tmp_path / "pred.jsonl", preds)
    inter, union = np.array(inter), np.array(union)

    out = tmp_path / "res"
    result = invoke("res", "-p", pred_file, "-a", instances, "-o", out, "--images", images, "--worst", "3")
    assert result.exit_code == 0, result.output
    m = metrics_of(out)
    assert m["cIoU"] == pytest.approx(inter.sum() / union.sum())
    assert m["gIoU"] == pytest.approx(np.mean(inter / union))
    assert m["Pr@0.5"] == pytest.approx(np.mean(inter / union >= 0.5))
    assert m["num_samples"] == len(samples) == 830
    assert len((out / "per_sample.jsonl").read_text().splitlines()) == 830
    assert len(list((out / "worst").glob("*.png"))) == 3
    assert "| cIoU |" in (out / "metrics.md").read_text()

    out = tmp_path / "gres"
    assert invoke("gres", "-p", pred_file, "-a", instances, "-o", out).exit_code == 0
    g = metrics_of(out)
    empty = np.array([not p["masks"] for p in preds])  # no masks in the answer = "no target"
    assert g["FP"] == empty.sum() and g["TN"] == (~empty).sum() and g["TP"] == g["FN"] == 0
    targeted_iou = np.where(empty, 0.0, inter / union)
    assert g["cIoU"] == pytest.approx(inter[~empty].sum() / union.sum())
    assert g["Pr@0.7"] == pytest.approx(np.mean(targeted_iou >= 0.7))

    out = tmp_path / "rec"
    assert invoke("rec", "-p", pred_file, "-a", instances, "-o", out).exit_code == 0
    r = metrics_of(out)
    assert r["num_without_box"] == empty.sum() and 0.5 < r["Acc@0.5"] < 1.0


def test_gres_with_no_target_samples_and_text_answers(test_data, tmp_path):
    """refseg_examples' real masks; answers are text with mask words decoded by a tokenizer."""
    root = test_data / "refseg_examples"
    records = [json.loads(line) for line in (root / "anns" / "seg_data_with_mask.jsonl").read_text().splitlines()]
    tok = LookupTokenizer()
    anns, preds = [], []
    for k, rec in enumerate(records):
        gt = read_mask_png(root / rec["mask"], threshold=127)
        h, w = gt.shape
        phrase = rec["conversations"][0]["value"].split("<ref>")[1].split("</ref>")[0]
        anns.append({"id": f"t{k}", "height": h, "width": w, "sentence": phrase, "masks": [mask_to_rle(gt)],
                     "file_name": rec["image"]})
        anns.append({"id": f"n{k}", "height": h, "width": w, "sentence": "unicorn", "masks": [],
                     "file_name": rec["image"]})
        shifted = np.roll(gt, 3, axis=1)
        preds.append({"id": f"t{k}", "answer": "Sure, " + tok.encode_words(None, shifted[None])[0] + "."})
        preds.append({"id": f"n{k}", "answer": "No target." if k % 2 == 0 else
                      tok.encode_words(None, gt[None])[0]})
    tok.save_pretrained(tmp_path / "tok")
    out = tmp_path / "gres"
    result = invoke("gres", "-p", write_jsonl(tmp_path / "p.jsonl", preds), "-a",
                    write_jsonl(tmp_path / "a.jsonl", anns), "-o", out, "--tokenizer", tmp_path / "tok",
                    "--tokenizer-kind", "test_eval_cli:LookupTokenizer", "--images", root)
    assert result.exit_code == 0, result.output
    g = metrics_of(out)
    assert (g["TP"], g["FN"], g["FP"], g["TN"]) == (2, 2, 0, 4)
    assert g["N-acc"] == 0.5 and g["T-acc"] == 1.0
    rows = [json.loads(x) for x in (out / "per_sample.jsonl").read_text().splitlines()]
    assert all(r["num_spans"] == (0 if r["outcome"] == "TP" else 1) for r in rows)
    # a text answer without a tokenizer is a clear error
    result = invoke("res", "-p", tmp_path / "p.jsonl", "-a", tmp_path / "a.jsonl", "-o", tmp_path / "x")
    assert result.exit_code == 2 and "tokenizer" in result.output


def test_gcg_answers_through_a_tokenizer(coco, test_data, tmp_path):
    instances, _ = coco
    samples = [s for s in read_coco_referring(instances)][:40]
    by_image: dict = {}
    for s in samples:
        by_image.setdefault(s.image_id, []).append(s)
    tok = LookupTokenizer()
    gt_rows, answers = [], []
    for image_id, group in by_image.items():
        h, w = group[0].height, group[0].width
        phrases = [g.sentence for g in group]
        gt_rows.append({"image_id": image_id, "height": h, "width": w, "caption": "a photo of " + ", ".join(phrases),
                        "phrases": phrases, "masks": [g.masks[0] for g in group]})
        words = tok.encode_words(None, np.stack([rle_to_mask(g.masks[0]) for g in group]))
        text = "A photo of " + ", ".join(f"<|object_ref_start|>{p}<|object_ref_end|>{wd}"
                                         for p, wd in zip(phrases, words)) + "."
        answers.append({"image_id": image_id, "answer": text})
    tok.save_pretrained(tmp_path / "tok")
    out = tmp_path / "gcg"
    result = invoke("gcg", "-p", write_jsonl(tmp_path / "p.jsonl", answers), "-a",
                    write_jsonl(tmp_path / "a.jsonl", gt_rows), "-o", out, "--no-caption-metrics",
                    "--tokenizer", tmp_path / "tok", "--tokenizer-kind", "test_eval_cli:LookupTokenizer")
    assert result.exit_code == 0, result.output
    m = metrics_of(out)
    assert (m["AP50"], m["mIoU"], m["Recall"]) == pytest.approx((1.0, 1.0, 1.0))
    row = json.loads((out / "per_sample.jsonl").read_text().splitlines()[0])
    assert row["caption"].startswith("A photo of ") and "<|" not in row["caption"]


def test_psg_ovseg_perception_recon(test_data, tmp_path, coco):
    # PSG: an OpenPSG file over the real panoptic sample; answers are text lines
    src = test_data / "coco_panoptic_sample"
    pan = json.loads((src / "panoptic_examples.json").read_text())
    cats = json.loads((src / "panoptic_coco_categories.json").read_text())
    ordered = [c for c in cats if c["isthing"]] + [c for c in cats if not c["isthing"]]
    index = {c["id"]: k for k, c in enumerate(ordered)}
    sizes = {img["id"]: img for img in pan["images"]}
    predicates = ["over", "in front of", "beside", "on", "in", "attached to"] + [f"p{i}" for i in range(50)]
    data, answers = [], []
    tok = LookupTokenizer()
    from masktok.masks import read_panoptic_png

    for ann in pan["annotations"]:
        img = sizes[ann["image_id"]]
        segs = [{**s, "category_id": index[s["category_id"]]} for s in ann["segments_info"]]
        rels = [[0, 1, 1], [1, 2, 3], [2, 0, 5]]
        data.append({"file_name": img["file_name"], "height": img["height"], "width": img["width"],
                     "image_id": str(ann["image_id"]), "pan_seg_file_name": ann["file_name"],
                     "segments_info": segs, "relations": rels})
        ids = read_panoptic_png(src / "panoptic_examples" / ann["file_name"])
        words = tok.encode_words(None, np.stack([ids == s["id"] for s in segs[:3]]))
        name = [ordered[s["category_id"]]["name"] for s in segs[:3]]
        lines = [f"{name[s]}{words[s]} {predicates[p]} {name[o]}{words[o]}" for s, o, p in rels[:2]]
        answers.append({"image_id": str(ann["image_id"]), "answer": "\n".join(lines + ["not a triplet"])})
    (tmp_path / "psg.json").write_text(json.dumps({
        "data": data, "thing_classes": [c["name"] for c in ordered[:80]],
        "stuff_classes": [c["name"] for c in ordered[80:]], "predicate_classes": predicates,
        "test_image_ids": [d["image_id"] for d in data]}))
    tok.save_pretrained(tmp_path / "tok")
    out = tmp_path / "psg"
    result = invoke("psg", "-p", write_jsonl(tmp_path / "psg_pred.jsonl", answers), "-a", tmp_path / "psg.json",
                    "-o", out, "--panoptic-root", src / "panoptic_examples", "--tokenizer", tmp_path / "tok",
                    "--tokenizer-kind", "test_eval_cli:LookupTokenizer")
    assert result.exit_code == 0, result.output
    m = metrics_of(out)
    assert m["R@20"] == pytest.approx(2 / 3) and m["protocol"] == "reference"
    assert m["mR@20"] == pytest.approx((1 + 1) / 56)
    strict = invoke("psg", "-p", tmp_path / "psg_pred.jsonl", "-a", tmp_path / "psg.json", "-o",
                    tmp_path / "psg_strict", "--panoptic-root", src / "panoptic_examples", "--tokenizer",
                    tmp_path / "tok", "--tokenizer-kind", "test_eval_cli:LookupTokenizer", "--protocol", "strict")
    assert strict.exit_code == 0, strict.output
    assert metrics_of(tmp_path / "psg_strict")["R@20"] == pytest.approx(2 / 3)  # no duplicate masks here
    assert any("not triplets" in n for n in json.loads((out / "metrics.json").read_text())["notes"])

    # mask perception
    q = write_jsonl(tmp_path / "q.jsonl", [{"id": 1, "options": ["a", "b"], "answer": "A"},
                                           {"id": 2, "options": ["a", "b"], "answer": "B"}])
    p = write_jsonl(tmp_path / "qp.jsonl", [{"id": 1, "answer": "(A)"}, {"id": 2, "answer": "A"}])
    assert invoke("perception", "-p", p, "-a", q, "-o", tmp_path / "mcq").exit_code == 0
    assert metrics_of(tmp_path / "mcq")["Acc"] == 0.5

    # reconstruction with a tiny HiMTok saved in its folder layout and loaded back by the CLI
    from masktok.tokenizers.himtok import HiMTok, PixelDecoderConfig, masktok_s_config
    from masktok.annotations import read_coco_instances

    config = replace(masktok_s_config(), name="tiny", image_size=64, patch_size=16, num_latent_tokens=8,
                     encoder_width=32, encoder_depth=1, encoder_heads=2, decoder_width=32, decoder_depth=1,
                     decoder_heads=2, token_dim=4, codebook_size=64,
                     pixel_decoder=PixelDecoderConfig(z_channels=16, hidden_channels=8,
                                                      channel_mult=(1, 1, 1, 1, 2), num_res_blocks=1,
                                                      out_channels=1, norm_groups=4, legacy_shortcut=False))
    him = HiMTok.from_config(config, seed=0)
    him.save_pretrained(tmp_path / "him")
    instances, _ = coco
    out = tmp_path / "recon"
    result = invoke("recon", "-a", instances, "-t", tmp_path / "him", "-o", out, "--max-images", "2",
                    "--prefix-lengths", "1,8")
    assert result.exit_code == 0, result.output
    m = metrics_of(out)
    first = [img for img in read_coco_instances(instances)[:2]]
    ious = {1: [], 8: []}
    for img in first:
        masks = np.stack([i.mask() for i in img.instances if not i.iscrowd])
        codes = him.encode(None, masks)
        for length in ious:
            dec = him.decode(None, codes[:, :length], size=masks.shape[1:]).numpy()
            inter = (dec & masks).reshape(len(masks), -1).sum(1)
            uni = (dec | masks).reshape(len(masks), -1).sum(1)
            ious[length].extend(np.where(uni > 0, inter / np.maximum(uni, 1), 1.0))
    assert m["r-Acc@1"] == pytest.approx(np.mean(ious[1])) and m["r-Acc"] == pytest.approx(np.mean(ious[8]))
    assert m["num_masks"] == len(ious[8])


def test_ovseg_on_voc_label_pngs(voc_labelme, tmp_path):
    # open-vocabulary segmentation on VOC label PNGs: one question per (image, class)
    voc = voc_labelme / "voc"
    from masktok.eval.scene_datasets import read_semseg_dir

    ds = read_semseg_dir(voc / "SegmentationClass", voc / "class_names.txt", reduce_zero_label=True)
    preds = []
    for im in ds.images:
        gt = ds.label_map(im)
        for c, name in enumerate(ds.classes):
            mask = gt == c
            preds.append({"image_id": im.image_id, "class": name,
                          "masks": [mask_to_rle(mask)] if mask.any() else []})
    out = tmp_path / "ovseg"
    result = invoke("ovseg", "-p", write_jsonl(tmp_path / "ov.jsonl", preds), "-a", voc / "SegmentationClass",
                    "--classes", voc / "class_names.txt", "--reduce-zero-label", "-o", out)
    assert result.exit_code == 0, result.output
    assert metrics_of(out)["mIoU"] == 1.0


def test_cli_reports_input_errors(coco, tmp_path):
    instances, _ = coco
    pred = write_jsonl(tmp_path / "p.jsonl", [{"id": "1774", "masks": []}])
    result = invoke("res", "-p", pred, "-a", instances, "-o", tmp_path / "o")
    assert result.exit_code == 2 and "no prediction for 829 samples" in result.output
    result = invoke("res", "-p", pred, "-a", instances, "-o", tmp_path / "o", "--allow-missing")
    assert result.exit_code == 0
    notes = json.loads((tmp_path / "o" / "metrics.json").read_text())["notes"]
    assert any("829 samples had no prediction" in n for n in notes)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "1774", "masks": [{"size": [3, 3], "counts": [9]}]}])
    result = invoke("res", "-p", bad, "-a", instances, "-o", tmp_path / "o2", "--allow-missing")
    assert result.exit_code == 2 and "different sizes" in result.output
