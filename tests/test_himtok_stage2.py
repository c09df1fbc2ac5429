"""HiMTok's stage 2 on a tiny random Qwen2.5-VL and a tiny HiMTok, with the real masks and images
of ``tests/data/refseg_examples`` (the official stage-2 example layout: placeholder codes in
the answers, one mask PNG per sample): the collator finds every span and frames its mask as the
tokenizer does, the frozen encoder writes the real codes, the mask loss is finite and its
gradient reaches the code logits and (only when unfrozen) the de-tokenizer, training raises the
decoded-mask IoU on the training samples, and the export is a chat folder that resumes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("peft")

from masktok.masks import read_mask_png  # noqa: E402
from masktok.train.vlm.config import (  # noqa: E402
    HiMTokStage2Recipe,
    HiMTokStage2TrainSettings,
    LoraSettings,
    ModelSettings,
)
from masktok.train.vlm.data import ConversationFormatError  # noqa: E402
from masktok.train.vlm.himtok_stage2 import build_himtok_stage2_trainer, run_himtok_stage2  # noqa: E402
from masktok.words import HIMTOK_VOCABULARY  # noqa: E402
from mllm_fixtures import TinyVLMConfig, build_tiny_himtok  # noqa: E402
from test_recipes_toy import one_thread, save_tiny_vlm, write_jsonl  # noqa: E402,F401

QUIET = {"disable_tqdm": True}
CODES = 8  # the tiny HiMTok's max_codes


def refseg_rows(root: Path, codes: int = CODES, placeholder: str = "<|mt_0|>") -> list[dict]:
    """The official example records as SFT JSONL rows: placeholder codes, the mask as a PNG."""
    rows = []
    for line in (root / "anns" / "seg_data_with_mask.jsonl").read_text().splitlines():
        record = json.loads(line)
        question = record["conversations"][0]["value"].replace("<image>\n", "")
        span = "<|mt_start|>" + placeholder * codes + "<|mt_end|>"
        rows.append({"id": record["image"], "images": [str(root / record["image"])],
                     "messages": [{"role": "user", "content": question},
                                  {"role": "assistant", "content": f"The mask appears at {span}."}],
                     "masks": [{"image": 0, "png": str(root / record["mask"])}]})
    return rows


@pytest.fixture(scope="module")
def refseg(test_data, tmp_path_factory):
    """(VLM folder with the HiMTok words, JSONL, the four masks)."""
    root = test_data / "refseg_examples"
    folder = tmp_path_factory.mktemp("stage2")
    model_dir = save_tiny_vlm(folder / "model", TinyVLMConfig(), vocab=HIMTOK_VOCABULARY)
    data = write_jsonl(folder / "refseg.jsonl", refseg_rows(root))
    masks = [read_mask_png(root / "masks" / f"{i}.png", threshold=127) for i in range(4)]
    return model_dir, data, masks


@pytest.fixture(scope="module")
def fitted_state(refseg):
    """A tiny HiMTok fitted (stage 1, full level) to the four masks: its state dict."""
    from masktok.tokenizers.himtok.loss import HierarchicalMaskLoss

    *_, masks = refseg
    tokenizer = build_tiny_himtok()
    frames = torch.cat([tokenizer.prepare_masks(m[None]) for m in masks])
    model = tokenizer.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    lengths = torch.full((len(masks), 1), CODES)
    for _ in range(120):
        out = model.forward_train(frames, lengths)
        loss = HierarchicalMaskLoss(CODES)(out["logits"], frames, lengths)["loss"] + out["quant_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_num_threads(before)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def tokenizer_from(state=None):
    tokenizer = build_tiny_himtok()
    if state is not None:
        tokenizer.model.load_state_dict(state)
    return tokenizer


def recipe(refseg, folder, **overrides) -> HiMTokStage2Recipe:
    model_dir, data, _ = refseg
    train = dict(max_steps=2, batch_size=4, learning_rate=3e-3, warmup_ratio=0.0, lr_scheduler="constant",
                 logging_steps=1, save_steps=0, precision="fp32", extra=QUIET)
    train.update(overrides.pop("train", {}))
    model = overrides.pop("model", ModelSettings(str(model_dir)))
    return HiMTokStage2Recipe(model=model, train=HiMTokStage2TrainSettings(str(folder), **train),
                              data=(str(data),), max_length=512, **overrides)


def first_batch(trainer) -> dict:
    examples = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    return trainer.data_collator(examples)


def test_spans_are_framed_like_the_tokenizer_and_get_the_encoders_codes(refseg, tmp_path, one_thread):
    *_, masks = refseg
    tokenizer = tokenizer_from()
    trainer = build_himtok_stage2_trainer(recipe(refseg, tmp_path), mask_tokenizer=tokenizer)
    batch = first_batch(trainer)
    spans = batch["mask_spans"]
    assert spans[:, 0].tolist() == [0, 1, 2, 3] and spans[:, 2].tolist() == [CODES] * 4
    start = trainer.processing_class.tokenizer.convert_tokens_to_ids("<|mt_start|>")
    assert (batch["input_ids"][spans[:, 0], spans[:, 1] - 1] == start).all()
    # the ground truth in the tokenizer's frame, exactly as the tokenizer frames a mask
    expected = torch.cat([tokenizer.prepare_masks(m[None]).float() for m in masks])
    assert torch.allclose(batch["mask_frames"], expected, atol=1e-6)

    inputs = trainer._prepare_inputs(batch)
    kept = trainer.mask_batch(inputs)
    assert len(kept) == 4 and "mask_frames" not in inputs
    codes = torch.cat([tokenizer.encode(None, m[None]) for m in masks])
    columns = spans[:, 1:2] + torch.arange(CODES)
    written = inputs["input_ids"][spans[:, :1], columns]
    assert torch.equal(written, trainer.code_token_ids[codes])
    assert torch.equal(inputs["labels"][spans[:, :1], columns], written)  # the answer's codes are labelled


@pytest.mark.parametrize("train_decoder", [True, False])
def test_mask_loss_is_finite_and_its_gradient_reaches_the_code_logits(refseg, tmp_path, one_thread,
                                                                      train_decoder):
    trainer = build_himtok_stage2_trainer(recipe(refseg, tmp_path, train_decoder=train_decoder),
                                          mask_tokenizer=tokenizer_from())
    model = trainer.model
    inputs = trainer._prepare_inputs(first_batch(trainer))
    total = trainer.compute_loss(model, inputs)
    result = trainer.last_mask_loss
    assert math.isfinite(total.item()) and math.isfinite(result.loss.item()) and result.num_masks == 4
    result.code_logits.retain_grad()
    model.zero_grad()
    result.loss.backward()  # the mask loss alone
    grad = result.code_logits.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    head = trainer.language_model().get_output_embeddings().weight.grad
    ids = trainer.code_token_ids
    assert head[ids].abs().sum() > 0  # through the logits into the LM head's code rows
    mask_model = trainer.mask_model
    decoder = [p.grad for p in list(mask_model.decoder.parameters()) + list(mask_model.pixel_decoder.parameters())]
    if train_decoder:
        assert all(g is not None for g in decoder) and sum(float(g.abs().sum()) for g in decoder) > 0
    else:
        assert all(g is None for g in decoder)
    frozen = list(mask_model.encoder.parameters()) + list(mask_model.quantize.parameters()) + [mask_model.latent_tokens]
    assert all(not p.requires_grad and p.grad is None for p in frozen)


def test_stage2_raises_the_decoded_mask_iou_on_the_training_masks(refseg, fitted_state, tmp_path, one_thread):
    """With a tokenizer fitted to the masks (stage 1), a few dozen steps teach the random LMM
    code distributions whose de-tokenized masks match the ground truth far better."""
    trainer = build_himtok_stage2_trainer(
        recipe(refseg, tmp_path, train={"max_steps": 30, "logging_steps": 10}, train_decoder=False),
        mask_tokenizer=tokenizer_from(fitted_state))
    before = trainer.evaluate(trainer.train_dataset)["eval_mask_iou"]
    trainer.train()
    after = trainer.evaluate(trainer.train_dataset)["eval_mask_iou"]
    assert after > before + 0.2 and after > 0.35, (before, after)
    losses = [r["mask_loss"] for r in trainer.state.log_history if "mask_loss" in r and "eval_mask_loss" not in r]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_export_is_a_chat_folder_with_the_trained_tokenizer_and_resumes(refseg, tmp_path, one_thread):
    from masktok.mllm.loading import load_chat_components

    initial = tokenizer_from()
    encoder0 = {k: v.clone() for k, v in initial.model.encoder.state_dict().items()}
    decoder0 = {k: v.clone() for k, v in initial.model.decoder.state_dict().items()}
    out = tmp_path / "out"
    first = run_himtok_stage2(recipe(refseg, out, train={"save_steps": 1}), mask_tokenizer=initial)
    assert first.global_step == 2 and (out / "checkpoint-2" / "mask_tokenizer" / "model.safetensors").is_file()
    model, processor, tokenizer = load_chat_components(first.final_dir)
    assert not any(n.startswith("mask_decoder.") for n, _ in model.named_parameters())
    trained = tokenizer.model
    assert all(torch.equal(trained.encoder.state_dict()[k], v) for k, v in encoder0.items())
    assert any(not torch.equal(trained.decoder.state_dict()[k], v) for k, v in decoder0.items())

    # resume: one more step from checkpoint-2, the de-tokenizer read back from it
    again = run_himtok_stage2(recipe(refseg, out, train={"max_steps": 3, "save_steps": 1}),
                              mask_tokenizer=tokenizer_from(), resume=True)
    assert again.global_step == 3
    steps = [r["step"] for r in again.log_history if "mask_loss" in r]
    assert steps == [1, 2, 3]  # steps 1-2 come from the checkpoint's history


def test_lora_leaves_the_detokenizer_out_of_the_adapter_and_trains_it(refseg, tmp_path):
    model_dir, *_ = refseg
    settings = ModelSettings(str(model_dir), lora=LoraSettings(rank=4, alpha=8))
    trainer = build_himtok_stage2_trainer(recipe(refseg, tmp_path, model=settings), mask_tokenizer=tokenizer_from())
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    detok = [n for n in trainable if "mask_decoder." in n]
    assert any(".mask_decoder.decoder." in n for n in detok) and any(".pixel_decoder." in n for n in detok)
    assert not any("lora_" in n or ".encoder." in n or ".quantize." in n for n in detok)
    assert any("lora_A" in n for n in trainable)


def test_bad_stage2_data_is_refused_naming_the_record(refseg, tmp_path, test_data):
    root = test_data / "refseg_examples"
    rows = refseg_rows(root)
    rows[1]["masks"] = rows[1]["masks"] * 2
    bad = write_jsonl(tmp_path / "two_masks.jsonl", rows)
    tokenizer = tokenizer_from()
    with pytest.raises(ConversationFormatError, match="images/1.jpg: 2 masks for 1 mask spans"):
        build_himtok_stage2_trainer(_with_data(recipe(refseg, tmp_path), bad), mask_tokenizer=tokenizer)
    rows = refseg_rows(root, codes=CODES + 1)  # longer than the tokenizer's 8 codes
    long = write_jsonl(tmp_path / "long.jsonl", rows)
    with pytest.raises(ConversationFormatError, match="images/0.jpg"):
        build_himtok_stage2_trainer(_with_data(recipe(refseg, tmp_path), long), mask_tokenizer=tokenizer)
    rows = refseg_rows(root)
    for row in rows:
        del row["masks"]
    none = write_jsonl(tmp_path / "none.jsonl", rows)
    with pytest.raises(ValueError, match="no record lists ground-truth 'masks'"):
        build_himtok_stage2_trainer(_with_data(recipe(refseg, tmp_path), none), mask_tokenizer=tokenizer)
    # a max_length that cuts an answer's span (after every image) is reported when the batch is made
    trainer = build_himtok_stage2_trainer(recipe(refseg, tmp_path), mask_tokenizer=tokenizer)
    cut = int(first_batch(trainer)["mask_spans"][:, 1].max()) + 2
    trainer = build_himtok_stage2_trainer(_with_data(recipe(refseg, tmp_path), refseg[1], max_length=cut),
                                          mask_tokenizer=tokenizer)
    with pytest.raises(ConversationFormatError, match="max_length"):
        first_batch(trainer)


def _with_data(base: HiMTokStage2Recipe, data: Path, **changes) -> HiMTokStage2Recipe:
    from dataclasses import replace

    return replace(base, data=(str(data),), **changes)
