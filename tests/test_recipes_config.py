"""Recipe configs reject bad values with a ValueError naming the field; TRL arguments come out
right (bf16 only on CUDA, checkpointing under the name this transformers knows)."""

from __future__ import annotations

import pytest
import torch

from masktok.train.vlm.config import (
    GRPORecipe,
    LoraSettings,
    ModelSettings,
    SFTRecipe,
    TrainSettings,
)

MODEL = ModelSettings("model")
TRAIN = TrainSettings("out", batch_size=8)


@pytest.mark.parametrize("build, field", [
    (lambda: LoraSettings(rank=0), "lora.rank"),
    (lambda: LoraSettings(dropout=1.0), "lora.dropout"),
    (lambda: LoraSettings(target_modules=("q_proj", "not a name")), "lora.target_modules"),
    (lambda: LoraSettings(new_tokens="some"), "lora.new_tokens"),
    (lambda: ModelSettings(""), "model.path"),
    (lambda: ModelSettings("m", vocabulary="bpe"), "model.vocabulary"),
    (lambda: ModelSettings("m", weight_dtype="float16"), "model.weight_dtype"),
    (lambda: TrainSettings("o", max_steps=0), "train.max_steps"),
    (lambda: TrainSettings("o", learning_rate=-1.0), "train.learning_rate"),
    (lambda: TrainSettings("o", warmup_ratio=1.5), "train.warmup_ratio"),
    (lambda: TrainSettings("o", precision="fp16"), "train.precision"),
    (lambda: TrainSettings("o", save_total_limit=0), "save_total_limit"),
    (lambda: SFTRecipe(MODEL, TRAIN, data=()), "data"),
    (lambda: SFTRecipe(MODEL, TRAIN, data=("d",), loss_on="prompt"), "loss_on"),
    (lambda: SFTRecipe(MODEL, TRAIN, data=("d",), max_length=0), "max_length"),
    (lambda: GRPORecipe(MODEL, TRAIN, data=("d",), num_generations=1), "num_generations"),
    (lambda: GRPORecipe(MODEL, TRAIN, data=("d",), num_generations=3), "multiple of num_generations"),
    (lambda: GRPORecipe(MODEL, TRAIN, data=("d",), reward="iou"), "reward"),
    (lambda: GRPORecipe(MODEL, TRAIN, data=("d",), format_weight=2.0), "format_weight"),
    (lambda: GRPORecipe(MODEL, TRAIN, data=("d",), top_p=0.0), "top_p"),
    (lambda: GRPORecipe(MODEL, TRAIN, data=("d",), constrained=False, num_codes=2), "num_codes"),
])
def test_bad_values_name_their_field(build, field):
    with pytest.raises(ValueError, match=field):
        build()


def test_trainer_arguments_follow_the_settings():
    from masktok.train.vlm.sft import checkpointing_argument, trainer_arguments

    train = TrainSettings("out", max_steps=5, warmup_ratio=0.1, save_steps=0, report_to=("tensorboard",),
                          extra={"fsdp": "full_shard auto_wrap"})
    args = trainer_arguments(train, ModelSettings("m", gradient_checkpointing=True))
    assert args["max_steps"] == 5 and args["warmup_steps"] == 0.1
    assert args["bf16"] is torch.cuda.is_available()
    assert args["save_strategy"] == "no" and args["report_to"] == ["tensorboard"]
    assert args["fsdp"] == "full_shard auto_wrap"
    assert args[checkpointing_argument()] is True
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            trainer_arguments(TrainSettings("o", precision="bf16"), MODEL)
