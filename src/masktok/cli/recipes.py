"""``masktok train sft`` and ``masktok train grpo``: the VLM training recipes (TRL).

Both run as one process (CPU or one GPU) or one process per GPU under ``torchrun`` /
``accelerate launch`` (DDP, or FSDP with ``--fsdp``); see ``docs/recipes.md``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

# Options both recipes share (typer reads each function's defaults; the objects are reusable).
MODEL = typer.Option(..., "--model", help="Hugging Face VLM folder (e.g. from `masktok vlm add-vocab`).")
DATA = typer.Option(..., "--data", help="SFT JSONL from `masktok build-sft` (repeatable).")
OUTPUT_DIR = typer.Option(..., "--output-dir", help="Checkpoints, logs and final/.")
VOCABULARY = typer.Option(None, help="samtok or himtok: add these mask words when missing "
                                     "(default: the tokenizer must hold one already).")
IMAGE_ROOT = typer.Option(None, help="Folder relative image paths start from (default: the "
                                     "working directory).")
MAX_SAMPLES = typer.Option(None, help="Use at most this many conversations.")
LORA = typer.Option(False, "--lora/--full", help="Train a LoRA adapter instead of the full LLM.")
LORA_RANK = typer.Option(16, help="LoRA rank.")
LORA_ALPHA = typer.Option(32, help="LoRA alpha.")
LORA_DROPOUT = typer.Option(0.05, help="LoRA dropout.")
LORA_NEW_TOKENS = typer.Option("full", help="LoRA: how the mask words train: full (embedding + "
                                            "LM head) or rows (their embedding rows + LM head).")
FREEZE_VISION = typer.Option(True, "--freeze-vision/--train-vision", help="Freeze the vision tower.")
TRAIN_PROJECTOR = typer.Option(True, "--train-projector/--freeze-projector",
                               help="Train the vision-language projector.")
WEIGHT_DTYPE = typer.Option("float32", help="Weights dtype: float32 (bf16 then as autocast) or bfloat16.")
GRADIENT_CHECKPOINTING = typer.Option(False, help="Recompute activations in the backward pass.")
MAX_STEPS = typer.Option(-1, help="Optimizer steps (-1: run --epochs).")
EPOCHS = typer.Option(1.0, help="Passes over the data when --max-steps is -1.")
BATCH_SIZE = typer.Option(8, help="Per device: conversations (SFT) or completions (GRPO).")
GRAD_ACCUM = typer.Option(1, help="Gradient accumulation steps.")
WARMUP_RATIO = typer.Option(0.03, help="Linear warm-up share of the steps.")
SCHEDULER = typer.Option("cosine", help="LR schedule (transformers' names).")
WEIGHT_DECAY = typer.Option(0.0, help="AdamW weight decay.")
PRECISION = typer.Option("auto", help="auto (bf16 autocast on CUDA), bf16 or fp32.")
SEED = typer.Option(0, help="Seed.")
LOGGING_STEPS = typer.Option(10, help="Steps between log rows.")
SAVE_STEPS = typer.Option(500, help="Steps between checkpoints (0: only the final export).")
REPORT_TO = typer.Option([], "--report-to", help="Tracker (tensorboard, wandb…; repeatable).")
FSDP = typer.Option(None, help="FSDP mode for transformers' Trainer, e.g. 'full_shard auto_wrap' "
                               "(launch with torchrun / accelerate).")
RESUME = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --output-dir.")


def _settings(model: Path, vocabulary: Optional[str], lora: bool, lora_rank: int, lora_alpha: int,
              lora_dropout: float, lora_new_tokens: str, freeze_vision: bool, train_projector: bool,
              weight_dtype: str, gradient_checkpointing: bool, output_dir: Path, max_steps: int,
              epochs: float, lr: float, batch_size: int, grad_accum: int, warmup_ratio: float,
              scheduler: str, weight_decay: float, precision: str, seed: int, logging_steps: int,
              save_steps: int, report_to: list[str], fsdp: Optional[str]) -> tuple[Any, Any]:
    from masktok.train.vlm.config import LoraSettings, ModelSettings, TrainSettings

    lora_settings = (LoraSettings(rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout,
                                  new_tokens=lora_new_tokens) if lora else None)
    model_settings = ModelSettings(str(model), vocabulary=vocabulary, freeze_vision=freeze_vision,
                                   train_projector=train_projector, lora=lora_settings,
                                   weight_dtype=weight_dtype,
                                   gradient_checkpointing=gradient_checkpointing)
    train_settings = TrainSettings(
        str(output_dir), max_steps=max_steps, epochs=epochs, learning_rate=lr,
        weight_decay=weight_decay, warmup_ratio=warmup_ratio, lr_scheduler=scheduler,
        batch_size=batch_size, grad_accum=grad_accum, precision=precision, seed=seed,
        logging_steps=logging_steps, save_steps=save_steps, report_to=tuple(report_to),
        extra={"fsdp": fsdp} if fsdp else {})
    return model_settings, train_settings


def _check_inputs(model: Path, data: list[Path], lora: bool, feature: str) -> None:
    """What a run needs, checked before anything loads: packages, the model folder, the data files."""
    from masktok.errors import require_module

    require_module("trl", feature, "train")
    if lora:
        require_module("peft", f"{feature} with --lora", "train")
    if not model.is_dir():
        raise typer.BadParameter(f"{model}: no such folder", param_hint="--model")
    for path in data:
        if not path.is_file():
            raise typer.BadParameter(f"{path}: no such file", param_hint="--data")


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


def sft(
    model: Path = MODEL, data: list[Path] = DATA, output_dir: Path = OUTPUT_DIR,
    eval_data: list[Path] = typer.Option([], "--eval-data", help="Held-out JSONL (repeatable)."),
    vocabulary: Optional[str] = VOCABULARY, image_root: Optional[Path] = IMAGE_ROOT,
    max_samples: Optional[int] = MAX_SAMPLES,
    max_length: int = typer.Option(2048, help="Longest conversation in tokens."),
    loss_on: str = typer.Option("assistant", help="assistant (every answer turn) or all tokens."),
    eval_steps: int = typer.Option(500, help="Steps between evaluations (with --eval-data)."),
    lora: bool = LORA, lora_rank: int = LORA_RANK, lora_alpha: int = LORA_ALPHA,
    lora_dropout: float = LORA_DROPOUT, lora_new_tokens: str = LORA_NEW_TOKENS,
    freeze_vision: bool = FREEZE_VISION, train_projector: bool = TRAIN_PROJECTOR,
    weight_dtype: str = WEIGHT_DTYPE, gradient_checkpointing: bool = GRADIENT_CHECKPOINTING,
    max_steps: int = MAX_STEPS, epochs: float = EPOCHS,
    lr: float = typer.Option(2e-5, help="Peak learning rate (SAMTok SFT: 2e-5)."),
    batch_size: int = BATCH_SIZE, grad_accum: int = GRAD_ACCUM, warmup_ratio: float = WARMUP_RATIO,
    scheduler: str = SCHEDULER, weight_decay: float = WEIGHT_DECAY, precision: str = PRECISION,
    seed: int = SEED, logging_steps: int = LOGGING_STEPS, save_steps: int = SAVE_STEPS,
    report_to: list[str] = REPORT_TO, fsdp: Optional[str] = FSDP, resume: bool = RESUME,
) -> None:
    """Supervised fine-tuning on mask-word conversations (loss on the assistant turns)."""
    _check_inputs(model, [*data, *eval_data], lora, "SFT")
    from masktok.train.vlm.config import SFTRecipe
    from masktok.train.vlm.sft import run_sft

    try:
        model_settings, train_settings = _settings(
            model, vocabulary, lora, lora_rank, lora_alpha, lora_dropout, lora_new_tokens,
            freeze_vision, train_projector, weight_dtype, gradient_checkpointing, output_dir,
            max_steps, epochs, lr, batch_size, grad_accum, warmup_ratio, scheduler, weight_decay,
            precision, seed, logging_steps, save_steps, report_to, fsdp)
        recipe = SFTRecipe(model=model_settings, train=train_settings,
                           data=tuple(str(p) for p in data), eval_data=tuple(str(p) for p in eval_data),
                           image_root=str(image_root) if image_root else None, max_length=max_length,
                           loss_on=loss_on, max_samples=max_samples, eval_steps=eval_steps)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="the recipe options") from error
    result = run_sft(recipe, resume=resume)
    _report("SFT", result, ("loss", "mean_token_accuracy", "eval_loss"))


def grpo(
    model: Path = MODEL, data: list[Path] = DATA, output_dir: Path = OUTPUT_DIR,
    vocabulary: Optional[str] = VOCABULARY, image_root: Optional[Path] = IMAGE_ROOT,
    max_samples: Optional[int] = MAX_SAMPLES,
    reward: str = typer.Option("match", help="match (exact code tuples), partial (per-level "
                                             "credit) or gcg (codes and phrases)."),
    format_weight: float = typer.Option(0.0, help="Weight of the format reward."),
    r1: bool = typer.Option(False, help="Format reward asks for <think>…</think><answer>…</answer>."),
    num_generations: int = typer.Option(8, help="Completions per prompt."),
    max_completion_length: int = typer.Option(64, help="New tokens per completion."),
    temperature: float = typer.Option(1.0, help="Sampling temperature of the rollouts."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling of the rollouts."),
    beta: float = typer.Option(0.0, help="KL weight towards the starting model."),
    epsilon: float = typer.Option(0.2, help="Clip range."),
    loss_type: str = typer.Option("dapo", help="TRL GRPO loss: dapo, grpo, dr_grpo, bnpo…"),
    num_iterations: int = typer.Option(1, help="Updates per batch of rollouts."),
    constrained: bool = typer.Option(True, "--constrained/--free",
                                     help="Sample rollouts through the mask-word grammar."),
    num_codes: Optional[int] = typer.Option(None, help="Constrained: codes per span (HiMTok)."),
    lora: bool = LORA, lora_rank: int = LORA_RANK, lora_alpha: int = LORA_ALPHA,
    lora_dropout: float = LORA_DROPOUT, lora_new_tokens: str = LORA_NEW_TOKENS,
    freeze_vision: bool = FREEZE_VISION, train_projector: bool = TRAIN_PROJECTOR,
    weight_dtype: str = WEIGHT_DTYPE, gradient_checkpointing: bool = GRADIENT_CHECKPOINTING,
    max_steps: int = MAX_STEPS, epochs: float = EPOCHS,
    lr: float = typer.Option(1e-6, help="Learning rate (SAMTok RL: 1e-6)."),
    batch_size: int = typer.Option(16, help="Completions per device and step (a multiple of "
                                            "--num-generations)."),
    grad_accum: int = GRAD_ACCUM, warmup_ratio: float = typer.Option(0.0, help="Warm-up share."),
    scheduler: str = typer.Option("constant", help="LR schedule."),
    weight_decay: float = WEIGHT_DECAY, precision: str = PRECISION, seed: int = SEED,
    logging_steps: int = typer.Option(1, help="Steps between log rows."),
    save_steps: int = SAVE_STEPS, report_to: list[str] = REPORT_TO, fsdp: Optional[str] = FSDP,
    resume: bool = RESUME,
) -> None:
    """GRPO with the textual answer-matching reward (last assistant turn = ground truth)."""
    _check_inputs(model, data, lora, "GRPO")
    from masktok.train.vlm.grpo import run_grpo
    from masktok.train.vlm.config import GRPORecipe

    try:
        model_settings, train_settings = _settings(
            model, vocabulary, lora, lora_rank, lora_alpha, lora_dropout, lora_new_tokens,
            freeze_vision, train_projector, weight_dtype, gradient_checkpointing, output_dir,
            max_steps, epochs, lr, batch_size, grad_accum, warmup_ratio, scheduler, weight_decay,
            precision, seed, logging_steps, save_steps, report_to, fsdp)
        recipe = GRPORecipe(
            model=model_settings, train=train_settings, data=tuple(str(p) for p in data),
            image_root=str(image_root) if image_root else None, max_samples=max_samples,
            reward=reward, format_weight=format_weight, r1=r1, num_generations=num_generations,
            max_completion_length=max_completion_length, temperature=temperature, top_p=top_p,
            beta=beta, epsilon=epsilon, loss_type=loss_type, num_iterations=num_iterations,
            constrained=constrained, num_codes=num_codes)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="the recipe options") from error
    result = run_grpo(recipe, resume=resume)
    _report("GRPO", result, ("reward", "reward_std", "loss"))
