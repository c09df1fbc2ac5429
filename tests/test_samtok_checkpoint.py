"""SAMTok checkpoints: the official key set, Meta→HF conversion, layouts, strict and clear errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from masktok.tokenizers import load_tokenizer, tokenizer_type
from masktok.tokenizers.samtok import (
    CheckpointError,
    CheckpointKeyError,
    OfficialLayout,
    SAMTok,
    SAMTokModel,
    samtok_config,
    tiny_test_config,
)
from masktok.tokenizers.samtok.checkpoint import TOKENIZER_SAM2_PREFIX, infer_official_config
from official_fixtures import samtok_spec_shapes

CONFIG = tiny_test_config()


def test_hiera_large_loader_expects_exactly_the_official_992_tensors(shared_specs):
    with torch.device("meta"):
        model = SAMTokModel(samtok_config("large"))
    expected = OfficialLayout(model).expected_shapes()
    spec = samtok_spec_shapes(shared_specs)
    assert len(spec) == 992
    assert sorted(set(spec) - set(expected)) == [], "official tensors the loader would reject"
    assert sorted(set(expected) - set(spec)) == [], "tensors the loader wants that the file lacks"
    assert {k: v for k, v in expected.items() if spec[k] != v} == {}


def test_hiera_large_config_is_inferred_from_the_official_key_set(shared_specs):
    state = {k: torch.empty(shape, device="meta") for k, shape in samtok_spec_shapes(shared_specs).items()}
    config = infer_official_config(state, "spec")
    assert config.hiera == samtok_config("large").hiera
    assert (config.codebook_size, config.codebook_depth, config.hidden_size) == (256, 2, 256)


@pytest.fixture(scope="module")
def tok() -> SAMTok:
    return SAMTok.from_config(CONFIG, seed=0)


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    masks = np.zeros((3, 48, 64), dtype=bool)
    masks[0, 5:20, 10:40] = True
    masks[1, 30:47, 0:12] = True
    masks[2, 2:45, 50:63] = True
    return image, masks


def _assert_same_tokenizer(a: SAMTok, b: SAMTok, sample) -> None:
    image, masks = sample
    codes = a.encode(image, masks)
    assert torch.equal(codes, b.encode(image, masks))
    torch.testing.assert_close(a.decode(image, codes, return_logits=True), b.decode(image, codes, return_logits=True),
                               rtol=0, atol=0)


def test_official_layout_save_load_encode_decode(tok, sample, tmp_path):
    tok.save_pretrained(tmp_path, layout="official")
    path = tmp_path / "mask_tokenizer_16x2.pth"
    state = torch.load(path, weights_only=True)
    assert set(state) == set(OfficialLayout(tok.model).expected_shapes())
    assert all(k.startswith((TOKENIZER_SAM2_PREFIX, "quantizer.codebooks.")) for k in state)
    assert torch.equal(state["quantizer.codebooks.0.weight"][-1], torch.zeros(CONFIG.hidden_size))
    assert tokenizer_type(path) == "samtok"
    _assert_same_tokenizer(tok, SAMTok.from_pretrained(path, config=CONFIG), sample)


def test_masktok_format_roundtrip_and_registry(tok, sample, tmp_path):
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    assert tokenizer_type(tmp_path) == "samtok"
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, SAMTok) and loaded.config == CONFIG
    _assert_same_tokenizer(tok, loaded, sample)


def _split_official(tok: SAMTok, folder: Path) -> tuple[Path, Path]:
    """A Meta sam2.1_hiera_*.pt ({"model": SAM 2 keys}) + a tokenizer file without SAM 2 image parts."""
    state = OfficialLayout(tok.model).from_model_state(tok.model.state_dict())
    sam2 = {k[len(TOKENIZER_SAM2_PREFIX):]: v for k, v in state.items()
            if k.startswith(TOKENIZER_SAM2_PREFIX) and ".sam_mask_encoder." not in "." + k[len(TOKENIZER_SAM2_PREFIX):]}
    tokenizer = {k: v for k, v in state.items() if k.startswith("quantizer.") or "sam_mask_encoder." in k}
    # The tokenizer's fine-tuned mask decoder overrides SAM 2's: ship a different one in the .pt.
    decoder_key = "sam_mask_decoder.iou_token.weight"
    tokenizer[TOKENIZER_SAM2_PREFIX + decoder_key] = sam2[decoder_key]
    sam2 = {**sam2, decoder_key: torch.zeros_like(sam2[decoder_key])}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": sam2}, folder / "sam2.1_hiera_tiny.pt")
    torch.save(tokenizer, folder / "mask_tokenizer_16x2.pth")
    return folder / "mask_tokenizer_16x2.pth", folder / "sam2.1_hiera_tiny.pt"


def test_meta_sam2_file_supplies_the_missing_sam2_part(tok, sample, tmp_path):
    tokenizer_path, sam2_path = _split_official(tok, tmp_path)
    meta_keys = torch.load(sam2_path, weights_only=True)["model"]
    assert "image_encoder.trunk.blocks.0.norm1.weight" in meta_keys and "no_mem_embed" in meta_keys
    assert "sam_prompt_encoder.point_embeddings.3.weight" in meta_keys
    loaded = SAMTok.from_pretrained(tokenizer_path, config=CONFIG, sam2_checkpoint=sam2_path)
    _assert_same_tokenizer(tok, loaded, sample)
    with pytest.raises(CheckpointKeyError, match="missing") as info:
        SAMTok.from_pretrained(tokenizer_path, config=CONFIG)
    assert TOKENIZER_SAM2_PREFIX + "image_encoder.trunk.pos_embed" in info.value.missing


def test_official_vlm_folder_with_both_files(tok, sample, tmp_path):
    _split_official(tok, tmp_path / "Qwen3-VL-8B-SAMTok")
    (tmp_path / "Qwen3-VL-8B-SAMTok" / "config.json").write_text('{"model_type": "qwen3_vl"}')
    assert tokenizer_type(tmp_path / "Qwen3-VL-8B-SAMTok" / "mask_tokenizer_16x2.pth") == "samtok"
    _assert_same_tokenizer(tok, SAMTok.from_pretrained(tmp_path / "Qwen3-VL-8B-SAMTok", config=CONFIG), sample)


def test_meta_sam2_file_alone_is_refused_clearly(tok, tmp_path):
    _, sam2_path = _split_official(tok, tmp_path)
    with pytest.raises(CheckpointError, match="sam2_checkpoint"):
        SAMTok.from_pretrained(sam2_path, config=CONFIG)


def test_non_preset_official_file_needs_a_config(tok, tmp_path):
    tok.save_pretrained(tmp_path, layout="official")
    with pytest.raises(CheckpointError, match="config="):
        SAMTok.from_pretrained(tmp_path / "mask_tokenizer_16x2.pth")


@pytest.fixture()
def official_state(tok, tmp_path):
    tok.save_pretrained(tmp_path, layout="official")
    return tmp_path / "mask_tokenizer_16x2.pth", torch.load(tmp_path / "mask_tokenizer_16x2.pth", weights_only=True)


def test_missing_unexpected_and_misshaped_keys_are_all_listed(official_state):
    path, state = official_state
    gone = TOKENIZER_SAM2_PREFIX + "sam_mask_encoder.mask_tokens.weight"
    bent = "quantizer.codebooks.1.embed_ema"
    del state[gone]
    state["model.sam2_model.extra.weight"] = torch.zeros(3)
    state[bent] = torch.zeros(5, 5)
    torch.save(state, path)
    with pytest.raises(CheckpointKeyError) as info:
        SAMTok.from_pretrained(path, config=CONFIG)
    err = info.value
    assert err.missing == [gone] and err.unexpected == ["model.sam2_model.extra.weight"]
    assert err.mismatched == [(bent, (5, 5), (16, 32))]
    text = str(err)
    assert gone in text and "extra.weight" in text and bent in text and "(5, 5)" in text


def test_video_only_tensors_are_optional_but_shape_checked(official_state, tok, sample):
    path, state = official_state
    state = {k: v for k, v in state.items() if "memory_attention" not in k}
    torch.save(state, path)
    _assert_same_tokenizer(tok, SAMTok.from_pretrained(path, config=CONFIG), sample)
    state[TOKENIZER_SAM2_PREFIX + "maskmem_tpos_enc"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(CheckpointKeyError, match="maskmem_tpos_enc"):
        SAMTok.from_pretrained(path, config=CONFIG)


def test_truncated_checkpoint_gives_a_clear_error(official_state):
    path, _ = official_state
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted, truncated"):
        SAMTok.from_pretrained(path, config=CONFIG)


def test_foreign_and_unsafe_files_are_refused(tmp_path):
    garbage = tmp_path / "mask_tokenizer_garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="cannot read"):
        SAMTok.from_pretrained(garbage, config=CONFIG)
    unsafe = tmp_path / "mask_tokenizer_unsafe.pth"
    with unsafe.open("wb") as f:
        pickle.dump({"weights": Path("/etc/passwd")}, f)
    with pytest.raises(CheckpointError, match="weights-only"):
        SAMTok.from_pretrained(unsafe, config=CONFIG)
    not_tensors = tmp_path / "mask_tokenizer_list.pth"
    torch.save({"a": [1, 2, 3]}, not_tensors)
    with pytest.raises(CheckpointError, match="not a state dict of tensors"):
        SAMTok.from_pretrained(not_tensors, config=CONFIG)


def test_corrupted_safetensors_gives_a_clear_error(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="safetensors"):
        SAMTok.from_pretrained(tmp_path)


def test_masktok_state_mismatch_is_listed(tok, tmp_path):
    from safetensors.torch import load_file, save_file

    tok.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["mask_encoder.mask_tokens.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointKeyError, match="mask_encoder.mask_tokens.weight"):
        SAMTok.from_pretrained(tmp_path)


def test_unknown_paths_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "nothing")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="cannot tell"):
        load_tokenizer(tmp_path / "weights.bin")
    (tmp_path / "config.json").write_text('{"tokenizer_type": "mystery"}')
    with pytest.raises(ValueError, match="mystery"):
        load_tokenizer(tmp_path)
