"""Train masktok's default tokenizer (a box-first HiMTok model) within a wall-time budget.

    python scripts/pack_training_masks.py --data-root ../shared/data --out runs/pack
    python scripts/train_default_tokenizer.py --pack runs/pack --run-dir runs/v2 --minutes 6

The cosine schedule needs its length up front; with ``--minutes`` and no ``--steps`` the script
first times ``--probe-steps`` steps of the same run (same model, batch and data; its weights are
thrown away), then sets the number of steps so that the real run ends within the budget, and
writes the choice to ``RUN_DIR/plan.json``. ``--steps N`` skips the probe. The trained model is
exported to ``RUN_DIR/final`` (fp16) and validated on the held-out COCO 2017 masks
(``val_coco2017_heldout.npz``). Runs on the GPU when there is one.

The shipped masktok-box-v2 is two runs of this script (see its MODEL_CARD.md):

    python scripts/train_default_tokenizer.py --pack runs/pack --run-dir runs/v2a --minutes 5 \
        --init-from src/masktok/assets/tokenizers/masktok-box-v1 --batch-size 384 --lr 5e-4
    python scripts/train_default_tokenizer.py --pack runs/pack --run-dir runs/v2b --minutes 2.2 \
        --init-from runs/v2a/final --batch-size 384 --lr 3e-4 --warmup-fraction 0.05 --sigma-scale 0.5 \
        --probe-steps 60 --reserve-seconds 20
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

import torch

from masktok.train import HiMTokTrainConfig, TrainConfig, train_tokenizer


def build_config(args: argparse.Namespace, steps: int, run_dir: Path, minutes: float) -> TrainConfig:
    family = HiMTokTrainConfig(
        model=args.model, init_from=args.init_from, packed=(str(args.pack / "train_masks.npz"),),
        val_packed=(str(args.pack / "val_coco2017_heldout.npz"),), val_prefix_lengths=(4, 8, 16, 32),
        synthetic_fraction=args.synthetic, batch_size=args.batch_size, num_partial=args.num_partial,
        level_sigma_scale=args.sigma_scale, box_scale_prob=args.box_scale_prob, box_scale_max=args.box_scale_max)
    return TrainConfig(
        tokenizer=family, steps=steps, lr=args.lr, warmup_fraction=args.warmup_fraction, seed=args.seed,
        device=args.device, run_dir=str(run_dir), checkpoint_every=args.checkpoint_every, keep_checkpoints=1,
        log_every=args.log_every, val_every=0, progress=False, time_limit_min=minutes, export_dtype="float16",
    )


def init_folder(source: Path, model: str, out: Path) -> Path:
    """The weights of the tokenizer folder ``source`` in a model of config ``model`` (e.g. v1's
    weights in masktok-box-v2, which differs only in its box rounding), saved to ``out``."""
    from masktok.tokenizers.himtok import HiMTok, HiMTokModel, get_config

    weights = HiMTok.from_pretrained(source, dtype=torch.float32).model.state_dict()
    target = HiMTokModel(get_config(model))
    target.load_state_dict(weights, strict=True)
    HiMTok(model=target, dtype=torch.float32).save_pretrained(out)
    return out


def seconds_per_step(run_dir: Path) -> float:
    """Step time of the probe's last logged interval (its first interval holds the warm-up)."""
    with (run_dir / "metrics.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("step_time_s")]
    if not rows:
        raise RuntimeError(f"{run_dir}/metrics.csv has no step times; raise --probe-steps")
    return float(rows[-1]["step_time_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", type=Path, required=True, help="folder written by pack_training_masks.py")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=6.0, help="wall-time budget of the whole script")
    parser.add_argument("--steps", type=int, default=0, help="fixed number of steps (skips the probe)")
    parser.add_argument("--probe-steps", type=int, default=120)
    parser.add_argument("--reserve-seconds", type=float, default=40.0,
                        help="budget kept for the final validation and export")
    parser.add_argument("--model", default="masktok-box-v2")
    parser.add_argument("--init-from", default=None,
                        help="start from the weights of this tokenizer folder (same architecture as --model; "
                             "its box rounding and name are replaced by --model's)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-fraction", type=float, default=0.02)
    parser.add_argument("--num-partial", type=int, default=2)
    parser.add_argument("--synthetic", type=float, default=0.3)
    parser.add_argument("--sigma-scale", type=float, default=1.0)
    parser.add_argument("--box-scale-prob", type=float, default=0.5)
    parser.add_argument("--box-scale-max", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    args = parser.parse_args()

    started = time.monotonic()
    args.run_dir.mkdir(parents=True, exist_ok=True)
    if args.init_from:
        args.init_from = str(init_folder(Path(args.init_from), args.model, args.run_dir / "init"))
    steps = args.steps
    plan: dict = {"minutes": args.minutes}
    if not steps:
        probe_dir = args.run_dir / "probe"
        probe = build_config(args, args.probe_steps, probe_dir, 0.0)
        probe.log_every = max(1, args.probe_steps // 3)
        probe.tokenizer.val_packed = ()
        train_tokenizer(probe)
        per_step = seconds_per_step(probe_dir)
        shutil.rmtree(probe_dir)
        left = 60 * args.minutes - (time.monotonic() - started) - args.reserve_seconds
        steps = max(args.probe_steps, int(left / per_step))
        plan.update(probe_steps=args.probe_steps, probe_seconds_per_step=per_step)
    plan["steps"] = steps
    (args.run_dir / "plan.json").write_text(json.dumps(plan, indent=2))
    print(f"training {steps} steps: {json.dumps(plan)}", flush=True)
    remaining = args.minutes - (time.monotonic() - started) / 60
    result = train_tokenizer(build_config(args, steps, args.run_dir, max(remaining, 0.5)))
    print(json.dumps({"step": result.step, "wall_time_s": round(result.wall_time_s, 1),
                      "validation": result.validation, "export": result.export_dir,
                      "stopped_early": result.stopped_early}), flush=True)
    if result.export_dir is None:  # stopped by the time limit: export the newest checkpoint
        from masktok.train.tokenizer.trainer import export_checkpoint

        export_checkpoint(args.run_dir, args.run_dir / "final", dtype="float16")


if __name__ == "__main__":
    main()
