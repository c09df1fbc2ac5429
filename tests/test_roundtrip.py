"""The shipped default tokenizer and ``masktok roundtrip`` (the main job)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from masktok.cli import app

REPO = Path(__file__).resolve().parents[1]


def test_import_masktok_stays_light():
    code = "import sys, masktok; print('torch' in sys.modules, callable(masktok.load_default))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_default_tokenizer_is_shipped_compact_and_loads_offline():
    import masktok
    from masktok.default_model import SHIPPED_TOKENIZERS, shipped_tokenizer_path
    from masktok.tokenizers.himtok import HiMTok

    for name in SHIPPED_TOKENIZERS:
        folder = shipped_tokenizer_path(name)
        assert (folder / "model.safetensors").stat().st_size <= 16 * 10 ** 6
        assert (folder / "MODEL_CARD.md").is_file()
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert "F16" in dtypes and not dtypes & {"F32", "F64", "BF16"}  # floats in fp16 (masks stay bool)
    tok = masktok.load_default()
    assert isinstance(tok, HiMTok) and tok.max_codes == 32
    assert tok.config.name == "masktok-box-v2" and tok.config.box_rounding == "outward"


def test_the_first_shipped_tokenizer_stays_loadable_by_name():
    import masktok

    v1 = masktok.load_default(name="masktok-box-v1")
    assert v1.config.name == "masktok-box" and v1.config.box_rounding == "nearest" and v1.max_codes == 32
    masks = np.zeros((1, 48, 64), dtype=bool)
    masks[0, 10:30, 20:50] = True
    codes = v1.encode(None, masks)
    assert codes[0, :4].tolist() == [round(20 / 64 * 1023), round(10 / 48 * 1023), round(50 / 64 * 1023),
                                     round(30 / 48 * 1023)]  # nearest levels of the tight box
    assert v1.decode(None, codes, size=(48, 64)).shape == (1, 48, 64)
    with pytest.raises(ValueError, match="shipped: \\['masktok-box-v2', 'masktok-box-v1'\\]"):
        masktok.load_default(name="masktok-box-v3")


def test_roundtrip_writes_words_masks_overlays_and_scores(tmp_path):
    from masktok.samples import load_samples
    from masktok.words import HIMTOK_VOCABULARY, parse_mask_words

    result = CliRunner().invoke(app, ["roundtrip", "--out", str(tmp_path), "--prefix-lengths", "4,32"])
    assert result.exit_code == 0, result.output
    samples = load_samples()
    lines = [json.loads(line) for line in (tmp_path / "words.jsonl").read_text().splitlines()]
    assert len(lines) == sum(m.shape[0] for _, m, _ in samples)
    for line in lines:
        spans = parse_mask_words(line["words"], HIMTOK_VOCABULARY)
        assert len(spans) == 1 and list(spans[0].codes) == line["codes"] and len(line["codes"]) == 32
        assert 0.0 <= line["iou"] <= 1.0
    image, masks, meta = samples[0]
    stem = meta["file"].rsplit(".", 1)[0]
    recon = np.asarray(Image.open(tmp_path / "masks" / f"{stem}_0.png"))
    assert recon.shape == masks.shape[1:]
    side = Image.open(tmp_path / "overlays" / f"{stem}.png")
    assert side.size == (2 * image.width + 8, image.height)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["masks"] == len(lines) and set(summary["miou"]) == {"4", "32"}
    # The 32-code mIoU in the summary is the mean of the per-mask IoUs.
    assert abs(summary["miou"]["32"] - np.mean([line["iou"] for line in lines])) < 1e-3
    assert summary["miou"]["32"] > 0.85 and summary["miou"]["32"] > summary["miou"]["4"]  # the shipped model
    assert "mIoU" in result.output


@pytest.mark.slow
def test_shipped_tokenizer_reproduces_the_readme_scores(tmp_path, test_data):
    """The documented evaluation command gives the numbers the README and model card state."""
    out = tmp_path / "eval.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "eval_default_tokenizer.py"), "--data-root",
                    str(test_data), "--lengths", "4,8,16,32", "--sets", "coco_val2014_100", "--no-progress",
                    "--out", str(out)], check=True, cwd=REPO)
    summary = json.loads(out.read_text())["sets"]["coco_val2014_100"]["all"]
    assert summary["masks"] == 839
    miou = summary["miou"]
    assert miou["32"] >= 0.95 and miou["16"] >= 0.90  # the quality targets of the shipped model
    readme = (REPO / "README.md").read_text()
    stated = re.search(r"mIoU ([0-9.]+) / ([0-9.]+) / ([0-9.]+) / \*\*([0-9.]+)\*\* at\s+4 / 8 / 16 / 32 words", readme)
    assert stated is not None
    for got, text in zip((miou["4"], miou["8"], miou["16"], miou["32"]), stated.groups()):
        assert abs(got - float(text)) < 1e-3, (got, text)
