"""HiMTok's own SFT JSONL (the shared ``refseg_examples``): read by ``masktok build-sft himtok|res``,
and its placeholder mask words replaced folder-wide by ``masktok convert-sft-masks`` (resumable),
with a tiny HiMTok saved to disk and loaded back through ``load_tokenizer``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from masktok.cli import app
from masktok.data.sft.himtok_jsonl import read_himtok_sft_jsonl
from masktok.tokenizers import load_tokenizer
from masktok.words import parse_mask_words

from test_himtok_tokenizer import tiny_config


@pytest.fixture(scope="module")
def himtok_dir(tmp_path_factory) -> Path:
    from masktok.tokenizers.himtok import HiMTok

    folder = tmp_path_factory.mktemp("himtok")
    HiMTok.from_config(tiny_config(), seed=0).save_pretrained(folder)
    return folder


@pytest.fixture()
def dataset(test_data, tmp_path) -> Path:
    """A writable copy of refseg_examples: anns/*.jsonl, images/, masks/ (paths relative to it)."""
    root = tmp_path / "refseg"
    shutil.copytree(test_data / "refseg_examples", root)
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return root


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    result.flat = "".join(result.output.split())  # rich wraps long lines anywhere: compare without spaces
    return result


def expected_words(himtok_dir: Path, mask_png: Path) -> str:
    tok = load_tokenizer(himtok_dir)
    mask = np.asarray(Image.open(mask_png).convert("L")) > 127
    return tok.encode_words(None, mask[None])[0]


def test_build_sft_reads_himtok_jsonl(himtok_dir, dataset, tmp_path):
    ann = dataset / "anns" / "seg_data_with_mask.jsonl"
    for task in ("himtok", "res"):
        out = tmp_path / task
        result = run("build-sft", task, "--annotations", ann, "--images", dataset, "--tokenizer", himtok_dir,
                     "--out", out, "--device", "cpu", "--render", "0")
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in next(out.rglob("*.jsonl")).read_text().splitlines()]
        assert len(rows) == 4
    text = json.dumps(rows[0])
    assert "<|mt_0|><|mt_0|>" not in text  # placeholders replaced
    words = expected_words(himtok_dir, dataset / "masks" / "0.png")
    assert words in text and "Segment <ref>road</ref>." in text
    bad = run("build-sft", "region_caption", "--annotations", ann, "--images", dataset, "--tokenizer",
              himtok_dir, "--out", tmp_path / "x", "--device", "cpu")
    assert bad.exit_code == 2 and "HiMTok'sSFTformat" in bad.flat and "Traceback" not in bad.output


def test_convert_sft_masks_folder_resumable_with_counts(himtok_dir, dataset, tmp_path):
    out = tmp_path / "converted"
    target = out / "anns" / "seg_data_with_mask.jsonl"
    # an interrupted earlier run: two records done, the third torn mid-line
    target.parent.mkdir(parents=True)
    lines = (dataset / "anns" / "seg_data_with_mask.jsonl").read_text().splitlines(keepends=True)
    target.with_name(target.name + ".partial").write_text("".join(lines[:2]) + lines[2][:20])
    result = run("convert-sft-masks", dataset, "--tokenizer", himtok_dir, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "2converted,2alreadydone,0skipped" in result.flat
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 4 and not target.with_name(target.name + ".partial").exists()
    for k in (2, 3):  # the converted records carry the mask's real words, one span each
        answer = rows[k]["conversations"][1]["value"]
        assert expected_words(himtok_dir, dataset / rows[k]["mask"]) in answer
        spans = parse_mask_words(answer, load_tokenizer(himtok_dir).vocabulary)
        assert len(spans) == 1 and spans[0].decodable
        assert rows[k]["image"] == f"images/{k}.jpg"
    again = run("convert-sft-masks", dataset, "--tokenizer", himtok_dir, "--out", out, "--device", "cpu")
    assert again.exit_code == 0 and "0recordsconverted,4alreadyconverted" in again.flat


def test_convert_sft_masks_missing_files(himtok_dir, dataset, tmp_path):
    (dataset / "masks" / "1.png").unlink()
    strict = run("convert-sft-masks", dataset, "--tokenizer", himtok_dir, "--out", tmp_path / "a", "--device", "cpu")
    assert strict.exit_code == 2 and "masks/1.png:nosuchfile" in strict.flat
    lenient = run("convert-sft-masks", dataset, "--tokenizer", himtok_dir, "--out", tmp_path / "b",
                  "--device", "cpu", "--skip-missing")
    assert lenient.exit_code == 0, lenient.output
    assert "3recordsconverted,0alreadyconvertedearlier(skipped),1skippedforamissing" in lenient.flat
    assert len((tmp_path / "b" / "anns" / "seg_data_with_mask.jsonl").read_text().splitlines()) == 3


def test_reader_errors_name_the_line(dataset):
    ann = dataset / "anns" / "seg_data_with_mask.jsonl"
    rec = json.loads(ann.read_text().splitlines()[0])
    rec["conversations"][1]["value"] = "no mask here"
    ann.write_text(json.dumps(rec) + "\n")
    with pytest.raises(ValueError, match=r"line 1: the answers hold 0 mask words"):
        read_himtok_sft_jsonl(ann, dataset)
