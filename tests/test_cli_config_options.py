"""The data commands take their settings and defaults from the config dataclasses.

``masktok tokenize-dataset`` builds its settings options from :class:`TokenizeConfig`,
``masktok build-sft`` from :class:`BuildConfig` (as ``masktok train tokenizer`` does from the
training configs): an option left out gets the dataclass's default, one given reaches the
config, and the help shows the dataclass's default.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from masktok.cli import app
from masktok.data.sft.base import BuildConfig
from masktok.data.tokenize.config import TokenizeConfig
from masktok.masks.zoom import ZoomConfig


class Stop(ValueError):
    """Raised where the command would start its work (a ValueError: reported as bad input)."""


@pytest.fixture
def coco(tmp_path):
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "height": 4, "width": 4}],
                                "annotations": [], "categories": [{"id": 1, "name": "thing"}]}))
    return path


def test_tokenize_dataset_settings_come_from_tokenize_config(monkeypatch, tmp_path, coco):
    from masktok.data.tokenize import pipeline

    seen: list[TokenizeConfig] = []

    def capture(source, tokenizer, config, **kwargs):
        seen.append(config)
        raise Stop("stopped before the work")

    monkeypatch.setattr(pipeline, "tokenize_dataset", capture)
    runner = CliRunner()
    base = ["tokenize-dataset", "coco", "--annotations", str(coco), "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert "stopped before the work" in runner.invoke(app, base).output
    assert seen[-1] == TokenizeConfig(output_dir=tmp_path / "out")  # every default is the dataclass's
    runner.invoke(app, [*base, "--workers", "0", "--no-crowd", "--empty-masks", "keep", "--missing-images", "skip",
                        "--images-per-shard", "3", "--num-codes", "5", "--no-progress"])
    assert seen[-1] == TokenizeConfig(output_dir=tmp_path / "out", num_workers=0, include_crowd=False,
                                      empty_masks="keep", missing_images="skip", images_per_shard=3, num_codes=5,
                                      progress=False)
    shown = runner.invoke(app, ["tokenize-dataset", "--help"], env={"COLUMNS": "250"}).output
    for field in ("images_per_shard", "prefetch_images", "num_workers"):
        assert f"(default: {TokenizeConfig.__dataclass_fields__[field].default!r})" in shown


def test_build_sft_settings_come_from_build_config(monkeypatch, tmp_path):
    from masktok.cli import data

    seen: list[BuildConfig] = []

    def capture(task, tokenizer, parquet, device, out, config, *args):
        seen.append(config)
        raise Stop("stopped before the work")

    monkeypatch.setattr(data, "_build_and_write", capture)
    runner = CliRunner()
    out = tmp_path / "sft"
    assert "stopped before the work" in runner.invoke(app, ["build-sft", "res", "--out", str(out)]).output
    assert seen[-1] == BuildConfig(crops_dir=out / "crops")
    runner.invoke(app, ["build-sft", "res", "--out", str(out), "--seed", "3", "--missing-images", "skip",
                        "--empty-masks", "skip", "--max-samples", "9", "--no-zoom"])
    assert seen[-1] == BuildConfig(seed=3, missing_images="skip", empty_masks="skip", max_samples=9, zoom=None,
                                   crops_dir=out / "crops")
    assert dataclasses.replace(seen[0], crops_dir=None).zoom == ZoomConfig()
    refused = runner.invoke(app, ["build-sft", "res", "--out", str(out), "--empty-masks", "keep"])
    assert refused.exit_code == 2 and "'keep' has no meaning for SFT answers" in refused.output and len(seen) == 2


def test_chat_settings_come_from_generation_settings_and_only_given_ones_override(monkeypatch, tmp_path):
    from PIL import Image

    from masktok.mllm import chat as chat_module
    from masktok.mllm.generation_settings import GenerationSettings

    asked: list[dict] = []

    class Session:
        settings = GenerationSettings(soft_decoding=True)  # as a folder's manifest may record

        def start(self, image):
            return object()

        def add_user_turn(self, conversation, prompt, masks):
            pass

        def generate(self, conversations, **overrides):
            asked.append(overrides)
            raise Stop("stopped before the work")

    monkeypatch.setattr(chat_module.MaskChat, "from_pretrained", classmethod(lambda cls, *a, **k: Session()))
    (tmp_path / "model").mkdir()
    Image.new("RGB", (8, 6)).save(tmp_path / "photo.png")
    base = ["chat", str(tmp_path / "model"), "--image", str(tmp_path / "photo.png"), "--prompt", "hi"]
    runner = CliRunner()
    assert "stopped before the work" in runner.invoke(app, base).output
    assert asked[-1] == {}  # nothing given: the folder's settings (and GenerationSettings' defaults) stay
    runner.invoke(app, [*base, "--max-new-tokens", "7", "--no-constrained", "--partial-codes", "reference"])
    assert asked[-1] == {"max_new_tokens": 7, "constrained": False, "partial_codes": "reference"}
    shown = runner.invoke(app, ["chat", "--help"], env={"COLUMNS": "250"}).output
    assert f"(default: {GenerationSettings().max_new_tokens!r})" in shown
