"""One trainer for both tokenizer families (HiMTok and SAMTok).

Single process on CPU or one GPU, or DDP under ``torchrun`` (any number of GPUs or nodes; see
``docs/training.md``). AdamW, cosine schedule with linear warm-up, gradient clipping, bf16
autocast on CUDA. Checkpoints every N steps hold the model (EMA codebook buffers included),
optimizer, scheduler, RNG and data position, and ``resume=True`` continues from the newest one
exactly: the same next batch, the same next update.

    from masktok.train import HiMTokTrainConfig, TrainConfig, train_tokenizer
    result = train_tokenizer(TrainConfig(tokenizer=HiMTokTrainConfig(model="masktok-s", packed=("masks.npz",)),
                                         steps=2000, run_dir="runs/himtok"))

The settings are :mod:`masktok.train.tokenizer.config`: one small config per family
(:class:`HiMTokTrainConfig`, :class:`SAMTokTrainConfig`) inside the run's :class:`TrainConfig`.

Run layout: ``run_dir/checkpoints/step-NNNNNN.pt``, ``run_dir/metrics.csv`` (+ ``tensorboard/``),
``run_dir/final/`` (the trained tokenizer, loadable with ``from_pretrained``), ``run_dir/result.json``.
"""

from __future__ import annotations

import json
import math
import time
import importlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from masktok.output_lock import hold_run_output
from masktok.train.tokenizer import checkpointing as ckpt
from masktok.train.tokenizer.distributed import (
    DistributedContext,
    all_reduce_mean,
    barrier,
    cleanup_distributed,
    init_distributed,
)
from masktok.train.tokenizer.config import (  # noqa: F401
    FAMILY_CONFIGS,
    HiMTokTrainConfig,
    SAMTokTrainConfig,
    TrainConfig,
)
from masktok.train.tokenizer.logging import MetricsLogger
from masktok.train.tokenizer.mask_sampler import step_seed

# settings of one family that older runs' flat configs stored for the other family too
OTHER_FAMILY_KEYS = frozenset(f for cls in FAMILY_CONFIGS.values() for f in cls.__dataclass_fields__)
RECIPES = {"himtok": "masktok.train.tokenizer.himtok:HiMTokRecipe",
           "samtok": "masktok.train.tokenizer.samtok:SAMTokRecipe"}


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
    """The family's recipe (model, data, objective, validation, export), imported when needed."""
    module_name, _, class_name = RECIPES[config.family].partition(":")
    return getattr(importlib.import_module(module_name), class_name)(config, ctx)


def _check_resume_config(saved: dict, config: TrainConfig, path: Path) -> None:
    current = config.to_dict()
    for key, value in saved.items():
        if key in TrainConfig.RUN_CONTROL or (key not in current and key in OTHER_FAMILY_KEYS):
            continue
        if current.get(key) != value:
            raise ValueError(f"cannot resume from {path}: its '{key}' is {value!r} but this run has "
                             f"{current.get(key)!r}; pass the original setting")


def train_tokenizer(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train (or resume training) a tokenizer; see the module docstring."""
    ctx = init_distributed(config.device)
    try:
        # The run folder is this run's alone (one lock per rank); a second run stops here.
        with hold_run_output(config.run_dir, rank=ctx.rank, world_size=ctx.world_size,
                             command="masktok train tokenizer"):
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
