"""One trainer for both tokenizer families (HiMTok and SAMTok).

Single process on CPU or one GPU, or DDP under ``torchrun`` (any number of GPUs or nodes; see
``docs/training.md``). AdamW, cosine schedule with linear warm-up, gradient clipping, bf16
autocast on CUDA. Checkpoints every N steps hold the model (EMA codebook buffers included),
optimizer, scheduler, RNG and data position, and ``resume=True`` continues from the newest one
exactly: the same next batch, the same next update.

    from masktok.train import TrainConfig, train_tokenizer
    result = train_tokenizer(TrainConfig(family="himtok", model="masktok-s", packed=("masks.npz",),
                                         steps=2000, run_dir="runs/himtok"))

Run layout: ``run_dir/checkpoints/step-NNNNNN.pt``, ``run_dir/metrics.csv`` (+ ``tensorboard/``),
``run_dir/final/`` (the trained tokenizer, loadable with ``from_pretrained``), ``run_dir/result.json``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from masktok.train.tokenizer import checkpointing as ckpt
from masktok.train.tokenizer.distributed import (
    DistributedContext,
    all_reduce_mean,
    barrier,
    cleanup_distributed,
    init_distributed,
)
from masktok.train.tokenizer.logging import MetricsLogger
from masktok.train.tokenizer.mask_sampler import step_seed

FAMILIES = ("himtok", "samtok")

# Settings that only steer this invocation; every other field defines the run and must match on resume.
RUN_CONTROL = frozenset({"device", "run_dir", "checkpoint_every", "keep_checkpoints", "checkpoint_part_mb",
                         "checkpoint_optimizer_dtype", "log_every", "val_every", "val_max_masks",
                         "tensorboard", "progress", "time_limit_min", "stop_at_step", "export_dtype",
                         "val_data", "val_packed", "val_prefix_lengths"})


@dataclass
class TrainConfig:
    """Every setting of a tokenizer training run.

    Attributes:
        family: "himtok" or "samtok".
        model: a config name (HiMTok: ``masktok-s`` …; SAMTok: see its configs) or a tokenizer folder.
        init_from: start from these weights (a tokenizer folder / checkpoint) instead of random.
        data: annotation source specs (:func:`masktok.data.mask_pools.sources.parse_source`).
        packed: packed mask files (:func:`masktok.data.mask_pools.sources.pack_masks`).
        val_data, val_packed: held-out masks for the validation pass.
        val_max_masks: use at most this many validation masks (0: all).
        synthetic_fraction: share of synthetic masks per batch (HiMTok).
        crop_prob: probability of the ALTo crop around the mask (else the whole image).
        max_side: long side of real masks in the pool (downscaled when larger).
        batch_size: masks (HiMTok) or images (SAMTok) per step and rank.
        masks_per_image: SAMTok: masks per image in a step (the image is embedded once for all).
        steps: total optimizer steps.
        lr, weight_decay, betas, grad_clip: AdamW and clipping.
        warmup_fraction: linear warm-up share of ``steps``; then cosine down to ``min_lr_ratio · lr``.
        num_partial: HiMTok: random partial prefix lengths per mask and step.
        level_sigma_scale: HiMTok: scale of the partial levels' target blur (1: official schedule).
        box_scale_prob, box_scale_max: HiMTok box-first models with outward boxes: probability and
            largest factor of a coarser box grid (masks as small parts of larger images; see
            :mod:`masktok.train.tokenizer.mask_sampler`).
        dead_code_threshold: SAMTok: EMA count under which a code is restarted (official: 1.0,
            tuned for a global batch of 1024 masks, ~4 per code and step; small batches need it
            scaled down by about batch masks / 1024, or almost every code restarts every step).
        seed: model init and data stream.
        device: "auto", "cpu", "cuda" (torchrun: cuda:LOCAL_RANK).
        bf16: autocast to bf16 on CUDA (ignored on CPU).
        run_dir: output folder.
        checkpoint_every: steps between checkpoints (0: only at the end / on stop).
        keep_checkpoints: how many checkpoints to keep.
        checkpoint_part_mb: split checkpoint files into parts of at most this many MiB (0: one file).
        checkpoint_optimizer_dtype: "float32" (exact resume) or "bfloat16" (smaller files).
        log_every, val_every: steps between log rows / validation passes (val_every 0: at the end).
        val_prefix_lengths: prefix lengths the validation reports.
        tensorboard, progress: TensorBoard event files; a progress bar.
        time_limit_min: stop (with a checkpoint) once this much wall time has passed (0: none); checked
            every ``log_every`` steps, so the steps never wait for the accelerator.
        stop_at_step: stop (with a checkpoint) after this step (0: run to ``steps``).
        export_dtype: dtype of the exported ``final/`` tokenizer ("float32", "float16", "bfloat16").
    """

    family: str = "himtok"
    model: str = "masktok-s"
    init_from: str | None = None
    data: tuple[str, ...] = ()
    packed: tuple[str, ...] = ()
    val_data: tuple[str, ...] = ()
    val_packed: tuple[str, ...] = ()
    val_max_masks: int = 0
    synthetic_fraction: float = 0.3
    crop_prob: float = 0.5
    max_side: int = 640
    batch_size: int = 64
    masks_per_image: int = 8
    steps: int = 1000
    lr: float = 3e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.05
    num_partial: int = 3
    level_sigma_scale: float = 1.0
    box_scale_prob: float = 0.0
    box_scale_max: float = 1.0
    dead_code_threshold: float = 1.0
    seed: int = 0
    device: str = "auto"
    bf16: bool = True
    run_dir: str = "runs/tokenizer"
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    checkpoint_part_mb: float = 0.0
    checkpoint_optimizer_dtype: str = "float32"
    log_every: int = 10
    val_every: int = 0
    val_prefix_lengths: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    tensorboard: bool = False
    progress: bool = True
    time_limit_min: float = 0.0
    stop_at_step: int = 0
    export_dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in ("data", "packed", "val_data", "val_packed", "val_prefix_lengths", "betas"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be ≥ 1, got {self.steps} and {self.batch_size}")
        if self.lr <= 0 or not 0 <= self.warmup_fraction < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("need lr > 0, 0 ≤ warmup_fraction < 1 and 0 ≤ min_lr_ratio ≤ 1")
        if self.grad_clip < 0 or self.checkpoint_every < 0 or self.log_every < 1 or self.val_every < 0:
            raise ValueError("grad_clip, checkpoint_every and val_every must be ≥ 0 and log_every ≥ 1")
        if not self.level_sigma_scale > 0 or not 0 <= self.box_scale_prob <= 1 or not self.box_scale_max >= 1:
            raise ValueError(f"need level_sigma_scale > 0, 0 ≤ box_scale_prob ≤ 1 and box_scale_max ≥ 1, got "
                             f"{self.level_sigma_scale}, {self.box_scale_prob}, {self.box_scale_max}")
        if not self.dead_code_threshold >= 0:
            raise ValueError(f"dead_code_threshold must be ≥ 0, got {self.dead_code_threshold}")
        if self.export_dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"export_dtype must be float32, float16 or bfloat16, got {self.export_dtype!r}")
        if self.family == "himtok" and self.synthetic_fraction < 1 and not (self.data or self.packed):
            raise ValueError("HiMTok training needs real masks (data or packed) unless synthetic_fraction is 1")
        if self.family == "samtok" and not self.data:
            raise ValueError("SAMTok training needs image-annotated data sources (data)")

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {unknown}")
        return cls(**data)


@dataclass
class TrainResult:
    """What a run did: last step, wall time, final validation metrics, where the model went."""

    step: int
    wall_time_s: float
    final_metrics: dict[str, float] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)
    export_dir: str | None = None
    stopped_early: bool = False


def warmup_cosine(step: int, total: int, warmup_fraction: float, min_ratio: float) -> float:
    """LR multiplier: linear warm-up over ⌈warmup_fraction · total⌉ steps, then cosine to ``min_ratio``."""
    warmup = math.ceil(warmup_fraction * total)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over trainable parameters; no weight decay on biases, norms and 1-D parameters."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def build_recipe(config: TrainConfig, ctx: DistributedContext):
    if config.family == "himtok":
        from masktok.train.tokenizer.himtok import HiMTokRecipe

        return HiMTokRecipe(config, ctx)
    from masktok.train.tokenizer.samtok import SAMTokRecipe

    return SAMTokRecipe(config, ctx)


def _check_resume_config(saved: dict, config: TrainConfig, path: Path) -> None:
    current = config.to_dict()
    for key, value in saved.items():
        if key in RUN_CONTROL:
            continue
        if current.get(key) != value:
            raise ValueError(f"cannot resume from {path}: its '{key}' is {value!r} but this run has "
                             f"{current.get(key)!r}; pass the original setting")


def train_tokenizer(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train (or resume training) a tokenizer; see the module docstring."""
    ctx = init_distributed(config.device)
    try:
        return _train(config, ctx, resume)
    finally:
        cleanup_distributed(ctx)


def _train(config: TrainConfig, ctx: DistributedContext, resume: bool) -> TrainResult:
    started = time.monotonic()
    run_dir = Path(config.run_dir)
    ckpt_dir = run_dir / "checkpoints"
    torch.manual_seed(config.seed)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    recipe = build_recipe(config, ctx)
    model = recipe.model
    optimizer = build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, config.steps, config.warmup_fraction, config.min_lr_ratio))
    start_step = 0
    if resume:
        latest = ckpt.latest_checkpoint(ckpt_dir)
        if latest is None:
            raise ValueError(f"--resume: no checkpoint in {ckpt_dir}")
        state = ckpt.load_checkpoint(latest)
        _check_resume_config(state["config"], config, latest)
        recipe.check_data_state(state["data"])
        model.load_state_dict(state["model"])
        ckpt.restore_optimizer(optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ckpt.restore_rng(state["rng"])
        start_step = int(state["step"])
    objective = recipe.objective
    if ctx.distributed:
        # EMA codebook statistics are all-reduced by the quantizers themselves; broadcasting buffers
        # from rank 0 would hide a quantizer that failed to do so.
        objective = DistributedDataParallel(objective, device_ids=[ctx.device.index] if ctx.device.type == "cuda"
                                            else None, broadcast_buffers=False)
    autocast_dtype = torch.bfloat16 if (config.bf16 and ctx.device.type == "cuda") else None
    logger = MetricsLogger(run_dir, tensorboard=config.tensorboard, resume_step=start_step if resume else None) \
        if ctx.is_main else None
    if ctx.is_main:
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    end_step = min(config.steps, config.stop_at_step) if config.stop_at_step else config.steps
    bar = None
    if ctx.is_main and config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start_step, desc=f"train {config.family}", dynamic_ncols=True)
    step = start_step
    last_metrics: dict[str, float] = {}
    stopped_early = False
    sums: dict[str, torch.Tensor] = {}
    count = 0
    tick = time.monotonic()
    # The first step whose loss was not finite (−1: none), kept on the device and read only when
    # metrics are logged or a checkpoint is about to be written, so steps never wait for the GPU.
    first_bad_step = torch.full((), -1, dtype=torch.long, device=ctx.device)
    model.train()
    while step < end_step:
        batch = recipe.batch(step)
        gen = torch.Generator().manual_seed(step_seed(config.seed, step, ctx.rank, stream=2))
        with torch.autocast(device_type=ctx.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss, metrics = objective(batch, gen)
        first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss.detach()),
                                     torch.full_like(first_bad_step, step), first_bad_step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                   config.grad_clip if config.grad_clip > 0 else float("inf"))
        optimizer.step()
        scheduler.step()
        step += 1
        metrics = dict(metrics, grad_norm=grad_norm.detach().float(),
                       batch_sum=_batch_sum(batch).to(grad_norm.device))
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0) + value.detach().float()
        count += 1
        if bar is not None:
            bar.update(1)
        out_of_time = False
        if step % config.log_every == 0 and config.time_limit_min > 0:  # ranks agree on when to stop
            out_of_time = (time.monotonic() - started) > 60 * config.time_limit_min
            out_of_time = bool(all_reduce_mean(torch.tensor(float(out_of_time), device=ctx.device), ctx) > 0)
        stopping = step == end_step or out_of_time
        saving = bool(config.checkpoint_every and step % config.checkpoint_every == 0) or stopping
        if step % config.log_every == 0 or saving:
            _raise_if_non_finite(first_bad_step, ctx)
        if step % config.log_every == 0 or stopping:
            keys = sorted(sums)
            stacked = all_reduce_mean(torch.stack([sums[k] / count for k in keys]), ctx)
            last_metrics = {k: float(v) for k, v in zip(keys, stacked.tolist())}
            now = time.monotonic()
            last_metrics.update(lr=scheduler.get_last_lr()[0], step_time_s=(now - tick) / count)
            tick, sums, count = now, {}, 0
            if logger is not None:
                logger.log(step, last_metrics)
            if bar is not None:
                bar.set_postfix(loss=f"{last_metrics['loss']:.4f}")
        if saving:
            _save(config, ctx, ckpt_dir, step, recipe, optimizer, scheduler)
        if config.val_every and step % config.val_every == 0 and step != config.steps:
            _validate(recipe, ctx, logger, step, autocast_dtype)
        if out_of_time and step < end_step:
            stopped_early = True
            break
    if bar is not None:
        bar.close()
    result = TrainResult(step=step, wall_time_s=time.monotonic() - started, final_metrics=last_metrics,
                         stopped_early=stopped_early or step < config.steps)
    if step == config.steps:
        result.validation = _validate(recipe, ctx, logger, step, autocast_dtype)
        if ctx.is_main:
            export = run_dir / "final"
            recipe.export(export, getattr(torch, config.export_dtype))
            result.export_dir = str(export)
    if logger is not None:
        logger.close()
        (run_dir / "result.json").write_text(json.dumps(asdict(result), indent=2))
    barrier(ctx)
    return result


def _raise_if_non_finite(first_bad_step: torch.Tensor, ctx: DistributedContext) -> None:
    """Stop with the step number when a loss since the last check was NaN or infinite on any rank
    (checked before anything is logged or saved, so no checkpoint holds parameters updated from it;
    every rank checks at the same step and all of them stop together)."""
    anywhere = float(all_reduce_mean((first_bad_step >= 0).float(), ctx)) > 0
    if anywhere:
        bad = int(first_bad_step)
        where = f"at step {bad}" if bad >= 0 else f"on another rank (of {ctx.world_size})"
        raise FloatingPointError(f"non-finite loss {where}: stopping before any later metrics or "
                                 f"checkpoint are written")


def _batch_sum(batch: Any) -> torch.Tensor:
    """A fingerprint of a batch (sum of its floating-point tensors), logged to compare runs."""
    tensors = batch if isinstance(batch, (tuple, list)) else [batch]
    total = torch.zeros((), dtype=torch.float64)
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            total = total + t.double().sum().cpu()
    return total


def _save(config: TrainConfig, ctx: DistributedContext, folder: Path, step: int, recipe, optimizer,
          scheduler) -> None:
    if ctx.is_main:
        part = int(config.checkpoint_part_mb * 2 ** 20) if config.checkpoint_part_mb else None
        ckpt.save_checkpoint(folder, step, model=recipe.model, optimizer=optimizer, scheduler=scheduler,
                             data_state=recipe.data_state(step), config=config.to_dict(),
                             keep_last=config.keep_checkpoints, max_part_bytes=part,
                             optimizer_dtype=config.checkpoint_optimizer_dtype)
    barrier(ctx)


def _validate(recipe, ctx: DistributedContext, logger: MetricsLogger | None, step: int,
              autocast_dtype: torch.dtype | None) -> dict[str, float]:
    scores = recipe.validate(autocast_dtype) if ctx.is_main else {}
    if logger is not None and scores:
        logger.log(step, scores)
    barrier(ctx)
    return scores


def export_checkpoint(run_dir: str | Path, out: str | Path, dtype: str = "float32") -> Path:
    """Export the newest checkpoint of ``run_dir`` as a tokenizer folder (e.g. a run stopped early).

    The model is rebuilt from the checkpoint's own training config (on the CPU) and saved with
    the family's ``save_pretrained`` in ``dtype``.
    """
    if dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}")
    latest = ckpt.latest_checkpoint(Path(run_dir) / "checkpoints")
    if latest is None:
        raise ValueError(f"no checkpoint in {Path(run_dir) / 'checkpoints'}")
    state = ckpt.load_checkpoint(latest)
    config = TrainConfig.from_dict(dict(state["config"], device="cpu"))
    recipe = build_recipe(config, DistributedContext())
    recipe.model.load_state_dict(state["model"])
    recipe.export(out, getattr(torch, dtype))
    return Path(out)
