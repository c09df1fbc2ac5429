"""Loading chat folders (masktok-saved pairs and official layouts) and the ``masktok chat`` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from masktok.masks import write_mask_png
from masktok.mllm import MaskChat
from masktok.mllm.loading import find_mask_tokenizer, load_chat_components
from mllm_fixtures import single_thread_torch  # noqa: F401 (autouse)
from mllm_fixtures import (ScriptedAnswers, TinyVLMConfig, box_mask, build_tiny_chat,
                           build_tiny_himtok, build_tiny_samtok, save_official_samtok, script_ids,
                           tiny_image, tiny_samtok_config)


def scripted_answer(chat, image):
    words = chat.mask_tokenizer.encode_words(image, box_mask(48, 64, (5, 5, 30, 30))[None])[0]
    eos = chat.tokenizer.convert_tokens_to_ids("<|im_end|>")
    processors = (ScriptedAnswers([script_ids(chat.tokenizer, f"At {words}.")], eos),)
    return chat.ask(image, "Please segment the dog in this image.", logits_processors=processors,
                    max_new_tokens=12)


@pytest.mark.parametrize("kind", ["samtok", "himtok"])
def test_masktok_pair_round_trip(tmp_path, kind):
    build = build_tiny_samtok if kind == "samtok" else build_tiny_himtok
    chat = build_tiny_chat(build(), TinyVLMConfig(family="qwen3_vl"))
    chat.save_pretrained(tmp_path)
    assert find_mask_tokenizer(tmp_path) == ("masktok", tmp_path / "mask_tokenizer")
    assert json.loads((tmp_path / "masktok_chat.json").read_text())["vocabulary"] == kind
    loaded = MaskChat.from_pretrained(tmp_path)
    assert type(loaded.mask_tokenizer) is type(chat.mask_tokenizer)
    assert loaded.mask_ids == chat.mask_ids
    image = tiny_image()
    before, after = scripted_answer(chat, image), scripted_answer(loaded, image)
    assert after.text == before.text
    np.testing.assert_array_equal(after.decoded_masks, before.decoded_masks)


def test_official_samtok_folder(tmp_path):
    chat = build_tiny_chat(build_tiny_samtok(), TinyVLMConfig(family="qwen2_5_vl"))
    chat.model.save_pretrained(tmp_path)
    chat.processor.save_pretrained(tmp_path)
    save_official_samtok(chat.mask_tokenizer, tmp_path)
    assert (tmp_path / "mask_tokenizer_256x2.pth").is_file()
    assert (tmp_path / "sam2.1_hiera_large.pt").is_file()
    assert find_mask_tokenizer(tmp_path) == ("samtok", tmp_path / "mask_tokenizer_256x2.pth")
    # A tiny model matches no released SAM 2.1 preset, so its config is given.
    loaded = MaskChat.from_pretrained(tmp_path,
                                      mask_tokenizer_kwargs={"config": tiny_samtok_config()})
    image = tiny_image()
    np.testing.assert_array_equal(scripted_answer(loaded, image).decoded_masks,
                                  scripted_answer(chat, image).decoded_masks)


def test_official_himtok_checkpoint_beside_the_model(tmp_path):
    chat = build_tiny_chat(build_tiny_himtok(), TinyVLMConfig(family="qwen2_5_vl"))
    chat.model.save_pretrained(tmp_path)
    chat.processor.save_pretrained(tmp_path)
    chat.mask_tokenizer.save_pretrained(tmp_path, layout="official")
    config = chat.mask_tokenizer.config
    from masktok.tokenizers.himtok import HiMTok

    tokenizer = HiMTok.from_pretrained(tmp_path / "himtok.pth", config=config)
    model, processor, same = load_chat_components(tmp_path, mask_tokenizer=tokenizer)
    assert same is tokenizer and find_mask_tokenizer(tmp_path)[0] == "himtok"
    image = tiny_image()
    np.testing.assert_array_equal(scripted_answer(MaskChat(model, processor, tokenizer), image)
                                  .decoded_masks, scripted_answer(chat, image).decoded_masks)


def test_bad_folders_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="no mask tokenizer found"):
        find_mask_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="no config.json"):
        load_chat_components(tmp_path)
    chat = build_tiny_chat(build_tiny_himtok(), TinyVLMConfig())
    bare = tmp_path / "bare"
    chat.model.save_pretrained(bare)
    from mllm_fixtures import build_tiny_processor

    build_tiny_processor(TinyVLMConfig()).save_pretrained(bare)  # tokenizer without mask words
    with pytest.raises(ValueError, match="mask tokens are missing"):
        load_chat_components(bare, mask_tokenizer=chat.mask_tokenizer)


def test_cli_chat_writes_overlay_and_rle_json(tmp_path):
    from PIL import Image

    from masktok.cli import app

    chat = build_tiny_chat(build_tiny_samtok(), TinyVLMConfig(family="qwen2_5_vl"))
    chat.save_pretrained(tmp_path / "model")
    image_path, mask_path = tmp_path / "photo.png", tmp_path / "region.png"
    tiny_image(48, 64).save(image_path)
    write_mask_png(mask_path, box_mask(48, 64, (10, 10, 20, 20)))
    out = tmp_path / "out"
    args = ["chat", "--model", str(tmp_path / "model"), "--image", str(image_path), "--prompt",
            "What is <mask>?", "--mask", str(mask_path), "--out", str(out),
            "--max-new-tokens", "8"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "photo_masks.json").read_text())
    assert set(summary) >= {"text", "masks", "phrases", "relations"}
    assert Image.open(out / "photo_masks.png").size == (64, 48)
    streamed = CliRunner().invoke(app, args + ["--stream"])
    assert streamed.exit_code == 0, streamed.output
    bad = CliRunner().invoke(app, ["chat", "--model", str(tmp_path / "model"), "--image",
                                   str(tmp_path / "missing.png"), "--prompt", "hi"])
    assert bad.exit_code != 0
