"""``masktok tokenize-dataset`` and ``masktok build-sft`` end to end with a tiny SAMTok saved to disk
and loaded back through ``load_tokenizer`` (image-conditioned words, decoded on their images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from masktok.cli import app
from masktok.tokenizers import load_tokenizer
from masktok.words import parse_mask_words


@pytest.fixture(scope="module")
def samtok_dir(tmp_path_factory) -> Path:
    from masktok.tokenizers.samtok import SAMTok, tiny_test_config

    folder = tmp_path_factory.mktemp("samtok")
    SAMTok.from_config(tiny_test_config(), seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def coco_subset(test_data, tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    """Three real COCO images on disk with their annotations, and refs over two of them."""
    root = test_data / "coco_val2014_100"
    data = json.loads((root / "instances_val2014_100.json").read_text())
    present = {p.name for p in (root / "images").iterdir()}
    with_anns = {a["image_id"] for a in data["annotations"] if not a["iscrowd"]}
    data["images"] = [i for i in data["images"] if i["file_name"] in present and i["id"] in with_anns][:3]
    keep = {i["id"] for i in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    folder = tmp_path_factory.mktemp("coco")
    (folder / "instances.json").write_text(json.dumps(data))
    refs = []
    for k, img in enumerate(data["images"][:2]):
        ann = next(a for a in data["annotations"] if a["image_id"] == img["id"] and not a["iscrowd"])
        refs.append({"ref_id": k, "image_id": img["id"], "ann_id": ann["id"], "split": "val",
                     "sentences": [{"sent_id": 10 + k, "sent": f"object number {k}"}]})
    (folder / "refs.json").write_text(json.dumps(refs))
    return folder, root / "images", data["images"]


def run(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


def test_tokenize_dataset_then_build_from_parquet(samtok_dir, coco_subset, tmp_path):
    folder, images, infos = coco_subset
    result = run("tokenize-dataset", "coco", "--tokenizer", samtok_dir, "--out", tmp_path / "pq",
                 "--annotations", folder / "instances.json", "--images", images, "--workers", "0",
                 "--images-per-shard", "2", "--no-progress", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pq" / "_SUCCESS").is_file() and "codebook usage" in result.output
    result = run("build-sft", "instance", "--parquet", tmp_path / "pq", "--annotations",
                 folder / "instances.json", "--images", images, "--out", tmp_path / "sft",
                 "--render", "1")
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "sft" / "instance.llava.json").read_text())
    assert len(records) == 3 and "SFT data card" in result.output
    tok = load_tokenizer(samtok_dir)
    for rec, info in list(zip(records, infos))[:1]:  # decoding is the slow part on CPU
        answer = rec["conversations"][1]["value"]
        spans = parse_mask_words(answer, tok.vocabulary)
        assert spans and all(s.ok for s in spans)
        image = np.asarray(Image.open(rec["image"]).convert("RGB"))
        codes = np.asarray([s.codes for s in spans])
        masks = tok.decode(image, codes, size=(info["height"], info["width"]))
        assert tuple(masks.shape) == (len(spans), info["height"], info["width"])


def test_build_res_and_zoomed_region_captions_on_the_fly(samtok_dir, coco_subset, tmp_path):
    folder, images, infos = coco_subset
    common = ["--tokenizer", samtok_dir, "--annotations", folder / "refs.json", "--instances",
              folder / "instances.json", "--images", images, "--device", "cpu", "--render", "1"]
    result = run("build-sft", "res", "--out", tmp_path / "res", *common)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "res" / "res.trl.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert rows[0]["messages"][0]["content"][0] == {"type": "image"}
    result = run("build-sft", "region_caption", "--out", tmp_path / "cap", *common)
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "cap" / "region_caption.llava.json").read_text())
    assert [r["conversations"][1]["value"] for r in records] == ["object number 0", "object number 1"]
    tok = load_tokenizer(samtok_dir)
    for rec in records:
        paths = rec["image"] if isinstance(rec["image"], list) else [rec["image"]]
        user = rec["conversations"][0]["value"]
        assert user.count("<image>") == len(paths)
        spans = parse_mask_words(user, tok.vocabulary)
        # the scene's words come first; with a crop, the last span is the crop's own words
        last = np.asarray(Image.open(paths[-1]).convert("RGB"))
        mask = tok.decode(last, np.asarray([spans[-1].codes]), size=last.shape[:2])
        assert tuple(mask.shape[1:]) == last.shape[:2]
    assert (tmp_path / "cap" / "card" / "region_caption" / "sample_0.png").is_file()


def test_build_sft_reports_missing_inputs(tmp_path):
    result = run("build-sft", "res", "--out", tmp_path)  # the shipped tokenizer; no refs given
    assert result.exit_code == 2 and "--annotations" in result.output
