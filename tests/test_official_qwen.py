"""Qwen3-VL-8B-SAMTok and Qwen2.5-VL-7B-SAMTok: tiny stand-ins in the official folder layout (HF
files + mask_tokenizer_256x2.pth + sam2.1_hiera_large.pt) load through the public call, chat with
masks in and out, fine-tune, export and chat again; CLI pairing with --tokenizer; bad folders get
one clear error each."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

pytest.importorskip("trl")

from masktok.cli import app  # noqa: E402
from masktok.mllm import MaskChat  # noqa: E402
from masktok.mllm.loading import find_mask_tokenizer  # noqa: E402
from mllm_fixtures import single_thread_torch  # noqa: E402,F401 (autouse)
from mllm_fixtures import box_mask, build_tiny_himtok, tiny_image  # noqa: E402
from official_fixtures import write_qwen_samtok  # noqa: E402
from official_roundtrip import samtok_round_trip  # noqa: E402


@pytest.mark.parametrize("family, model_class", [
    ("qwen3_vl", "Qwen3VLForConditionalGeneration"),
    ("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration")])
def test_official_qwen_samtok_folder_round_trip(tmp_path, family, model_class):
    folder = write_qwen_samtok(tmp_path / "official", family)
    assert find_mask_tokenizer(folder) == ("samtok", folder / "mask_tokenizer_256x2.pth")
    samtok_round_trip(folder, tmp_path, model_class)


def test_bad_pairings_and_folders_get_one_clear_error(tmp_path):
    folder = write_qwen_samtok(tmp_path / "official", "qwen2_5_vl")
    # A HiMTok tokenizer paired with a SAMTok-trained VLM.
    with pytest.raises(ValueError, match="himtok tokenizer .* holds the samtok mask words"):
        MaskChat.from_pretrained(folder, mask_tokenizer=build_tiny_himtok())
    # Two candidate tokenizers in one folder.
    two = tmp_path / "two"
    shutil.copytree(folder, two)
    shutil.copy2(two / "mask_tokenizer_256x2.pth", two / "mask_tokenizer_512x2.pth")
    with pytest.raises(ValueError, match="2 candidate mask tokenizers.*mask_tokenizer=PATH"):
        MaskChat.from_pretrained(two)
    # A non-preset Hiera without its config: the error says what to pass.
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare)
    (bare / "samtok_config.json").unlink()
    with pytest.raises(ValueError, match="matches no SAM 2.1 preset; pass config="):
        MaskChat.from_pretrained(bare)
    # A truncated weight file.
    cut = tmp_path / "cut"
    shutil.copytree(folder, cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="cut: a weight file cannot be read .truncated"):
        MaskChat.from_pretrained(cut)
    # No tokenizer at all: the error names the files looked for and the option.
    none = tmp_path / "none"
    shutil.copytree(folder, none, ignore=shutil.ignore_patterns("mask_tokenizer*", "sam2*", "samtok_config.json"))
    with pytest.raises(ValueError, match="no mask tokenizer found.*--tokenizer PATH"):
        MaskChat.from_pretrained(none)


def test_cli_chat_pairs_a_base_model_with_any_tokenizer(tmp_path):
    from masktok.masks import write_mask_png

    folder = write_qwen_samtok(tmp_path / "official", "qwen3_vl")
    base = tmp_path / "base"  # an SFT output made from a base model: no tokenizer of its own
    shutil.copytree(folder, base, ignore=shutil.ignore_patterns("mask_tokenizer*", "sam2*", "samtok_config.json"))
    tiny_image(48, 64).save(tmp_path / "photo.png")
    write_mask_png(tmp_path / "region.png", box_mask(48, 64, (10, 10, 20, 20)))
    common = ["--image", str(tmp_path / "photo.png"), "--prompt", "What is <mask>?", "--mask",
              str(tmp_path / "region.png"), "--out", str(tmp_path / "out"), "--max-new-tokens", "6"]
    missing = CliRunner().invoke(app, ["chat", str(base), *common])
    assert missing.exit_code != 0 and "Traceback" not in missing.output
    assert "--tokenizer" in missing.output
    # The official files, given by path: the tokenizer file with its sidecar config beside it.
    sidecar = tmp_path / "tokenizer"
    sidecar.mkdir()
    for name in ("mask_tokenizer_256x2.pth", "sam2.1_hiera_large.pt", "samtok_config.json"):
        shutil.copy2(folder / name, sidecar / name)
    paired = CliRunner().invoke(app, ["chat", str(base), "--tokenizer", str(sidecar), *common])
    assert paired.exit_code == 0, paired.output
    assert (tmp_path / "out" / "photo_masks.json").is_file()
    wrong = CliRunner().invoke(app, ["chat", str(base), "--tokenizer", str(tmp_path / "nope"), *common])
    assert wrong.exit_code != 0 and "Traceback" not in wrong.output and "nope" in wrong.output


def test_grpo_from_an_official_folder_exports_a_chat_folder(tmp_path):
    from masktok.words import SAMTOK_VOCABULARY
    from official_fixtures import chat_with_masks, run_few_grpo_steps

    folder = write_qwen_samtok(tmp_path / "official", "qwen3_vl")
    run = run_few_grpo_steps(folder, tmp_path, SAMTOK_VOCABULARY)
    assert run.global_step == 1 and run.mask_tokenizer_copied
    chat_with_masks(MaskChat.from_pretrained(tmp_path / "grpo" / "final"))
