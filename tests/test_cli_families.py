"""Each tokenizer command with both families: the shipped HiMTok (``--tokenizer default``, also the
default) and a tiny SAMTok saved in its folder layout; every decode option with each."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from masktok.cli import app
from masktok.masks import masks_to_rles, rle_to_mask
from masktok.tokenizers import load_tokenizer
from masktok.tokenizers.samtok import SAMTok, tiny_test_config
from masktok.default_model import default_tokenizer_path

H, W = 48, 64


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    SAMTok.from_config(tiny_test_config(), seed=0).save_pretrained(root / "samtok")
    image = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "image.png")
    masks = np.zeros((2, H, W), dtype=bool)
    masks[0, 4:30, 6:40] = True
    masks[1, 20:46, 30:60] = True
    (root / "masks.json").write_text(json.dumps(masks_to_rles(masks)))
    (root / "none.json").write_text("[]")
    return root, image, masks


@pytest.fixture(params=["default", "samtok"])
def family(request, setup):
    root, *_ = setup
    name = request.param
    path = default_tokenizer_path() if name == "default" else root / "samtok"
    return name, ("default" if name == "default" else str(path)), load_tokenizer(path)


def _ok(args, **kw):
    result = CliRunner().invoke(app, [str(a) for a in args], **kw)
    assert result.exit_code == 0, result.output
    return result


def test_encode_then_decode_with_every_option(setup, family, tmp_path):
    root, image, masks = setup
    name, option, tok = family
    encoded = json.loads(_ok(["encode", "-t", option, "-i", root / "image.png", "-m", root / "masks.json"]).stdout)
    assert [m["codes"] for m in encoded["masks"]] == tok.encode(image, masks).tolist()
    assert encoded["size"] == [H, W]
    text = "two regions: " + encoded["text"]

    # default size = the image's; the overlay is the image with the masks drawn
    out, overlay = tmp_path / "out.json", tmp_path / "overlay.png"
    _ok(["decode", "-t", option, "-i", root / "image.png", "-w", text, "-o", out, "--overlay", overlay])
    decoded = json.loads(out.read_text())
    assert decoded["size"] == [H, W] and Image.open(overlay).size == (W, H)
    expected = tok.decode_words(image, text, size=(H, W)).masks.numpy()
    assert [rle_to_mask(s["rle"]).tolist() for s in decoded["spans"]] == expected.tolist()

    # --size, --threshold (SAMTok: on the logit; HiMTok: on the probability), --dtype, stdin
    threshold = "-1.5" if name == "samtok" else "0.3"
    sized = json.loads(_ok(["decode", "-t", option, "-i", root / "image.png", "-w", "-", "--size", "24x32",
                            "--threshold", threshold, "--dtype", "float32"], input=text).stdout)
    want = tok.decode_words(image, text, size=(24, 32), threshold=float(threshold)).masks.numpy()
    assert sized["size"] == [24, 32]
    assert [rle_to_mask(s["rle"]).tolist() for s in sized["spans"]] == want.tolist()
    if name == "default":  # a lower threshold grows HiMTok's masks
        assert want.sum() >= tok.decode_words(image, text, size=(24, 32)).masks.sum()

    # --lenient: a malformed span is reported, the good one still decoded
    broken = encoded["masks"][0]["words"] + " and <|mt_start|>"
    lenient = json.loads(_ok(["decode", "-t", option, "-i", root / "image.png", "-w", broken, "--lenient"]).stdout)
    assert [s["rle"] is not None for s in lenient["spans"]] == [True, False]


def test_zero_masks_encode_to_an_empty_list(setup, family):
    root, *_ = setup
    _, option, _ = family
    encoded = json.loads(_ok(["encode", "-t", option, "-i", root / "image.png", "-m", root / "none.json"]).stdout)
    assert encoded["masks"] == [] and encoded["text"] == "" and encoded["size"] == [H, W]


def test_words_commands_take_the_tokenizers_vocabulary(family):
    name, option, tok = family
    codes = ["3", "7"]
    word = _ok(["words", "format", "-t", option, *codes]).stdout.strip()
    from masktok.words import format_mask_words

    assert word == format_mask_words([3, 7], tok.vocabulary)
    (span,) = json.loads(_ok(["words", "parse", "-t", option, word]).stdout)
    assert span["codes"] == [3, 7]


def test_roundtrip_with_both_families(family, tmp_path):
    name, option, tok = family
    lengths = "1,2" if name == "samtok" else "4,32"
    _ok(["roundtrip", "-t", option, "-o", tmp_path, "--prefix-lengths", lengths])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["miou"]) == set(lengths.split(",")) and summary["masks"] > 0


def test_tokenize_dataset_with_both_families(setup, family, tmp_path):
    """COCO annotations of the image; SAMTok reads the image folder, HiMTok needs none."""
    import pyarrow.parquet as pq

    from masktok.masks import mask_to_polygons

    root, image, masks = setup
    name, option, tok = family
    coco = {"images": [{"id": 1, "file_name": "image.png", "height": H, "width": W}],
            "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": float(m.sum()),
                             "bbox": [0, 0, 1, 1], "segmentation": mask_to_polygons(m)} for k, m in enumerate(masks)],
            "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    args = ["tokenize-dataset", "coco", "--tokenizer", option, "--annotations", tmp_path / "coco.json",
            "--out", tmp_path / "out", "--workers", "0", "--no-progress", "--device", "cpu"]
    if name == "samtok":
        refused = CliRunner().invoke(app, [str(a) for a in args])
        assert refused.exit_code == 2 and "--images" in refused.stderr
        args += ["--images", root]
    _ok(args)
    rows = pq.read_table(tmp_path / "out" / "part-00000.parquet").to_pydict()
    from masktok.annotations import read_coco_instances

    (annotated,) = read_coco_instances(tmp_path / "coco.json")
    assert rows["codes"] == tok.encode(image, torch.from_numpy(annotated.masks())).tolist()
    assert not list((tmp_path / "out").glob("_lock*"))  # the lock is given back
