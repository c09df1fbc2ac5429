"""The ``reference`` protocol reproduces each benchmark's published scorer on its edge cases; the
``strict`` protocol differs where docs/eval.md says. Expected values are computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from masktok.cli import app
from masktok.eval.gcg import GCGSample, evaluate_gcg
from masktok.masks.iou import encode_masks
from masktok.eval.psg import SceneGraph, evaluate_psg
from masktok.eval.rec_answers import answer_box
from masktok.eval.res import res_metrics
from masktok.eval.runner import run_rec
from masktok.words.phrase_similarity import glamm_similarity, lexical_similarity
from masktok.masks import mask_to_rle

RIDING, ON = 3, 5
runner = CliRunner()


def strip(a: int, b: int, w: int = 100) -> np.ndarray:
    m = np.zeros((1, w), dtype=bool)
    m[0, a:b] = True
    return m


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- PSG (OpenPSG)

def scene(image_id, relations, labels=(0, 1, 2)):
    masks = [strip(0, 20), strip(20, 50), strip(50, 100)][:len(labels)]
    return SceneGraph(image_id, 1, 100, list(labels), encode_masks(np.stack(masks)) if masks else [],
                      np.asarray(relations, dtype=np.int64).reshape(-1, 3))


def test_psg_reference_skips_images_without_triplets_and_repeated_gt_triplets():
    # image a: ground truth lists "person riding horse" twice and "horse on grass";
    # the prediction finds only "horse on grass"
    gt_a = scene("a", [(0, 1, RIDING), (0, 1, RIDING), (1, 2, ON)])
    pred_a = scene("a", [(1, 2, ON)])
    # image b: "horse on grass"; the prediction has no triplet at all
    gt_b = scene("b", [(1, 2, ON)])
    pred_b = scene("b", [], labels=())
    ref = evaluate_psg([gt_a, gt_b], [pred_a, pred_b], ks=(20,))
    # OpenPSG: the repeated triplet counts once (1 of 2 found, not 1 of 3) and image b is left out
    assert ref.recall[20] == pytest.approx(1 / 2)
    # per predicate: riding 0/1 on image a, on 1/1 on image a → (0 + 1) / 56
    assert ref.mean_recall[20] == pytest.approx(1 / 56)
    assert (ref.num_images, ref.num_images_without_prediction, ref.num_duplicate_gt_triplets) == (1, 1, 1)
    strict = evaluate_psg([gt_a, gt_b], [pred_a, pred_b], ks=(20,), protocol="strict")
    # every image counts: (1/2 + 0) / 2; "on": image a 1/1, image b 0/1 → 0.5
    assert strict.recall[20] == pytest.approx(1 / 4)
    assert strict.mean_recall[20] == pytest.approx(0.5 / 56)
    assert strict.num_images == 2
    rows: list[dict] = []
    evaluate_psg([gt_a, gt_b], [pred_a, pred_b], ks=(20,), per_image=rows)
    assert [r["scored"] for r in rows] == [True, False] and rows[0]["gt_relations"] == 2
    # every image without a triplet: OpenPSG's mean over no image
    empty = evaluate_psg([gt_b], [pred_b], ks=(20,))
    assert np.isnan(empty.recall[20]) and empty.num_images == 0
    with pytest.raises(ValueError, match="protocol must be one of"):
        evaluate_psg([gt_a], [pred_a], protocol="openpsg")


# ---------------------------------------------------------------- REC (InternVL, Qwen-VL)

def test_internvl_reference_reads_boxes_anywhere_and_fractions():
    w, h = 1000, 500

    def box(text, protocol="reference", fmt="internvl", width=w, height=h):
        return answer_box(text, fmt, width, height, protocol=protocol)

    # no <box> tags: InternVL's scorer still reads the list (per mille of the image)
    pb = box("It is at [[100, 100, 500, 500]].")
    np.testing.assert_allclose(pb.box, [100, 50, 500, 250])
    assert box("It is at [[100, 100, 500, 500]].", "strict").status == "no_box"
    # single brackets and values that sum below 4: already fractions of the image
    np.testing.assert_allclose(box("the box: [0.1, 0.1, 0.5, 0.5]").box, [100, 50, 500, 250], rtol=1e-6)
    # only the first list is tried: an unreadable first list means no box (IoU 0)
    two = "<box>[[a, b, c, d]]</box> <box>[[100, 100, 500, 500]]</box>"
    assert box(two).status == "unparsable_box" and box(two).num_boxes == 2
    np.testing.assert_allclose(box(two, "strict").box, [100, 50, 500, 250])  # strict: tags, numbers
    # reference arithmetic is float32, as the scorer's torch tensors
    assert box("[[100, 100, 500, 500]]").box.dtype == np.float32
    # Qwen-VL: the first "(x1,y1),(x2,y2)" anywhere, divided by 999
    np.testing.assert_allclose(box("(100,200),(500, 600)", fmt="qwen_vl", width=999, height=999).box,
                               [100, 200, 500, 600], rtol=1e-6)
    assert box("(100, 200), (500, 600)", fmt="qwen_vl").status == "no_box"  # no "),(" in the text
    assert box("(100,200),(500,600)", "strict", fmt="qwen_vl").status == "no_box"  # strict: in <box>
    assert box("<box>(100,200),(500,600)</box>", "strict", fmt="qwen_vl").status == "ok"
    assert box("(1,2,3),(4,5)", fmt="qwen_vl").status == "unparsable_box"


def test_run_rec_reports_unparsed_answers(tmp_path):
    ann = write_jsonl(tmp_path / "ann.jsonl", [
        {"id": str(i), "height": 500, "width": 1000, "masks": [], "boxes": [[100, 50, 400, 200]]}
        for i in range(4)])
    pred = write_jsonl(tmp_path / "pred.jsonl", [
        {"id": "0", "answer": "<box>[[100, 100, 500, 500]]</box>"},   # IoU 1 either way
        {"id": "1", "answer": "[[100, 100, 500, 500]]"},              # reference only
        {"id": "2", "answer": "[0.1, 0.1, 0.5, 0.5]"},                # reference only (fractions)
        {"id": "3", "answer": "I do not see it."}])                   # no box
    ref = run_rec(pred, ann, tmp_path / "ref")
    assert ref.metrics["Acc@0.5"] == pytest.approx(3 / 4) and ref.metrics["num_unparsed_answers"] == 1
    strict = run_rec(pred, ann, tmp_path / "strict", protocol="strict")
    assert strict.metrics["Acc@0.5"] == pytest.approx(1 / 4) and strict.metrics["num_unparsed_answers"] == 3
    unparsed = [json.loads(line) for line in (tmp_path / "strict" / "unparsed.jsonl").read_text().splitlines()]
    assert [(u["id"], u["status"]) for u in unparsed] == [("1", "no_box"), ("2", "no_box"), ("3", "no_box")]
    assert unparsed[0]["answer"] == "[[100, 100, 500, 500]]"
    assert any("unparsed.jsonl" in n for n in strict.notes)
    cli = runner.invoke(app, ["eval", "rec", "-p", str(pred), "-a", str(ann), "-o", str(tmp_path / "cli"),
                              "--protocol", "strict"])
    assert cli.exit_code == 0, cli.output
    assert json.loads((tmp_path / "cli" / "metrics.json").read_text())["metrics"]["Acc@0.5"] == 0.25
    bad = runner.invoke(app, ["eval", "rec", "-p", str(pred), "-a", str(ann), "-o", str(tmp_path / "x"),
                              "--protocol", "paper"])
    assert bad.exit_code == 2 and "protocol must be one of reference, strict" in bad.output
    assert "Traceback" not in bad.output


# ---------------------------------------------------------------- RES (LISA)

def test_res_reference_uses_lisas_epsilons():
    # sample 1: I = 1, U = 3; sample 2: both masks empty (U = 0)
    ref = res_metrics([1, 0], [3, 0])
    assert ref.giou == pytest.approx((1 / (3 + 1e-5) + 1.0) / 2, abs=1e-15)
    assert ref.ciou == pytest.approx(1 / (3 + 1e-10), abs=1e-15)
    strict = res_metrics([1, 0], [3, 0], protocol="strict")
    assert strict.giou == (1 / 3 + 1.0) / 2 and strict.ciou == 1 / 3
    assert ref.giou != strict.giou
    assert res_metrics([0], [0]).ciou == 0.0 and res_metrics([0], [0], protocol="strict").ciou == 0.0


# ---------------------------------------------------------------- GCG (GLaMM)

def gcg(image_id, phrases, masks):
    return GCGSample(image_id, 1, 10, ["caption"], phrases, encode_masks(np.stack(masks)))


def test_gcg_empty_mask_pairs_follow_glamms_nan():
    man, nothing = strip(0, 5, 10), strip(0, 0, 10)
    gt = [gcg("i", ["a man", "a shadow"], [man, nothing])]
    same = [gcg("i", ["a man", "a shadow"], [man, nothing])]
    ref = evaluate_gcg(gt, same, similarity=lexical_similarity)
    # GLaMM: IoU(empty, empty) = 0/0 = NaN → max is NaN → the image's mIoU matching records nothing
    assert ref.miou == 0.0
    # recall: argmax takes the NaN pair first; NaN passes the IoU test, the phrases agree → matched,
    # then "a man" (IoU 1) → 2 of 2
    assert ref.recall == 1.0
    strict = evaluate_gcg(gt, same, similarity=lexical_similarity, protocol="strict")
    assert strict.miou == 1.0 and strict.recall == 0.5  # the empty pair never matches
    # the NaN pair with different phrases ends the image's recall matching at once
    other = [gcg("i", ["a man", "a horse"], [man, nothing])]
    assert evaluate_gcg(gt, other, similarity=lexical_similarity).recall == 0.0
    assert evaluate_gcg(gt, other, similarity=lexical_similarity, protocol="strict").recall == 0.5
    # without an empty pair the protocols agree
    half = [gcg("i", ["a man", "a shadow"], [strip(0, 4, 10), strip(6, 9, 10)])]
    a = evaluate_gcg(gt, half, similarity=lexical_similarity)
    b = evaluate_gcg(gt, half, similarity=lexical_similarity, protocol="strict")
    # pred [0, 4) matches "a man" with IoU 4/5; [6, 9) meets only the empty mask (IoU 0)
    assert a.miou == b.miou == pytest.approx(0.8) and a.recall == b.recall == 0.5


# ---------------------------------------------------------------- GCG phrase similarity

def tiny_bert(folder: Path) -> None:
    """A random 1-layer BertModel + WordPiece tokenizer saved in the official layout."""
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "man", "horse", "dog", "red", "car"]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    BertModel(config).save_pretrained(folder)
    BertTokenizer(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)


@pytest.fixture(scope="module")
def bert_cache(tmp_path_factory) -> Path:
    """A Hugging Face cache holding a stand-in for ``bert-base-uncased`` (hub cache layout)."""
    cache = tmp_path_factory.mktemp("hf_cache")
    repo = cache / "models--bert-base-uncased"
    commit = "0123456789abcdef0123456789abcdef01234567"
    tiny_bert(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return cache


def test_glamm_similarity_uses_cached_bert_or_says_loudly_it_is_lexical(bert_cache, tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    found = glamm_similarity(cache_dir=bert_cache)
    assert found.name == "bert-base-uncased" and found.warning is None
    # GLaMM's score by hand: mean of the last hidden states of each phrase alone, cosine
    folder = next((bert_cache / "models--bert-base-uncased" / "snapshots").iterdir())
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        emb = [model(**tok(p, return_tensors="pt")).last_hidden_state[0].mean(0).numpy()
               for p in ("a man", "a red car")]
    expected = float(emb[0] @ emb[1] / np.linalg.norm(emb[0]) / np.linalg.norm(emb[1]))
    assert found.similarity(["a man"], ["a red car"])[0, 0] == pytest.approx(expected, abs=1e-6)

    missing = glamm_similarity(cache_dir=tmp_path)  # an empty cache
    assert missing.name == "lexical"
    assert "LEXICAL" in missing.warning and "NOT comparable" in missing.warning
    assert "not in the local Hugging Face cache" in missing.warning
    assert glamm_similarity("lexical").warning is not None
    with pytest.raises(ValueError, match="no-such-model"):
        glamm_similarity("no-such-model", cache_dir=tmp_path)


def test_gcg_cli_headline_says_when_recall_is_lexical(bert_cache, tmp_path):
    mask = mask_to_rle(strip(0, 5, 10))
    ann = write_jsonl(tmp_path / "gt.jsonl", [{"image_id": "i", "height": 1, "width": 10,
                                               "caption": "a man", "phrases": ["a man"], "masks": [mask]}])
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"image_id": "i", "caption": "a man", "phrases": ["a man"],
                                                  "masks": [mask]}])
    args = ["eval", "gcg", "-p", str(pred), "-a", str(ann), "--no-caption-metrics"]
    lexical = runner.invoke(app, args + ["-o", str(tmp_path / "lex"), "--hf-cache", str(tmp_path)])
    assert lexical.exit_code == 0, lexical.output
    assert "LEXICAL" in lexical.output.splitlines()[0]
    report = json.loads((tmp_path / "lex" / "metrics.json").read_text())
    assert "NOT comparable" in report["headline"] and report["metrics"]["phrase_similarity"] == "lexical"
    assert (tmp_path / "lex" / "metrics.md").read_text().startswith("**GCG recall uses the LEXICAL")
    bert = runner.invoke(app, args + ["-o", str(tmp_path / "bert"), "--hf-cache", str(bert_cache)])
    assert bert.exit_code == 0, bert.output
    report = json.loads((tmp_path / "bert" / "metrics.json").read_text())
    assert report["headline"] is None and report["metrics"]["phrase_similarity"] == "bert-base-uncased"
    assert report["metrics"]["Recall"] == 1.0  # identical phrases: cosine 1
