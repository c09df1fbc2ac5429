"""Vocabulary surgery on tiny random Qwen2.5-VL / Qwen3-VL models: tokens, rows, save/load, CLI."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from masktok.mllm.vocabulary import add_mask_vocabulary, mask_token_ids, mask_token_order
from masktok.words import himtok_vocabulary, samtok_vocabulary
from mllm_fixtures import single_thread_torch  # noqa: F401 (autouse)
from mllm_fixtures import FAMILIES, TinyVLMConfig, build_tiny_pair

WORDS = "<|mt_start|><|mt_0011|><|mt_0347|><|mt_end|>"


@pytest.mark.parametrize("family,tied", [(FAMILIES[0], False), (FAMILIES[1], True),
                                         (FAMILIES[0], True)])
def test_samtok_tokens_rows_and_heads(family, tied):
    model, processor = build_tiny_pair(TinyVLMConfig(family=family, tie_word_embeddings=tied))
    tokenizer = processor.tokenizer
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    vocab = samtok_vocabulary()
    report = add_mask_vocabulary(model, processor, vocab, seed=3)

    assert report.num_added == 514 and report.tied == tied and report.init == "samtok"
    ids = report.token_ids
    order = mask_token_order(vocab)
    assert [ids[t] for t in order] == list(range(len(old_in), len(old_in) + 514))
    assert order[0] == "<|mt_start|>" and order[-1] == "<|mt_end|>" and order[1] == "<|mt_0000|>"
    assert not set(order) & set(tokenizer.all_special_tokens)
    encoded = tokenizer("a " + WORDS + " b", add_special_tokens=False)["input_ids"]
    assert [ids["<|mt_start|>"], ids["<|mt_0011|>"], ids["<|mt_0347|>"], ids["<|mt_end|>"]] == \
        encoded[2:6]
    assert tokenizer.decode(encoded, skip_special_tokens=True) == "a " + WORDS + " b"

    new_in = model.get_input_embeddings().weight.detach()
    assert new_in.shape[0] == report.new_num_embeddings == len(old_in) + 514
    torch.testing.assert_close(new_in[:len(old_in)], old_in)  # old rows untouched
    added = new_in[len(old_in):]
    mean, std = old_in.mean(0), old_in.std(0)
    # mean + 0.02·std·N(0,1): centred on the old mean, spread 0.02·std per dimension.
    assert (added.mean(0) - mean).abs().max() < 0.01 * std.max()
    ratio = added.std(0) / std
    assert ratio.min() > 0.014 and ratio.max() < 0.026
    assert len(torch.unique(added, dim=0)) == 514
    head = model.get_output_embeddings().weight.detach()
    if tied:
        assert head.data_ptr() == new_in.data_ptr()
    else:
        torch.testing.assert_close(head[:len(old_out)], old_out)
        out_ratio = head[len(old_out):].std(0) / old_out.std(0)
        assert out_ratio.min() > 0.014 and out_ratio.max() < 0.026
        assert not torch.equal(head[len(old_out):], added)
    assert model.config.get_text_config().vocab_size == new_in.shape[0]


def test_himtok_mean_init_reuses_spare_rows_and_is_idempotent():
    model, processor = build_tiny_pair(TinyVLMConfig(family="qwen3_vl"))
    num_tokens = len(processor.tokenizer)
    model.resize_token_embeddings(num_tokens + 1100, mean_resizing=False)  # padded rows, like Qwen
    before = model.get_input_embeddings().weight.detach().clone()
    vocab = himtok_vocabulary()
    report = add_mask_vocabulary(model, processor, vocab, init="mean")
    assert report.num_added == 1026 and len(vocab.tokens()) == 1026
    assert report.new_num_embeddings == report.old_num_embeddings == num_tokens + 1100
    weight = model.get_input_embeddings().weight.detach()
    expected = before[:num_tokens].mean(0)
    added = weight[num_tokens:num_tokens + 1026]
    torch.testing.assert_close(added, expected.expand_as(added))
    torch.testing.assert_close(weight[num_tokens + 1026:], before[num_tokens + 1026:])
    again = add_mask_vocabulary(model, processor, vocab)
    assert again.num_added == 0 and again.init == "none"
    torch.testing.assert_close(model.get_input_embeddings().weight.detach(), weight)
    assert mask_token_ids(processor, vocab) == dict(report.token_ids)


def test_bad_vocabulary_states_are_reported():
    model, processor = build_tiny_pair()
    vocab = samtok_vocabulary()
    with pytest.raises(ValueError, match="missing"):
        mask_token_ids(processor, vocab)
    with pytest.raises(ValueError, match="init"):
        add_mask_vocabulary(model, processor, vocab, init="zeros")
    processor.tokenizer.add_tokens(["<|mt_0000|>", "<|mt_0001|>"])
    with pytest.raises(ValueError, match="2 of the 514 samtok mask tokens are already present"):
        add_mask_vocabulary(model, processor, vocab)
    with pytest.raises(ValueError, match="tokenizer_or_processor"):
        add_mask_vocabulary(model, object(), vocab)

    model, processor = build_tiny_pair()
    processor.tokenizer.add_tokens(mask_token_order(vocab), special_tokens=True)
    with pytest.raises(ValueError, match="special tokens"):
        mask_token_ids(processor, vocab)


def test_save_load_round_trip(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model, processor = build_tiny_pair(TinyVLMConfig(family="qwen2_5_vl"))
    vocab = samtok_vocabulary()
    report = add_mask_vocabulary(model, processor, vocab)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    loaded_processor = AutoProcessor.from_pretrained(tmp_path)
    assert mask_token_ids(loaded_processor, vocab) == dict(report.token_ids)
    torch.testing.assert_close(loaded.get_input_embeddings().weight,
                               model.get_input_embeddings().weight)
    torch.testing.assert_close(loaded.get_output_embeddings().weight,
                               model.get_output_embeddings().weight)
    ids = loaded_processor.tokenizer(WORDS, add_special_tokens=False)["input_ids"]
    assert loaded_processor.tokenizer.decode(ids, skip_special_tokens=True) == WORDS


def test_cli_add_vocab(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from masktok.cli import app

    model, processor = build_tiny_pair(TinyVLMConfig(family="qwen3_vl"))
    base, out = tmp_path / "base", tmp_path / "out"
    model.save_pretrained(base)
    processor.save_pretrained(base)
    result = CliRunner().invoke(app, ["vlm", "add-vocab", str(base), str(out), "--vocab", "himtok"])
    assert result.exit_code == 0, result.output
    assert "added 1026 himtok tokens" in result.output
    extended = AutoModelForImageTextToText.from_pretrained(out)
    ids = mask_token_ids(AutoProcessor.from_pretrained(out), himtok_vocabulary())
    assert extended.get_input_embeddings().weight.shape[0] == max(ids.values()) + 1
    bad = CliRunner().invoke(app, ["vlm", "add-vocab", str(base), str(out), "--vocab", "other"])
    assert bad.exit_code != 0
