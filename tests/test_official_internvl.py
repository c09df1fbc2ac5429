"""InternVL2.5-HiMTok-8B: a tiny stand-in in the official remote-code layout loads on transformers'
native InternVL classes (no remote code), chats with masks in and out, fine-tunes, exports,
reloads; the converter's key map is exact and refuses what it cannot place."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("sentencepiece")
pytest.importorskip("trl")

from masktok.mllm import MaskChat  # noqa: E402
from masktok.mllm.internvl import ConversionError, convert_internvl_himtok, load_official_internvl  # noqa: E402
from masktok.mllm.internvl.keys import AttentionShape, split_internlm2_wqkv, split_vision_qkv  # noqa: E402
from masktok.mllm.loading import find_mask_tokenizer  # noqa: E402
from masktok.words import HIMTOK_VOCABULARY  # noqa: E402
from mllm_fixtures import single_thread_torch  # noqa: E402,F401 (autouse)
from mllm_fixtures import tiny_image  # noqa: E402
from official_fixtures import (chat_with_masks, run_few_sft_steps, tiny_official_himtok_config,  # noqa: E402
                               write_internvl_himtok)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    return write_internvl_himtok(tmp_path_factory.mktemp("InternVL2_5-HiMTok-8B"))


def test_fused_attention_splits_like_the_official_forward():
    """InternLM2's forward reads wqkv's output as (kv heads, group + 2, head_dim): q heads of
    group j first, then k, then v (modeling_internlm2.py); InternViT's qkv as three thirds."""
    shape = AttentionShape(num_heads=8, num_kv_heads=2, head_dim=4)
    hidden = 32
    weight = torch.randn((8 + 2 * 2) * 4, hidden)
    x = torch.randn(3, hidden)
    fused = (x @ weight.T).view(3, 2, 4 + 2, 4)  # official: (tokens, kv heads, group + 2, head_dim)
    q_ref = fused[:, :, :4].reshape(3, 8 * 4)
    k_ref, v_ref = fused[:, :, 4].reshape(3, 2 * 4), fused[:, :, 5].reshape(3, 2 * 4)
    q, k, v = split_internlm2_wqkv(weight, shape)
    torch.testing.assert_close(x @ q.T, q_ref)
    torch.testing.assert_close(x @ k.T, k_ref)
    torch.testing.assert_close(x @ v.T, v_ref)
    qkv = torch.randn(3 * 16, 16)
    q, k, v = split_vision_qkv(qkv)
    torch.testing.assert_close(torch.cat([q, k, v]), qkv)
    with pytest.raises(ValueError, match="rows"):
        split_internlm2_wqkv(weight[:-1], shape)


def test_official_folder_loads_natively_chats_fine_tunes_and_reloads(official, tmp_path):
    assert "auto_map" in json.loads((official / "config.json").read_text())  # remote code never runs
    assert find_mask_tokenizer(official) == ("himtok", official)
    chat = MaskChat.from_pretrained(official)
    assert type(chat.model).__name__ == "InternVLForConditionalGeneration"
    assert chat.settings.soft_decoding and chat.settings.soft_renormalize is None  # the official path:
    assert chat.mask_tokenizer.config.soft_renormalize is False  # the raw mixture, by the config
    assert chat.mask_tokenizer.config.mask_resize == "pil_bicubic"
    assert chat.mask_tokenizer.vocabulary.name == "himtok"
    result, _ = chat_with_masks(chat)
    assert result.masks[0].span.status == "ok"

    run = run_few_sft_steps(official, tmp_path, HIMTOK_VOCABULARY)
    assert run.global_step == 2 and run.mask_tokenizer_copied
    final = tmp_path / "run" / "final"
    assert json.loads((tmp_path / "run" / "result.json").read_text())["mask_tokenizer_copied"] is True
    manifest = json.loads((final / "masktok_chat.json").read_text())
    assert manifest["settings"] == {"soft_decoding": True}
    assert json.loads((final / "config.json").read_text())["model_type"] == "internvl"
    again = MaskChat.from_pretrained(final)  # no extra arguments
    assert again.settings.soft_decoding and again.mask_tokenizer.config.soft_renormalize is False
    chat_with_masks(again)
    from masktok.tokenizers import load_tokenizer

    assert load_tokenizer(final).vocabulary.name == "himtok"  # evaluation opens final/ as a tokenizer path


def test_converter_writes_a_native_folder_with_the_official_ids(official, tmp_path):
    import sentencepiece
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from masktok.cli import app

    target = tmp_path / "converted"
    result = CliRunner().invoke(app, ["convert", "internvl-himtok", str(official), str(target)])
    assert result.exit_code == 0, result.output
    model = AutoModelForImageTextToText.from_pretrained(target)  # no trust_remote_code
    processor = AutoProcessor.from_pretrained(target)
    assert type(model).__name__ == "InternVLForConditionalGeneration"
    tokenizer = processor.tokenizer
    added = json.loads((official / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    official_ids = {v["content"]: int(k) for k, v in added.items()}
    for token in ("<IMG_CONTEXT>", "<|mt_start|>", "<|mt_end|>", "<|mt_0|>", "<|mt_1023|>"):
        assert tokenizer.convert_tokens_to_ids(token) == official_ids[token]
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(official / "tokenizer.model"))
    text = "Segment the red dog near the river."
    assert tokenizer(text)["input_ids"] == [pieces.bos_id()] + pieces.encode(text)
    words = "<|mt_start|><|mt_5|><|mt_17|><|mt_end|>"
    assert tokenizer.decode(tokenizer(words, add_special_tokens=False)["input_ids"],
                            skip_special_tokens=True) == words  # non-special: they survive decoding
    # Same weights as the in-memory conversion, and the prompt of the official template.
    loaded = load_official_internvl(official, himtok_config=tiny_official_himtok_config())
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key].float(), value.float(), rtol=0, atol=0)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Segment <ref>dog</ref>."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<s><|im_start|>system\n你是书生·万象")
    assert prompt.endswith("<|im_start|>user\n<IMG_CONTEXT>\nSegment <ref>dog</ref>.<|im_end|>\n<|im_start|>assistant\n")
    inputs = processor(text=[prompt], images=[tiny_image()], return_tensors="pt", add_special_tokens=False)
    ids = inputs["input_ids"][0].tolist()
    assert ids[0] == pieces.bos_id() and ids.count(pieces.bos_id()) == 1
    start, end = ids.index(official_ids["<img>"]), ids.index(official_ids["</img>"])
    assert set(ids[start + 1:end]) == {official_ids["<IMG_CONTEXT>"]}
    assert end - start - 1 == inputs["pixel_values"].shape[0]  # one context token per 28² tile here
    image = tiny_image()
    chat = CliRunner().invoke(app, ["chat", str(target), "--image", str(_save(image, tmp_path)),
                                    "--prompt", "Segment <ref>dog</ref>.", "--out", str(tmp_path / "out"),
                                    "--max-new-tokens", "6"])
    assert chat.exit_code == 0, chat.output


def _save(image, folder):
    path = folder / "photo.png"
    image.save(path)
    return path


def test_truncated_shard_and_unplaced_tensors_are_refused(official, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(official, broken)
    shard = broken / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(ConversionError, match="model-00002-of-00002.safetensors.*truncated"):
        load_official_internvl(broken)

    extra = tmp_path / "extra"
    shutil.copytree(official, extra)
    from safetensors.torch import load_file, save_file

    shard = extra / "model-00001-of-00002.safetensors"
    tensors = load_file(str(shard))
    tensors["vision_model.encoder.layers.0.attn.mystery.weight"] = torch.zeros(2)
    save_file(tensors, str(shard))
    index = json.loads((extra / "model.safetensors.index.json").read_text())
    index["weight_map"]["vision_model.encoder.layers.0.attn.mystery.weight"] = shard.name
    (extra / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ConversionError, match="no place.*attn.mystery.weight"):
        load_official_internvl(extra)

    missing = tmp_path / "missing"
    shutil.copytree(official, missing)
    (missing / "model-00001-of-00002.safetensors").unlink()
    with pytest.raises(ConversionError, match="missing.*model-00001-of-00002"):
        load_official_internvl(missing)
    runner = CliRunner().invoke(__import__("masktok.cli", fromlist=["app"]).app,
                                ["convert", "internvl-himtok", str(missing), str(tmp_path / "out")])
    assert runner.exit_code != 0 and "Traceback" not in runner.output and "model-00001" in runner.output


def test_two_candidate_tokenizers_are_refused(official, tmp_path):
    both = tmp_path / "both"
    shutil.copytree(official, both)
    from masktok.tokenizers.himtok import HiMTok

    HiMTok.from_config(tiny_official_himtok_config()).save_pretrained(both, layout="official")
    with pytest.raises(ValueError, match="2 candidate mask tokenizers: himtok.pth .*--tokenizer"):
        MaskChat.from_pretrained(both)


def test_soft_decoding_uses_the_raw_mixture(official):
    """The official path decodes softmax(2·logits) over the code ids without renormalising; the
    chat's soft decoding of a span equals decode_soft on those probabilities."""
    chat = MaskChat.from_pretrained(official)
    result, _ = chat_with_masks(chat)
    span = result.masks[0].span
    conversation = chat.start(tiny_image())
    chat.add_user_turn(conversation, "Segment it.")
    logits = torch.randn(span.end + 2, chat.model.get_output_embeddings().weight.shape[0])
    soft = chat.decode_spans_soft(conversation, [span], chat.settings, logits)[0]
    probs = torch.softmax(2 * logits[span.start + 1: span.start + 1 + len(span.codes)][:, chat.code_token_ids()], -1)
    expected = chat.mask_tokenizer.decode_soft(probs[None], size=conversation.size, renormalize=False)[0]
    np.testing.assert_array_equal(soft, expected.numpy())


def test_grpo_from_the_official_folder_exports_a_chat_folder(official, tmp_path):
    from official_fixtures import run_few_grpo_steps

    run = run_few_grpo_steps(official, tmp_path, HIMTOK_VOCABULARY)
    assert run.global_step == 1 and run.mask_tokenizer_copied
    again = MaskChat.from_pretrained(tmp_path / "grpo" / "final")
    assert again.settings.soft_decoding
    chat_with_masks(again)
