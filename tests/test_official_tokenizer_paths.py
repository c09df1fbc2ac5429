"""What differed from the reference code on the loading and calling paths, fixed: official VLM
folders open with load_tokenizer; a VLM's model.safetensors is not read as a tokenizer; HiMTok's
official loading accepts exactly the named benign difference; its official preprocessing and
soft decoding are the defaults for official weights; SAMTok's partial words decode as the
reference does when asked."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from masktok.tokenizers import load_tokenizer
from masktok.tokenizers.himtok import HiMTok, official_config
from masktok.tokenizers.samtok import SAMTok
from mllm_fixtures import single_thread_torch  # noqa: F401 (autouse)
from mllm_fixtures import box_mask, build_tiny_samtok, tiny_image, tiny_samtok_config
from official_fixtures import tiny_official_himtok_config, write_qwen_samtok


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    return write_qwen_samtok(tmp_path_factory.mktemp("Qwen2.5-VL-7B-SAMTok"), "qwen2_5_vl")


def test_load_tokenizer_takes_an_official_vlm_folder(qwen_folder):
    # The VLM's config.json comes first in the folder, and its weights are one model.safetensors.
    assert "tokenizer_type" not in json.loads((qwen_folder / "config.json").read_text())
    assert (qwen_folder / "model.safetensors").is_file()
    image, masks = tiny_image(), box_mask(48, 64, (5, 5, 30, 30))[None]
    expected = build_tiny_samtok().encode(image, masks)
    for loaded in (load_tokenizer(qwen_folder, config=tiny_samtok_config()),
                   SAMTok.from_pretrained(qwen_folder, config=tiny_samtok_config())):
        assert torch.equal(loaded.encode(image, masks), expected)


def test_load_tokenizer_takes_himtok_beside_a_vlm_and_inside_internvl_shards(qwen_folder, tmp_path):
    from official_fixtures import write_internvl_himtok

    config = tiny_official_himtok_config()
    himtok = HiMTok.from_config(config, seed=1)
    (tmp_path / "vlm").mkdir()
    (tmp_path / "vlm" / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    himtok.save_pretrained(tmp_path / "vlm", layout="official")
    masks = box_mask(48, 64, (5, 5, 30, 30))[None]
    assert torch.equal(load_tokenizer(tmp_path / "vlm", config=config).encode(None, masks),
                       himtok.encode(None, masks))
    folder = write_internvl_himtok(tmp_path / "internvl")
    from_shards = load_tokenizer(folder, config=config)
    assert from_shards.vocabulary.name == "himtok" and from_shards.encode(None, masks).shape == (1, 32)
    both = tmp_path / "both"
    both.mkdir()
    (both / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    himtok.save_pretrained(both, layout="official")
    (both / "mask_tokenizer_256x2.pth").write_bytes((qwen_folder / "mask_tokenizer_256x2.pth").read_bytes())
    with pytest.raises(ValueError, match="2 candidate mask tokenizers"):
        load_tokenizer(both)


def test_himtok_official_loading_accepts_only_the_named_benign_difference(tmp_path):
    config = tiny_official_himtok_config()
    himtok = HiMTok.from_config(config, seed=0)
    state = {k: v.clone() for k, v in himtok.model.state_dict().items()}
    without_mask = {k: v for k, v in state.items() if k != "encoder.attn_mask"}
    torch.save(without_mask, tmp_path / "no_mask.pth")
    masks = box_mask(48, 64, (5, 5, 30, 30))[None]
    loaded = HiMTok.from_pretrained(tmp_path / "no_mask.pth", config=config)
    assert torch.equal(loaded.encode(None, masks), himtok.encode(None, masks))
    wrong = dict(state, **{"encoder.attn_mask": ~state["encoder.attn_mask"]})
    torch.save(wrong, tmp_path / "wrong_mask.pth")
    with pytest.raises(ValueError, match="encoder.attn_mask differs"):
        HiMTok.from_pretrained(tmp_path / "wrong_mask.pth", config=config)
    extra = dict(state, **{"decoder.stray_buffer": torch.zeros(3)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="1 unexpected: decoder.stray_buffer"):
        HiMTok.from_pretrained(tmp_path / "extra.pth", config=config)
    missing = {k: v for k, v in state.items() if k != "decoder.mask_token"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="1 missing: decoder.mask_token"):
        HiMTok.from_pretrained(tmp_path / "missing.pth", config=config)


def test_official_himtok_preprocesses_masks_as_the_official_data_path():
    config = tiny_official_himtok_config()
    assert official_config().mask_resize == "pil_bicubic" and config.mask_resize == "pil_bicubic"
    mask = np.zeros((301, 211), dtype=bool)  # downscaled to the 64² frame: where the two paths part
    mask[37:240, 51:163] = True
    official = HiMTok.from_config(config, seed=0)
    got = official.prepare_masks(mask[None])[0, 0]
    pil = Image.fromarray(mask.astype(np.uint8) * 255).resize((64, 64), Image.Resampling.BICUBIC)
    expected = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    bilinear = HiMTok.from_config(replace(config, mask_resize="bilinear"), seed=0).prepare_masks(mask[None])[0, 0]
    torch.testing.assert_close(bilinear, F.interpolate(torch.from_numpy(mask).float()[None, None], size=(64, 64),
                                                       mode="bilinear", align_corners=False)[0, 0])
    assert 0.1 < (bilinear - got).abs().max() <= 0.5  # the gap the official path closes


def test_official_himtok_soft_decoding_defaults_to_the_raw_mixture():
    config = tiny_official_himtok_config()
    official = HiMTok.from_config(config, seed=0)
    probs = torch.softmax(torch.randn(2, 8, 1024, generator=torch.Generator().manual_seed(0)) * 3, dim=-1)
    default = official.decode_soft(probs, return_logits=True)
    torch.testing.assert_close(default, official.decode_soft(probs, return_logits=True, renormalize=False))
    assert not torch.allclose(default, official.decode_soft(probs, return_logits=True, renormalize=True))
    compact = HiMTok.from_config(replace(config, soft_renormalize=True), seed=0)
    torch.testing.assert_close(compact.decode_soft(probs, return_logits=True),
                               compact.decode_soft(probs, return_logits=True, renormalize=True))


def test_samtok_partial_words_decode_as_the_reference_when_asked():
    tokenizer = build_tiny_samtok()
    image = tiny_image()
    partial = torch.tensor([[3, -1], [7, -1]])
    default = tokenizer.decode(image, partial, return_logits=True)
    alone = tokenizer.decode(image, partial[:, :1], return_logits=True)
    torch.testing.assert_close(default, alone, rtol=0, atol=0)  # level 0 alone, the default
    reference = tokenizer.decode(image, partial, return_logits=True, partial="reference")
    row0 = tokenizer.decode(image, torch.tensor([[3, 0], [7, 0]]), return_logits=True)
    torch.testing.assert_close(reference, row0, rtol=0, atol=0)  # [c0, -1] → codebook rows c0 and 0
    assert not torch.equal(reference, default)
    text = "<|mt_start|><|mt_0003|><|mt_end|>"
    words = tokenizer.decode_words(image, text, lenient=True, partial="reference")
    np.testing.assert_array_equal(words.masks.numpy(), (row0[:1] > 0.5).numpy())
    with pytest.raises(ValueError, match="partial"):
        tokenizer.decode(image, partial, partial="zero")
