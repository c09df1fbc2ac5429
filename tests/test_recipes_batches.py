"""SFT and GRPO at real batch shapes, for both Qwen families: several prompts per step, prompts of
different lengths, images of different sizes, two images in one sample (a zoom-in crop),
multi-turn conversations, gradient accumulation, LoRA and full fine-tuning; the official chat
templates go through TRL's assistant-only loss, a custom one through masktok's collator."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from masktok.train.vlm.config import (  # noqa: E402
    GRPORecipe,
    GRPOTrainSettings,
    LoraSettings,
    ModelSettings,
    SFTRecipe,
    TrainSettings,
)
from masktok.train.vlm.grpo import build_grpo_trainer  # noqa: E402
from masktok.train.vlm.sft import build_sft_trainer, export_final  # noqa: E402
from masktok.words import SAMTOK_VOCABULARY, format_mask_words  # noqa: E402
from mllm_fixtures import TinyVLMConfig, build_tiny_pair, tiny_image  # noqa: E402
from test_recipes_toy import one_thread, write_jsonl  # noqa: E402,F401

QUIET = {"disable_tqdm": True}
CASES = [("qwen2_5_vl", False), ("qwen3_vl", True)]  # (family, LoRA)


def official_template(family: str) -> str:
    from trl.chat_template_utils import qwen2_5_vl_chat_template, qwen3_vl_chat_template

    return qwen2_5_vl_chat_template if family == "qwen2_5_vl" else qwen3_vl_chat_template


def save_vlm(folder, family: str, *, official: bool):
    """A tiny VLM with the SAMTok words, with Qwen's official chat template or the fixtures' own."""
    from masktok.mllm import add_mask_vocabulary

    model, processor = build_tiny_pair(TinyVLMConfig(family=family))
    if official:
        processor.chat_template = processor.tokenizer.chat_template = official_template(family)
    add_mask_vocabulary(model, processor, SAMTOK_VOCABULARY)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def words(*codes: tuple[int, int]) -> str:
    return ", ".join(format_mask_words(c, SAMTOK_VOCABULARY) for c in codes)


def mixed_conversations(folder):
    """Four records: short and long prompts, images of four sizes, a scene + zoom-in crop pair,
    and a two-round conversation."""
    paths = {}
    for name, (h, w, seed) in {"a": (48, 64, 0), "b": (96, 80, 1), "c": (64, 64, 2), "crop": (32, 40, 3),
                               "d": (40, 100, 4)}.items():
        paths[name] = str(folder / f"{name}.png")
        tiny_image(h, w, seed=seed).save(paths[name])

    def user(text, images=0):
        return {"role": "user", "content": [{"type": "image"}] * images + [{"type": "text", "text": text}]}

    def assistant(text):
        return {"role": "assistant", "content": [{"type": "text", "text": text}]}

    rows = [
        {"id": "short", "images": [paths["a"]], "messages": [user("dog", 1), assistant(words((1, 2)))]},
        {"id": "long", "images": [paths["b"]], "messages": [
            user("Please segment the man riding a horse near the river, and a woman holds a red "
                 "umbrella.", 1), assistant(words((3, 4), (5, 6)))]},
        {"id": "zoom", "images": [paths["c"], paths["crop"]], "messages": [
            user("Describe the masked area comprehensively.", 2), assistant("It is a small cat.")]},
        {"id": "rounds", "images": [paths["d"]], "messages": [
            user("Please segment the dog in this image.", 1), assistant(words((7, 8))),
            user("And the umbrella?"), assistant("No target.")]},
    ]
    return write_jsonl(folder / "mixed.jsonl", rows), rows


def model_settings(path, lora: bool) -> ModelSettings:
    return ModelSettings(str(path), lora=LoraSettings(rank=4, alpha=8) if lora else None)


@pytest.mark.parametrize("family, lora", CASES)
def test_grpo_steps_with_several_prompts_of_different_lengths_and_images(tmp_path, one_thread, family, lora):
    """Two prompts per micro-batch, four per step (gradient accumulation 2): before the processor
    padded on the left, the rope index of the shorter prompts failed to broadcast."""
    model_dir = save_vlm(tmp_path / "model", family, official=False)
    data, _ = mixed_conversations(tmp_path)
    recipe = GRPORecipe(
        model=model_settings(model_dir, lora),
        train=GRPOTrainSettings(str(tmp_path / "out"), max_steps=2, batch_size=4, grad_accum=2,
                                learning_rate=1e-2, save_steps=0, precision="fp32", extra=QUIET),
        data=(str(data),), num_generations=2, max_completion_length=8)
    trainer = build_grpo_trainer(recipe)
    assert trainer.processing_class.tokenizer.padding_side == "left"
    assert any("lora_" in n for n, p in trainer.model.named_parameters() if p.requires_grad) is lora
    trainer.train()
    rows = [r for r in trainer.state.log_history if "loss" in r]
    assert trainer.state.global_step == 2 and len(rows) == 2
    # the policy's per-token log-probabilities of the padded batch were computed (entropy) and
    # every completion was scored
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["entropy"]) for r in rows)
    assert all(r["num_tokens"] > 0 and math.isfinite(r["reward"]) for r in rows)


@pytest.mark.parametrize("family, lora", CASES)
@pytest.mark.parametrize("official", [True, False])
def test_sft_steps_on_mixed_batches_with_either_collator(tmp_path, one_thread, family, lora, official):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from masktok.train.vlm.data import AssistantTurnCollator

    model_dir = save_vlm(tmp_path / "model", family, official=official)
    data, rows = mixed_conversations(tmp_path)
    recipe = SFTRecipe(model=model_settings(model_dir, lora),
                       train=TrainSettings(str(tmp_path / "out"), max_steps=2, batch_size=2, grad_accum=2,
                                           learning_rate=1e-3, logging_steps=1, save_steps=0,
                                           precision="fp32", extra=QUIET),
                       data=(str(data),), max_length=512)
    trainer = build_sft_trainer(recipe)
    expected = DataCollatorForVisionLanguageModeling if official else AssistantTurnCollator
    assert isinstance(trainer.data_collator, expected) and trainer.args.assistant_only_loss is official

    # the collator labels exactly the assistant turns (each with its end-of-turn token)
    examples = [trainer.train_dataset[i] for i in range(len(rows))]
    batch = trainer.data_collator(examples)
    tokenizer = trainer.processing_class.tokenizer
    labelled = [tokenizer.decode(row[row != -100]).replace("\n", "") for row in batch["labels"]]
    answers = [["".join(p["text"] for p in m["content"]) for m in r["messages"] if m["role"] == "assistant"]
               for r in rows]
    assert labelled == ["".join(a + "<|im_end|>" for a in turns) for turns in answers]
    assert batch["image_grid_thw"].shape[0] == 5  # four scenes and one crop

    trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert trainer.state.global_step == 2 and len(losses) == 2 and all(math.isfinite(v) for v in losses)
    result = export_final(trainer, trainer.processing_class, recipe.model)
    assert result.merged_lora is lora
