"""The YAML recipes under ``recipes/`` and the commands of ``docs/recipes.md``: every config parses
into its recipe, and the two recipe chains run through the CLI on tiny random models (the
paper-scale values overridden on the command line): HiMTok stage 2 → stage 3, SAMTok SFT → GRPO."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trl")

from masktok.masks import mask_to_rle, read_mask_png  # noqa: E402
from masktok.train.vlm.config import GRPORecipe, HiMTokStage2Recipe, SFTRecipe  # noqa: E402
from masktok.train.vlm.recipe_args import parse_recipe  # noqa: E402
from masktok.words import HIMTOK_VOCABULARY  # noqa: E402
from mllm_fixtures import TinyVLMConfig, build_tiny_himtok  # noqa: E402
from test_recipes_toy import gres_toy, one_thread, res_toy, save_tiny_vlm, write_jsonl  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
COMMANDS = {"sft": SFTRecipe, "grpo": GRPORecipe, "himtok-stage2": HiMTokStage2Recipe}
# Tiny runs: a few steps, no checkpoints, the tiny processor's image budget, quiet.
QUICK = ["--max_steps", "2", "--batch_size", "2", "--grad_accum", "1", "--save_steps", "0",
         "--logging_steps", "1", "--learning_rate", "1e-3", "--max_pixels", "12544",
         "--extra", '{"disable_tqdm": true}']


def documented_commands() -> list[tuple[str, str]]:
    """(recipe command, config file) of every ``masktok train … --config recipes/….yaml`` line
    of docs/recipes.md."""
    text = (REPO / "docs" / "recipes.md").read_text()
    return re.findall(r"masktok train (sft|grpo|himtok-stage2) --config (recipes/[\w.]+\.yaml)", text)


def test_the_docs_run_every_yaml_recipe_and_each_parses():
    commands = documented_commands()
    assert {config for _, config in commands} == {f"recipes/{p.name}" for p in RECIPES.glob("*.yaml")}
    for command, config in commands:
        recipe, _ = parse_recipe(COMMANDS[command], ["--config", str(REPO / config)])
        assert isinstance(recipe, COMMANDS[command])
    stage2, _ = parse_recipe(HiMTokStage2Recipe, ["--config", str(RECIPES / "himtok_stage2.yaml")])
    stage3, _ = parse_recipe(SFTRecipe, ["--config", str(RECIPES / "himtok_stage3.yaml")])
    assert stage2.train.learning_rate == 4e-5 and stage3.train.learning_rate == 2e-5  # paper, appendix D
    assert stage2.model.max_pixels < stage3.model.max_pixels  # low, then high resolution
    assert stage3.model.path == str(Path(stage2.train.output_dir) / "final")


def run_cli(*args: str):
    from typer.testing import CliRunner

    from masktok.cli import app

    return CliRunner().invoke(app, ["train", *args])


def himtok_data(test_data: Path, tokenizer, folder: Path) -> Path:
    """The refseg examples as ``masktok build-sft`` writes HiMTok data: the tokenizer's words in
    the answer, the ground truth as an RLE."""
    root = test_data / "refseg_examples"
    rows = []
    for line in (root / "anns" / "seg_data_with_mask.jsonl").read_text().splitlines():
        record = json.loads(line)
        mask = read_mask_png(root / record["mask"], threshold=127)
        words = tokenizer.encode_words(None, mask[None])[0]
        question = record["conversations"][0]["value"].replace("<image>\n", "")
        rows.append({"id": record["image"], "images": [str(root / record["image"])],
                     "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
                                  {"role": "assistant", "content": [{"type": "text", "text": f"The mask appears at {words}."}]}],
                     "masks": [{"image": 0, "rle": mask_to_rle(mask)}]})
    return write_jsonl(folder / "himtok.trl.jsonl", rows)


def test_himtok_stage2_then_stage3_from_the_yaml_recipes(test_data, tmp_path, one_thread):
    from masktok.mllm.loading import load_chat_components

    model_dir = save_tiny_vlm(tmp_path / "lmm", TinyVLMConfig(), vocab=HIMTOK_VOCABULARY)
    stage1 = tmp_path / "stage1"  # stands for `masktok train tokenizer`'s final/ (tested on its own)
    tokenizer = build_tiny_himtok()
    tokenizer.save_pretrained(stage1)
    data = himtok_data(test_data, tokenizer, tmp_path)

    stage2 = run_cli("himtok-stage2", "--config", str(RECIPES / "himtok_stage2.yaml"), *QUICK,
                     "--model", str(model_dir), "--mask_tokenizer", str(stage1), "--data", str(data),
                     "--output_dir", str(tmp_path / "stage2"), "--max_length", "512")
    assert stage2.exit_code == 0, stage2.output
    assert "mask_iou" in stage2.output and "2 steps" in stage2.output
    stage3 = run_cli("sft", "--config", str(RECIPES / "himtok_stage3.yaml"), *QUICK,
                     "--model", str(tmp_path / "stage2" / "final"), "--data", str(data),
                     "--output_dir", str(tmp_path / "stage3"), "--max_length", "512")
    assert stage3.exit_code == 0, stage3.output

    # the stage-3 chat folder carries the stage-2 de-tokenizer
    _, processor, final_tokenizer = load_chat_components(tmp_path / "stage3" / "final")
    _, _, stage2_tokenizer = load_chat_components(tmp_path / "stage2" / "final")
    for key, value in stage2_tokenizer.model.state_dict().items():
        assert np.array_equal(value.numpy(), final_tokenizer.model.state_dict()[key].numpy()), key
    assert processor.image_processor.size["longest_edge"] == 12544


def test_samtok_sft_then_grpo_from_the_yaml_recipes(tmp_path, one_thread):
    model_dir = save_tiny_vlm(tmp_path / "model")
    res, _ = res_toy(tmp_path / "res", num_samples=2)
    gres, _, _ = gres_toy(tmp_path / "gres", num_prompts=2)
    sft = run_cli("sft", "--config", str(RECIPES / "samtok_sft.yaml"), *QUICK, "--model", str(model_dir),
                  "--data", str(res), "--output_dir", str(tmp_path / "sft"), "--max_length", "256")
    assert sft.exit_code == 0, sft.output
    grpo = run_cli("grpo", "--config", str(RECIPES / "samtok_grpo.yaml"), *QUICK,
                   "--data", str(gres), "--output_dir", str(tmp_path / "grpo"), "--batch_size", "4",
                   "--num_generations", "2", "--max_completion_length", "8",
                   "--model", str(tmp_path / "sft" / "final"))
    assert grpo.exit_code == 0, grpo.output
    assert "reward" in grpo.output and (tmp_path / "grpo" / "final" / "config.json").is_file()


@pytest.mark.parametrize("args, message", [
    (["--config", "nowhere.yaml"], "nowhere.yaml: no such file"),
    (["--model", "m", "--data", "d.jsonl", "--output_dir", "o", "--num_partial_levels", "-1"], "num_partial_levels"),
    (["--model", "no/such/folder", "--data", "d.jsonl", "--output_dir", "o"], "no/such/folder"),
])
def test_bad_stage2_input_is_one_clear_error_without_a_traceback(args, message):
    result = run_cli("himtok-stage2", *args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_recipe_help_lists_the_options_and_their_defaults():
    result = run_cli("himtok-stage2", "--help")
    assert result.exit_code == 0
    for option in ("--mask_tokenizer", "--train_decoder", "--no_train_decoder", "--learning_rate", "--lora_rank"):
        assert option in result.output
