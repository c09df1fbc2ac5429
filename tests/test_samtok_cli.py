"""``masktok encode`` / ``masktok decode`` with a tiny SAMTok saved to disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from masktok.cli import app
from masktok.cli.errors import BAD_INPUT_EXIT_CODE
from masktok.masks import masks_to_rles, rle_to_mask
from masktok.tokenizers.samtok import SAMTok, tiny_test_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("samtok_cli")
    tok = SAMTok.from_config(tiny_test_config(), seed=0)
    tok.save_pretrained(folder / "tok")
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(image).save(folder / "image.png")
    masks = np.zeros((2, 40, 56), dtype=bool)
    masks[0, 5:20, 5:30] = True
    masks[1, 25:39, 30:55] = True
    (folder / "masks.json").write_text(json.dumps(masks_to_rles(masks)))
    return folder, tok, image, masks


def test_encode_prints_words_json(setup):
    folder, tok, image, masks = setup
    result = CliRunner().invoke(app, ["encode", "--tokenizer", str(folder / "tok"), "--image", str(folder / "image.png"),
                                      "--masks", str(folder / "masks.json")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    codes = tok.encode(image, masks)
    assert [m["codes"] for m in data["masks"]] == codes.tolist()
    assert [m["words"] for m in data["masks"]] == tok.encode_words(image, masks)
    assert data["text"] == "".join(m["words"] for m in data["masks"]) and data["size"] == [40, 56]


def test_encode_follows_the_empty_mask_policy(setup):
    folder, tok, image, masks = setup
    with_empty = np.concatenate([masks[:1], np.zeros((1, 40, 56), dtype=bool), masks[1:]])
    (folder / "with_empty.json").write_text(json.dumps(masks_to_rles(with_empty)))
    args = ["encode", "--tokenizer", str(folder / "tok"), "--image", str(folder / "image.png"),
            "--masks", str(folder / "with_empty.json")]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == BAD_INPUT_EXIT_CODE and "masks[1] is empty" in refused.output
    assert "Traceback" not in refused.output
    words = tok.encode_words(image, masks)
    skipped = json.loads(CliRunner().invoke(app, [*args, "--empty-masks", "skip"]).stdout)
    assert [(m["index"], m["words"]) for m in skipped["masks"]] == [(0, words[0]), (2, words[1])]
    kept = json.loads(CliRunner().invoke(app, [*args, "--empty-masks", "keep"]).stdout)
    assert [(m["index"], m["codes"], m["words"]) for m in kept["masks"]][1] == (1, None, None)
    assert kept["text"] == skipped["text"] == "".join(words)
    wrong = CliRunner().invoke(app, [*args, "--empty-masks", "drop"])
    assert wrong.exit_code == BAD_INPUT_EXIT_CODE and "--empty-masks: expected one of" in wrong.output


def test_decode_writes_rle_json_and_overlay(setup):
    folder, tok, image, masks = setup
    words = "".join(tok.encode_words(image, masks))
    out, overlay = folder / "decoded.json", folder / "overlay.png"
    result = CliRunner().invoke(app, ["decode", "--tokenizer", str(folder / "tok"), "--image", str(folder / "image.png"),
                                      "--words", f"two things: {words}", "--output", str(out),
                                      "--overlay", str(overlay), "--threshold", "-100"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert len(data["spans"]) == 2 and all(s["status"] == "ok" for s in data["spans"])
    expected = tok.decode(image, tok.encode(image, masks), threshold=-100)
    for span, mask in zip(data["spans"], expected.numpy()):
        assert np.array_equal(rle_to_mask(span["rle"]), mask)
    assert Image.open(overlay).size == (56, 40)


def test_errors_are_reported_cleanly(setup):
    folder, *_ = setup
    runner = CliRunner()
    result = runner.invoke(app, ["encode", "--tokenizer", str(folder / "tok"), "--image", str(folder / "image.png"),
                                 "--masks", str(folder / "missing.json")])
    assert result.exit_code == BAD_INPUT_EXIT_CODE and "no such file" in result.stderr
    result = runner.invoke(app, ["decode", "--tokenizer", str(folder / "tok"), "--image", str(folder / "image.png"),
                                 "--words", "<|mt_start|><|mt_0001|><|mt_end|>"])
    assert result.exit_code == BAD_INPUT_EXIT_CODE and result.stderr.startswith("error:")
