"""The SFT recipe on tiny random VLMs: it overfits RES samples until greedy generation gives their
exact mask words; LoRA trains the adapter, the new words and the projector, never the vision
tower; the exported folder loads back; the CLI runs it."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("peft")

from masktok.mllm.loading import load_vlm  # noqa: E402
from masktok.mllm.vocabulary import mask_token_ids  # noqa: E402
from masktok.train.vlm.config import (  # noqa: E402
    LoraSettings,
    ModelSettings,
    SFTRecipe,
    TrainSettings,
)
from masktok.train.vlm.sft import build_sft_trainer, export_final, run_sft, set_trainable  # noqa: E402
from masktok.words import SAMTOK_VOCABULARY, parse_mask_words  # noqa: E402
from mllm_fixtures import TinyVLMConfig, build_tiny_pair  # noqa: E402
from test_recipes_toy import (  # noqa: E402,F401
    answer_of,
    generate_answers,
    one_thread,
    res_toy,
    save_tiny_vlm,
)

QUIET = {"disable_tqdm": True}


def train_settings(folder, **overrides) -> TrainSettings:
    values = dict(max_steps=3, learning_rate=1e-2, batch_size=1, warmup_ratio=0.0,
                  lr_scheduler="constant", logging_steps=1, save_steps=0, precision="fp32", extra=QUIET)
    values.update(overrides)
    return TrainSettings(str(folder), **values)


def codes(text: str) -> list[tuple[int, ...]]:
    return [span.codes for span in parse_mask_words(text, SAMTOK_VOCABULARY, lenient=True)]


@pytest.mark.slow
def test_sft_overfits_res_until_greedy_generation_gives_the_exact_words(tmp_path, one_thread):
    model_dir = save_tiny_vlm(tmp_path / "model")
    data, rows = res_toy(tmp_path / "data", num_samples=4)
    before_model, before_processor = load_vlm(model_dir)
    before = [generate_answers(before_model, before_processor, r, max_new_tokens=6)[0] for r in rows]
    assert sum(codes(b) == codes(answer_of(r)) for b, r in zip(before, rows)) == 0

    recipe = SFTRecipe(model=ModelSettings(str(model_dir)),
                       train=train_settings(tmp_path / "out", max_steps=150, learning_rate=3e-3,
                                            batch_size=4, logging_steps=1),
                       data=(str(data),), max_length=256)
    result = run_sft(recipe)
    losses = [row["loss"] for row in result.log_history if "loss" in row]
    assert result.global_step == 150 and losses[-1] < 0.05 * losses[0]

    model, processor = load_vlm(result.final_dir)  # the exported folder, through the real loader
    assert model.get_input_embeddings().weight.shape == before_model.get_input_embeddings().weight.shape
    for row in rows:
        greedy = generate_answers(model, processor, row, max_new_tokens=6)[0]
        assert greedy == answer_of(row)  # exact mask words, then the end of the turn
        assert len(codes(greedy)) == 1
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["final_dir"] == result.final_dir and saved["merged_lora"] is False


def test_full_finetuning_freezes_the_vision_tower_but_not_the_projector():
    model, _ = build_tiny_pair(TinyVLMConfig(family="qwen3_vl"))
    set_trainable(model, ModelSettings("unused"))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    visual = [name for name, _ in model.named_parameters() if ".visual." in name]
    projector = [n for n in visual if ".merger." in n or ".deepstack_merger_list." in n]
    assert projector and set(projector) <= trainable
    assert not (set(visual) - set(projector)) & trainable
    assert "lm_head.weight" in trainable
    set_trainable(model, ModelSettings("unused", train_projector=False))
    assert not any(p.requires_grad for n, p in model.named_parameters() if ".visual." in n)


@pytest.mark.parametrize("family, tied, mode", [("qwen2_5_vl", False, "rows"),
                                                ("qwen3_vl", True, "full")])
def test_lora_trains_adapter_new_words_and_projector_only(tmp_path, one_thread, family, tied, mode):
    model_dir = save_tiny_vlm(tmp_path / "model", TinyVLMConfig(family=family, tie_word_embeddings=tied))
    data, _ = res_toy(tmp_path / "data", num_samples=2)
    settings = ModelSettings(str(model_dir), lora=LoraSettings(rank=4, alpha=8, new_tokens=mode))
    recipe = SFTRecipe(model=settings, train=train_settings(tmp_path / "out"), data=(str(data),))
    trainer = build_sft_trainer(recipe)
    base = trainer.model.get_base_model()
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in trainable)
    assert not any(".visual." in n and "lora" in n for n in trainable)
    assert all("merger" in n for n in trainable if ".visual." in n)
    ids = sorted(mask_token_ids(trainer.processing_class, SAMTOK_VOCABULARY).values())
    old = torch.arange(ids[0])  # the base vocabulary's rows
    embed0 = base.get_input_embeddings().weight.detach().clone()
    head0 = base.get_output_embeddings().weight.detach().clone()
    tower0 = {n: p.detach().clone() for n, p in base.model.visual.named_parameters() if "merger" not in n}

    trainer.train()
    embed = base.get_input_embeddings().weight.detach()
    head = base.get_output_embeddings().weight.detach()
    assert not torch.equal(embed[ids], embed0[ids]) and not torch.equal(head[ids], head0[ids])
    if mode == "rows":  # only the new rows of the input embedding move
        assert torch.equal(embed[old], embed0[old])
    if tied:  # the trained head stays tied to the trained embedding
        assert torch.equal(embed, head)
    for name, p in base.model.visual.named_parameters():
        if name in tower0:
            assert torch.equal(p, tower0[name]), name

    result = export_final(trainer, trainer.processing_class, settings)
    assert result.merged_lora
    merged, _ = load_vlm(result.final_dir)
    assert torch.allclose(merged.get_input_embeddings().weight[ids], embed[ids])
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_lora_rows_mode_refuses_a_tied_head(tmp_path):
    model_dir = save_tiny_vlm(tmp_path / "model", TinyVLMConfig(tie_word_embeddings=True))
    data, _ = res_toy(tmp_path / "data", num_samples=1)
    settings = ModelSettings(str(model_dir), lora=LoraSettings(new_tokens="rows"))
    with pytest.raises(ValueError, match="untied"):
        build_sft_trainer(SFTRecipe(model=settings, train=train_settings(tmp_path / "o"),
                                    data=(str(data),)))


def test_vocabulary_is_added_on_request_and_detected_otherwise(tmp_path):
    from masktok.train.vlm.sft import prepare_model

    model, processor = build_tiny_pair(TinyVLMConfig())
    with pytest.raises(ValueError, match="vocabular"):
        prepare_model(ModelSettings("unused"), model, processor)
    _, _, vocab, ids, _ = prepare_model(ModelSettings("unused", vocabulary="samtok"), model, processor)
    assert vocab.name == "samtok" and len(ids) == 514
    _, _, again, _, _ = prepare_model(ModelSettings("unused"), model, processor)
    assert again.name == "samtok"


def test_copy_mask_tokenizer_of_a_chat_folder(tmp_path):
    from masktok.train.vlm.sft import copy_mask_tokenizer

    source = tmp_path / "chat"
    (source / "mask_tokenizer").mkdir(parents=True)
    (source / "mask_tokenizer" / "config.json").write_text("{}")
    (source / "masktok_chat.json").write_text(json.dumps({"mask_tokenizer": "mask_tokenizer"}))
    assert copy_mask_tokenizer(source, tmp_path / "final")
    assert (tmp_path / "final" / "mask_tokenizer" / "config.json").is_file()
    assert (tmp_path / "final" / "masktok_chat.json").is_file()
    assert not copy_mask_tokenizer(tmp_path / "final" / "mask_tokenizer", tmp_path / "other")
    (source / "masktok_chat.json").write_text(json.dumps({"mask_tokenizer": "gone"}))
    with pytest.raises(ValueError, match="gone"):
        copy_mask_tokenizer(source, tmp_path / "again")


def test_cli_train_sft_runs_and_rejects_bad_options(tmp_path, one_thread):
    from typer.testing import CliRunner

    from masktok.cli import app

    model_dir = save_tiny_vlm(tmp_path / "model")
    data, _ = res_toy(tmp_path / "data", num_samples=2)
    out = tmp_path / "out"
    args = ["train", "sft", "--model", str(model_dir), "--data", str(data), "--output-dir", str(out),
            "--max-steps", "2", "--batch-size", "2", "--precision", "fp32", "--save-steps", "0",
            "--logging-steps", "1", "--lr", "1e-3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 steps" in result.output and "loss" in result.output
    assert (out / "final" / "config.json").is_file() and (out / "final" / "tokenizer.json").is_file()
    bad = CliRunner().invoke(app, args[:-2] + ["--loss-on", "prompt"])
    assert bad.exit_code == 2 and "loss_on" in bad.output
