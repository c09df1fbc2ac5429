"""``masktok train …``: training commands. ``masktok train tokenizer`` trains HiMTok or SAMTok."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Train tokenizers and models.", no_args_is_help=True)


@app.command("tokenizer")
def tokenizer(
    family: str = typer.Option("himtok", help="Tokenizer family: himtok or samtok."),
    model: str = typer.Option("masktok-s", help="Model config name or a tokenizer folder to start from."),
    init_from: Optional[str] = typer.Option(None, help="Start from these weights instead of random ones."),
    data: list[str] = typer.Option([], "--data", help="Annotation source KIND:PATH[,PATH…] (repeatable): "
                                                      "coco, panoptic, yolo, labelme, mask_png, sa1b."),
    packed: list[str] = typer.Option([], "--packed", help="Packed mask file (.npz) from "
                                                          "scripts/pack_training_masks.py (repeatable)."),
    val_data: list[str] = typer.Option([], "--val-data", help="Held-out annotation source (repeatable)."),
    val_packed: list[str] = typer.Option([], "--val-packed", help="Held-out packed mask file (repeatable)."),
    val_max_masks: int = typer.Option(0, help="Validate on at most this many masks (0: all)."),
    synthetic_fraction: float = typer.Option(0.3, help="Share of synthetic masks per batch (HiMTok)."),
    crop_prob: float = typer.Option(0.5, help="Probability of a crop around the mask (area × U(4, 50))."),
    max_side: int = typer.Option(640, help="Long side of real masks kept in memory."),
    batch_size: int = typer.Option(64, help="Masks (HiMTok) or images (SAMTok) per step and process."),
    masks_per_image: int = typer.Option(8, help="SAMTok: masks per image per step."),
    steps: int = typer.Option(1000, help="Total optimizer steps."),
    lr: float = typer.Option(3e-4, help="Peak learning rate (AdamW)."),
    weight_decay: float = typer.Option(0.05, help="AdamW weight decay (matrices only)."),
    grad_clip: float = typer.Option(1.0, help="Gradient norm clip (0: off)."),
    warmup_fraction: float = typer.Option(0.05, help="Linear warm-up share of the steps."),
    min_lr_ratio: float = typer.Option(0.05, help="Final LR as a fraction of the peak (cosine)."),
    num_partial: int = typer.Option(3, help="HiMTok: random partial prefix lengths per mask."),
    dead_code_threshold: float = typer.Option(
        1.0, help="SAMTok: EMA count below which a code restarts (official 1.0, for ~1024 masks per step; "
                  "scale it by masks per step / 1024 for smaller batches)."),
    seed: int = typer.Option(0, help="Seed of the model init and the data stream."),
    device: str = typer.Option("auto", help="auto, cpu or cuda (under torchrun: cuda:LOCAL_RANK)."),
    bf16: bool = typer.Option(True, help="bf16 autocast on CUDA."),
    run_dir: str = typer.Option("runs/tokenizer", help="Output folder (checkpoints, logs, final/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in RUN_DIR."),
    checkpoint_every: int = typer.Option(500, help="Steps between checkpoints (0: only at the end)."),
    keep_checkpoints: int = typer.Option(2, help="Checkpoints to keep."),
    checkpoint_part_mb: float = typer.Option(0.0, help="Split checkpoint files into parts of ≤ this many MiB."),
    checkpoint_optimizer_dtype: str = typer.Option("float32", help="float32 (exact resume) or bfloat16."),
    log_every: int = typer.Option(10, help="Steps between log rows."),
    val_every: int = typer.Option(0, help="Steps between validation passes (0: at the end only)."),
    val_prefix_lengths: str = typer.Option("1,2,4,8,16,32", help="Prefix lengths to validate."),
    tensorboard: bool = typer.Option(False, help="Also write TensorBoard event files."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    time_limit_min: float = typer.Option(0.0, help="Stop with a checkpoint after this many minutes (0: none)."),
    stop_at_step: int = typer.Option(0, help="Stop with a checkpoint after this step (0: run to --steps)."),
    export_dtype: str = typer.Option("float32", help="dtype of the exported final tokenizer."),
) -> None:
    """Train a mask tokenizer (single process, or one process per GPU under torchrun)."""
    from masktok.cli.tokenizer_option import check_device
    from masktok.train.tokenizer.trainer import TrainConfig, train_tokenizer

    try:
        lengths = tuple(int(v) for v in val_prefix_lengths.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {val_prefix_lengths!r}",
                                 param_hint="--val-prefix-lengths") from None
    if any(length < 1 for length in lengths):
        raise typer.BadParameter(f"code lengths start at 1, got {val_prefix_lengths!r}",
                                 param_hint="--val-prefix-lengths")
    if device != "auto":
        check_device(device)
    config = TrainConfig(
        family=family, model=model, init_from=init_from, data=tuple(data), packed=tuple(packed),
        val_data=tuple(val_data), val_packed=tuple(val_packed), val_max_masks=val_max_masks,
        synthetic_fraction=synthetic_fraction, crop_prob=crop_prob, max_side=max_side, batch_size=batch_size,
        masks_per_image=masks_per_image, steps=steps, lr=lr, weight_decay=weight_decay, grad_clip=grad_clip,
        warmup_fraction=warmup_fraction, min_lr_ratio=min_lr_ratio, num_partial=num_partial,
        dead_code_threshold=dead_code_threshold, seed=seed,
        device=device, bf16=bf16, run_dir=run_dir, checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints, checkpoint_part_mb=checkpoint_part_mb,
        checkpoint_optimizer_dtype=checkpoint_optimizer_dtype, log_every=log_every, val_every=val_every,
        val_prefix_lengths=lengths, tensorboard=tensorboard, progress=progress, time_limit_min=time_limit_min,
        stop_at_step=stop_at_step, export_dtype=export_dtype)
    result = train_tokenizer(config, resume=resume)
    import os

    if int(os.environ.get("RANK", "0")) != 0:
        return
    console = Console()
    table = Table(title=f"{family} training: step {result.step}/{steps} in {result.wall_time_s:.1f} s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in {**result.final_metrics, **result.validation}.items():
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    if result.export_dir:
        console.print(f"tokenizer saved to {result.export_dir}")
    elif result.stopped_early:
        console.print(f"stopped at step {result.step}; continue with the same command plus --resume")


from masktok.cli.recipes import grpo, sft  # noqa: E402  (the VLM recipes: SFT and GRPO on TRL)
app.command("sft")(sft); app.command("grpo")(grpo)  # noqa: E702


@app.command("export")
def export(
    run_dir: str = typer.Argument(..., help="A training run folder (with checkpoints/)."),
    out: str = typer.Argument(..., help="Output tokenizer folder."),
    dtype: str = typer.Option("float32", help="float32, float16 or bfloat16."),
) -> None:
    """Export a run's newest checkpoint as a tokenizer folder."""
    from masktok.train.tokenizer.trainer import export_checkpoint

    path = export_checkpoint(run_dir, out, dtype)
    Console().print(f"tokenizer saved to {path}")
