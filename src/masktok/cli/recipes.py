"""``masktok train sft | grpo | himtok-stage2``: the VLM training recipes (TRL).

Each reads its options with TRL's ``TrlParser``: ``--config FILE.yaml`` (e.g. one of
``recipes/*.yaml``) sets them, command-line options override the file, and the defaults and help
texts come from the recipe dataclasses (:mod:`masktok.train.vlm.recipe_args`); ``--help`` lists
every option. All run as one process (CPU or one GPU) or one process per GPU under ``torchrun``
/ ``accelerate launch``; see ``docs/recipes.md``. Bad input (an option, the model folder, a data
file, a malformed conversation) raises ``ValueError``, which the ``masktok`` command reports as
one ``error:`` line (:mod:`masktok.cli.errors`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

# Recipes pass their arguments through to TrlParser (which also answers --help).
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _report(title: str, result: Any, keys: tuple[str, ...]) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("first", justify="right")
    table.add_column("last", justify="right")
    for key in keys:
        values = [row[key] for row in result.log_history if key in row]
        if values:
            table.add_row(key, f"{values[0]:.4f}", f"{values[-1]:.4f}")
    console = Console()
    console.print(table)
    console.print(f"{result.global_step} steps; model written to {result.final_dir}"
                  + (" (LoRA merged)" if result.merged_lora else ""))


def _recipe(recipe_cls: type, name: str, args: list[str], feature: str) -> tuple[Any, Any]:
    """The parsed recipe and run options, after checking what the run needs before anything
    loads: the packages, the model folder and the data files."""
    from masktok.errors import require_module

    require_module("trl", feature, "train")
    from masktok.train.vlm.recipe_args import parse_recipe

    recipe, run = parse_recipe(recipe_cls, args, prog=f"masktok train {name}")
    if recipe.model.lora is not None:
        require_module("peft", f"{feature} with lora", "train")
    if not Path(recipe.model.path).is_dir():
        raise ValueError(f"--model: {recipe.model.path}: no such folder")
    for path in (*recipe.data, *getattr(recipe, "eval_data", ())):
        if not Path(path).is_file():
            raise ValueError(f"--data: {path}: no such file")
    return recipe, run


def sft(ctx: typer.Context) -> None:
    """Supervised fine-tuning on mask-word conversations (loss on the assistant turns); also
    HiMTok's stage 3. Options: --config FILE.yaml and/or --help."""
    from masktok.train.vlm.config import SFTRecipe

    recipe, run = _recipe(SFTRecipe, "sft", ctx.args, "SFT")
    from masktok.train.vlm.sft import build_sft_trainer, export_final

    trainer = build_sft_trainer(recipe)
    trainer.train(resume_from_checkpoint=True if run.resume else None)
    result = export_final(trainer, trainer.processing_class, recipe.model)
    _report("SFT", result, ("loss", "mean_token_accuracy", "eval_loss"))


def grpo(ctx: typer.Context) -> None:
    """GRPO with the textual answer-matching reward (last assistant turn = ground truth).
    Options: --config FILE.yaml and/or --help."""
    from masktok.train.vlm.config import GRPORecipe

    recipe, run = _recipe(GRPORecipe, "grpo", ctx.args, "GRPO")
    from masktok.train.vlm.grpo import build_grpo_trainer
    from masktok.train.vlm.sft import export_final

    trainer = build_grpo_trainer(recipe)
    trainer.train(resume_from_checkpoint=True if run.resume else None)
    result = export_final(trainer, trainer.processing_class, recipe.model)
    _report("GRPO", result, ("reward", "reward_std", "loss"))


def himtok_stage2(ctx: typer.Context) -> None:
    """HiMTok stage 2: the LMM and HiMTok's de-tokenizer trained together (cross-entropy +
    hierarchical mask loss). Options: --config FILE.yaml and/or --help."""
    from masktok.train.vlm.config import HiMTokStage2Recipe

    recipe, run = _recipe(HiMTokStage2Recipe, "himtok-stage2", ctx.args, "HiMTok stage 2")
    if recipe.mask_tokenizer is not None and not Path(recipe.mask_tokenizer).exists():
        raise ValueError(f"--mask_tokenizer: {recipe.mask_tokenizer}: no such file or folder")
    from masktok.train.vlm.himtok_stage2 import build_himtok_stage2_trainer, train_himtok_stage2

    trainer = build_himtok_stage2_trainer(recipe)
    result = train_himtok_stage2(trainer, resume=run.resume)
    _report("HiMTok stage 2", result, ("loss", "mask_loss", "mask_iou", "mean_token_accuracy"))


def register(app: typer.Typer) -> None:
    """Add the recipe commands to ``masktok train``."""
    for name, command in (("sft", sft), ("grpo", grpo), ("himtok-stage2", himtok_stage2)):
        app.command(name, context_settings=dict(PASS_THROUGH), add_help_option=False)(command)
