"""Recipe options: one flat name per dataclass field, defaults and help from the dataclasses, a
YAML file plus command-line overrides build the nested recipe, bad input names the option."""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("trl")

from masktok.train.vlm.config import (  # noqa: E402
    GRPORecipe,
    HiMTokStage2Recipe,
    HiMTokStage2TrainSettings,
    LoraSettings,
    ModelSettings,
    SFTRecipe,
    TrainSettings,
)
from masktok.train.vlm.recipe_args import (  # noqa: E402
    attribute_docs,
    build_recipe,
    flat_options,
    flatten_recipe,
    parse_recipe,
)

RECIPES = (SFTRecipe, GRPORecipe, HiMTokStage2Recipe)


@pytest.mark.parametrize("recipe_cls", RECIPES)
def test_every_field_has_one_flat_option_with_its_default_and_help(recipe_cls):
    options = {o.name: o for o in flat_options(recipe_cls)}
    leaves = [o for o in options.values() if o.kind == "leaf"]
    assert len(options) == len(flat_options(recipe_cls))  # names are unique
    assert all(o.help for o in options.values()), [o.name for o in options.values() if not o.help]
    assert options["model"].path == ("model", "path") and options["model"].default is dataclasses.MISSING
    assert options["output_dir"].default is dataclasses.MISSING and options["data"].default is dataclasses.MISSING
    assert options["lora"].kind == "switch" and options["lora_rank"].path == ("model", "lora", "rank")
    assert options["lora_rank"].default == LoraSettings().rank
    assert options["freeze_vision"].default is True
    assert {o.path[-1] for o in leaves} >= {f.name for f in dataclasses.fields(TrainSettings)}


def test_recipes_keep_their_own_training_defaults():
    rate = {cls: next(o.default for o in flat_options(cls) if o.name == "learning_rate") for cls in RECIPES}
    assert rate == {SFTRecipe: 2e-5, GRPORecipe: 1e-6, HiMTokStage2Recipe: 4e-5}
    grpo = {o.name: o.default for o in flat_options(GRPORecipe)}
    assert grpo["lr_scheduler"] == "constant" and grpo["batch_size"] == 16


def test_help_comes_from_the_docstrings():
    docs = attribute_docs(ModelSettings)
    assert docs["freeze_vision"].startswith("keep the vision tower frozen")
    assert "448² = 200704" in docs["max_pixels"]  # a continuation line is joined
    lora = attribute_docs(LoraSettings)
    assert lora["rank"] == lora["dropout"]  # "rank, alpha, dropout: …" documents three fields
    stage2 = attribute_docs(HiMTokStage2Recipe)
    assert "max_length" in stage2 and "mask_loss_weight" in stage2  # inherited and own fields


def test_yaml_config_and_command_line_overrides_build_the_nested_recipe(tmp_path):
    config = tmp_path / "sft.yaml"
    config.write_text(
        "model: some/model\nvocabulary: samtok\nlora: true\nlora_rank: 8\n"
        "data: [a.jsonl]\noutput_dir: runs/x\nlearning_rate: 4.0e-5\nmax_steps: 10\n"
        "report_to: [tensorboard]\nextra: {fsdp: full_shard}\n")
    recipe, run = parse_recipe(SFTRecipe, [
        "--config", str(config), "--lora_rank", "4", "--data", "b.jsonl", "c.jsonl",
        "--no_freeze_vision", "--max-steps", "20", "--max_pixels", "3136", "--resume"])
    assert recipe == SFTRecipe(
        model=ModelSettings("some/model", vocabulary="samtok", lora=LoraSettings(rank=4),
                            freeze_vision=False, max_pixels=3136),
        train=TrainSettings("runs/x", learning_rate=4e-5, max_steps=20, report_to=("tensorboard",),
                            extra={"fsdp": "full_shard"}),
        data=("b.jsonl", "c.jsonl"))
    assert run.resume is True
    # the command line alone works too; a switch left off gives no LoRA
    recipe, run = parse_recipe(GRPORecipe, ["--model", "m", "--data", "d.jsonl", "--output_dir", "o",
                                            "--generation_kwargs", '{"repetition_penalty": 1.05}'])
    assert recipe.model.lora is None and recipe.train.learning_rate == 1e-6 and not run.resume
    assert recipe.generation_kwargs == {"repetition_penalty": 1.05}


@pytest.mark.parametrize("recipe", [
    SFTRecipe(ModelSettings("m", lora=LoraSettings(rank=4, target_modules=("q_proj",))),
              TrainSettings("o", extra={"seed": 3}), data=("a", "b"), eval_data=("c",)),
    HiMTokStage2Recipe(ModelSettings("m", vocabulary="himtok"), HiMTokStage2TrainSettings("o"), data=("a",),
                       mask_tokenizer="t", train_decoder=False),
])
def test_flatten_and_build_are_inverse(recipe):
    flat = flatten_recipe(recipe)
    assert build_recipe(type(recipe), flat) == recipe
    assert flat["model"] == "m" and isinstance(flat["data"], list)


@pytest.mark.parametrize("args, message", [
    (["--model", "m", "--data", "d", "--output_dir", "o", "--loss_on", "prompt"], "loss_on"),
    (["--model", "m", "--data", "d", "--output_dir", "o", "--lora_rank", "4"], "lora_rank: given, but lora is off"),
    (["--model", "m", "--data", "d", "--output_dir", "o", "--learning_rate", "-1"], "train.learning_rate"),
    (["--config", "missing.yaml"], "missing.yaml: no such file"),
])
def test_bad_values_raise_naming_the_option(args, message):
    with pytest.raises(ValueError, match=message):
        parse_recipe(SFTRecipe, args)


def test_unknown_yaml_keys_and_bad_command_lines_are_refused(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model: m\ndata: [d]\noutput_dir: o\nlearning_rat: 1.0e-5\n")
    with pytest.raises(ValueError, match="learning_rat"):
        parse_recipe(SFTRecipe, ["--config", str(config)])
    with pytest.raises(ValueError, match="required: --output_dir"):
        parse_recipe(SFTRecipe, ["--model", "m"])
    with pytest.raises(ValueError, match="argument --extra: invalid JSONObject value"):
        parse_recipe(SFTRecipe, ["--model", "m", "--data", "d", "--output_dir", "o", "--extra", "{oops"])
    with pytest.raises(ValueError, match="not used by the HfArgumentParser: \[.--colour"):
        parse_recipe(SFTRecipe, ["--model", "m", "--data", "d", "--output_dir", "o", "--colour", "red"])
    with pytest.raises(ValueError, match="unknown options"):
        build_recipe(SFTRecipe, {"model": "m", "data": ["d"], "output_dir": "o", "colour": "red"})
