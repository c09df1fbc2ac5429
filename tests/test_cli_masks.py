"""``masktok masks convert``: formats from suffixes or flags, round trips and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from masktok import masks as M
from masktok.cli import app
from masktok.cli.errors import BAD_INPUT_EXIT_CODE

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["masks", "convert", *map(str, args)])


@pytest.fixture
def mask():
    m = np.zeros((12, 15), dtype=bool)
    m[2:9, 3:11] = True
    m[10, 13] = True
    return m


def test_help_lists_convert():
    result = runner.invoke(app, ["masks", "--help"])
    assert result.exit_code == 0 and "convert" in result.output
    assert "masks" in runner.invoke(app, ["--help"]).output


def test_png_rle_polygons_png_round_trip(tmp_path, mask):
    M.write_mask_png(tmp_path / "in.png", mask)
    assert _run(tmp_path / "in.png", tmp_path / "m.rle.json").exit_code == 0
    rle = json.loads((tmp_path / "m.rle.json").read_text())
    assert rle == M.mask_to_rle(mask)
    assert _run(tmp_path / "m.rle.json", tmp_path / "m.poly.json").exit_code == 0
    poly = json.loads((tmp_path / "m.poly.json").read_text())
    assert poly["size"] == [12, 15] and len(poly["polygons"]) == 2
    result = _run(tmp_path / "m.poly.json", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    assert np.array_equal(M.read_mask_png(tmp_path / "out.png"), mask)
    assert "1 mask(s) of 12x15" in result.output


def test_plain_json_input_is_sniffed_output_needs_a_format(tmp_path, mask):
    (tmp_path / "m.json").write_text(json.dumps(M.mask_to_rle(mask, compressed=False)))
    assert _run(tmp_path / "m.json", tmp_path / "m.png").exit_code == 0
    assert np.array_equal(M.read_mask_png(tmp_path / "m.png"), mask)
    result = _run(tmp_path / "m.png", tmp_path / "again.json")
    assert result.exit_code == BAD_INPUT_EXIT_CODE and "pass --to" in result.output
    assert _run(tmp_path / "m.png", tmp_path / "again.json", "--to", "polygons").exit_code == 0
    assert "polygons" in json.loads((tmp_path / "again.json").read_text())


def test_several_masks_go_through_index_and_panoptic_pngs(tmp_path):
    masks = np.zeros((3, 8, 9), dtype=bool)
    masks[0, :2] = masks[1, 3:5, :4] = masks[2, 6:, 5:] = True
    (tmp_path / "m.rle.json").write_text(json.dumps(M.masks_to_rles(masks)))
    assert _run(tmp_path / "m.rle.json", tmp_path / "ids.png").exit_code == 0
    assert Image.open(tmp_path / "ids.png").mode == "P"
    assert _run(tmp_path / "ids.png", tmp_path / "back.rle.json").exit_code == 0
    assert json.loads((tmp_path / "back.rle.json").read_text()) == M.masks_to_rles(masks)
    assert _run(tmp_path / "m.rle.json", tmp_path / "pan.png", "--png-kind",
                "panoptic").exit_code == 0
    assert Image.open(tmp_path / "pan.png").mode == "RGB"
    assert _run(tmp_path / "pan.png", tmp_path / "p.rle.json").exit_code == 0
    assert json.loads((tmp_path / "p.rle.json").read_text()) == M.masks_to_rles(masks)
    result = _run(tmp_path / "m.rle.json", tmp_path / "one.png", "--png-kind", "binary")
    assert result.exit_code == BAD_INPUT_EXIT_CODE and "3 masks cannot go into one binary PNG" in result.output


def test_uncompressed_threshold_and_holes_options(tmp_path):
    grey = np.zeros((6, 6), dtype=np.uint8)
    grey[1:5, 1:5] = 200
    grey[2:4, 2:4] = 90
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    result = _run(tmp_path / "g.png", tmp_path / "g.rle.json")
    assert result.exit_code == BAD_INPUT_EXIT_CODE and "threshold" in result.output
    assert _run(tmp_path / "g.png", tmp_path / "g.rle.json", "--threshold", "127",
                "--uncompressed").exit_code == 0
    rle = json.loads((tmp_path / "g.rle.json").read_text())
    assert isinstance(rle["counts"], list) and np.array_equal(M.rle_to_mask(rle), grey > 127)
    result = _run(tmp_path / "g.rle.json", tmp_path / "g.poly.json")
    assert result.exit_code == BAD_INPUT_EXIT_CODE and "hole" in result.output
    assert _run(tmp_path / "g.rle.json", tmp_path / "g.poly.json", "--holes", "fill").exit_code == 0
    poly = json.loads((tmp_path / "g.poly.json").read_text())
    assert M.polygons_to_mask(poly["polygons"], 6, 6).sum() == 16


@pytest.mark.parametrize("content, args, message", [
    ("{\"size\": [2, 2], \"counts\": [5]}", (), "add up to"),
    ("{\"a\": 1}", (), "neither RLE"),
    ("not json", ("--from", "rle"), "not valid JSON"),
    ("[]", ("--from", "rle"), "non-empty list"),
    ("{\"size\": [4, 4], \"polygons\": [[0, 0, 1, 1]]}", (), "at least 3 points"),
    ("[{\"size\": [4, 4]}]", ("--from", "polygons"), "{'size': [H, W], 'polygons': [...]}"),
])
def test_bad_inputs_give_clear_errors(tmp_path, content, args, message):
    (tmp_path / "in.json").write_text(content)
    result = _run(tmp_path / "in.json", tmp_path / "out.png", *args)
    assert result.exit_code == BAD_INPUT_EXIT_CODE and message in result.output and "error:" in result.output
    assert not (tmp_path / "out.png").exists()


def test_bad_flags_and_paths(tmp_path, mask):
    M.write_mask_png(tmp_path / "in.png", mask)
    result = _run(tmp_path / "in.png", tmp_path / "o.rle.json", "--to", "svg")
    assert result.exit_code == 2 and "svg" in result.output
    result = _run(tmp_path / "missing.png", tmp_path / "o.rle.json")
    assert result.exit_code == BAD_INPUT_EXIT_CODE and "no such file" in result.output
    (tmp_path / "in.bmp").write_bytes(b"")
    result = _run(tmp_path / "in.bmp", tmp_path / "o.rle.json")
    assert result.exit_code == BAD_INPUT_EXIT_CODE and "pass --from" in result.output
