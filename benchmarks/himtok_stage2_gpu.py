"""HiMTok's stage 2 at work on a small random VLM with real images and masks: masks/s, peak
memory, the loss curve and the decoded-mask IoU before / after.

    python benchmarks/himtok_stage2_gpu.py --out runs/himtok_stage2_gpu                  # GPU (bf16 autocast)
    python benchmarks/himtok_stage2_gpu.py --out /tmp/s2 --scale tiny --tokenizer tiny --steps 3   # CPU check

The LMM is a random Qwen2.5-VL built offline (``tests/mllm_fixtures.py``, ``--scale``) with the
HiMTok words added. The mask tokenizer is masktok's shipped default (``--tokenizer default``: the
trained box-first HiMTok, 4 box + 28 shape codes) or the tests' tiny random one. The data are the
COCO val2014 images of ``--data`` (default ``tests/data/coco_val2014_100``: 11 photos) on disk and
their non-crowd instances (at least ``--min-area`` pixels): one RES-style conversation per instance, "Please
segment the <category> in this image." answered by the tokenizer's words of the instance, with
the instance as the ground truth (what ``masktok build-sft himtok`` writes). Stage 2 then runs
``--steps`` steps of the recipe (cross-entropy + hierarchical mask loss, de-tokenizer trained,
encoder frozen, encoder codes written on the fly).

Measured: seconds per step and masks per second in the loss (steady state: after the first
``--warmup-steps`` steps), the peak accelerator memory (``torch.cuda.max_memory_allocated``; on
the CPU the process's peak RSS), the per-step loss / mask loss / mask IoU, and the teacher-forced
decoded-mask IoU on the training samples before and after (``eval_mask_iou``). Writes
``himtok_stage2.json`` and ``himtok_stage2_curve.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
DATA = REPO / "tests" / "data" / "coco_val2014_100"

SCALES = {  # TinyVLMConfig overrides
    "tiny": dict(),
    "small": dict(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2,
                  vision_hidden_size=64, vision_depth=2),
    "base": dict(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=4,
                 vision_hidden_size=256, vision_depth=4),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--tokenizer", choices=("default", "tiny"), default="default")
    parser.add_argument("--data", type=Path, default=DATA, help="coco_val2014_100 folder")
    parser.add_argument("--samples", type=int, default=256, help="conversations (one instance each)")
    parser.add_argument("--min-area", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-pixels", type=int, default=None, help="image budget (default: the processor's)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="steps left out of the steady-state timing")
    parser.add_argument("--frozen-decoder", action="store_true", help="keep the de-tokenizer frozen")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def build_data(args: argparse.Namespace, tokenizer, folder: Path) -> tuple[Path, int]:
    """One RES-style conversation per instance → (JSONL, conversations)."""
    from masktok.annotations.coco import read_coco_instances
    from masktok.masks import rle_to_mask

    images = read_coco_instances(args.data / "instances_val2014_100.json")
    rows = []
    for image in images:
        path = args.data / "images" / image.file_name
        if not path.is_file():
            continue
        for instance in image.instances:
            if instance.iscrowd or instance.area < args.min_area or len(rows) >= args.samples:
                continue
            mask = rle_to_mask(instance.mask_rle)
            words = tokenizer.encode_words(None, mask[None])[0]
            name = instance.category_name or f"object {instance.category_id}"
            rows.append({"id": f"{image.image_id}/{instance.id}", "images": [str(path)], "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text",
                                                                 "text": f"Please segment the {name} in this image."}]},
                {"role": "assistant", "content": [{"type": "text", "text": words}]}],
                "masks": [{"image": 0, "rle": instance.mask_rle}]})
    if not rows:
        raise SystemExit(f"{args.data}: no instances with images on disk")
    out = folder / "stage2.trl.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out, len(rows)


def load_tokenizer(name: str):
    if name == "default":
        from masktok.default_model import default_tokenizer_path
        from masktok.tokenizers.himtok import HiMTok

        return HiMTok.from_pretrained(default_tokenizer_path(), dtype=torch.float32)
    from mllm_fixtures import build_tiny_himtok

    return build_tiny_himtok()


class StepClock(TrainerCallback):
    """The wall time at the start of training and at the end of every step (device synchronised)."""

    def __init__(self):
        self.times: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.times:
            self.times.append(self._now())

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(self._now())

    @staticmethod
    def _now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()


def plot(path: Path, rows: list[dict], before: float, after: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(steps, [r["loss"] for r in rows], label="total (cross-entropy + mask loss)")
    left.plot(steps, [r["mask_loss"] for r in rows], label="hierarchical mask loss")
    left.set(title=title, xlabel="step", ylabel="loss", yscale="log")
    left.legend(fontsize=8)
    right.plot(steps, [r["mask_iou"] for r in rows], alpha=0.5, label="training batches (teacher forced)")
    right.axhline(before, color="grey", linestyle="--", label=f"training samples before: {before:.3f}")
    right.axhline(after, color="black", linestyle=":", label=f"training samples after: {after:.3f}")
    right.set(title="decoded-mask IoU (full level)", xlabel="step", ylabel="IoU", ylim=(0, 1))
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    args = parse_args()
    from masktok.train.vlm.config import HiMTokStage2Recipe, HiMTokStage2TrainSettings, ModelSettings
    from masktok.train.vlm.himtok_stage2 import build_himtok_stage2_trainer, export_himtok_stage2
    from masktok.words import HIMTOK_VOCABULARY
    from mllm_fixtures import TinyVLMConfig
    from test_recipes_toy import save_tiny_vlm

    torch.manual_seed(args.seed)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(args.tokenizer)
    config = replace(TinyVLMConfig(seed=args.seed), **SCALES[args.scale])
    model_dir = save_tiny_vlm(out / "model", config, vocab=HIMTOK_VOCABULARY)
    data, samples = build_data(args, tokenizer, out)
    recipe = HiMTokStage2Recipe(
        model=ModelSettings(str(model_dir), max_pixels=args.max_pixels),
        train=HiMTokStage2TrainSettings(str(out / "run"), max_steps=args.steps, batch_size=args.batch_size,
                                        learning_rate=args.lr, warmup_ratio=0.0, lr_scheduler="constant",
                                        logging_steps=1, save_steps=0, seed=args.seed,
                                        extra={"disable_tqdm": True}),
        data=(str(data),), max_length=4096, train_decoder=not args.frozen_decoder)
    clock = StepClock()
    trainer = build_himtok_stage2_trainer(recipe, mask_tokenizer=tokenizer, callbacks=[clock])
    lmm_params = sum(p.numel() for n, p in trainer.model.named_parameters() if not n.startswith("mask_decoder."))
    before = trainer.evaluate(trainer.train_dataset)["eval_mask_iou"]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    peak_gib = torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else None
    after = trainer.evaluate(trainer.train_dataset)["eval_mask_iou"]
    result = export_himtok_stage2(trainer)

    rows = [r for r in result.log_history if "mask_loss" in r and "loss" in r]
    durations = [b - a for a, b in zip(clock.times, clock.times[1:])]
    steady = durations[args.warmup_steps:] or durations
    counts = [r["mask_count"] for r in rows][args.warmup_steps:] or [r["mask_count"] for r in rows]
    report = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__, "bf16": bool(trainer.args.bf16),
        "scale": args.scale, "lmm_parameters": lmm_params,
        "tokenizer": tokenizer.config.name, "tokenizer_parameters": sum(p.numel() for p in tokenizer.model.parameters()),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "conversations": samples, "steps": result.global_step, "batch_size": args.batch_size,
        "seconds_total": sum(durations),
        "seconds_per_step_steady": sum(steady) / len(steady),
        "masks_per_second_steady": sum(counts[:len(steady)]) / sum(steady),
        "peak_gpu_memory_gib": peak_gib,
        "peak_process_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
        "eval_mask_iou_before": before, "eval_mask_iou_after": after,
        "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"],
        "first_mask_loss": rows[0]["mask_loss"], "last_mask_loss": rows[-1]["mask_loss"],
        "curve": [{k: r[k] for k in ("step", "loss", "mask_loss", "mask_iou", "mask_count")} for r in rows],
        "config": {k: str(v) for k, v in vars(args).items()},
    }
    (out / "himtok_stage2.json").write_text(json.dumps(report, indent=1) + "\n")
    title = f"HiMTok stage 2, {args.scale} random Qwen2.5-VL + {tokenizer.config.name} ({report['device']})"
    plot(out / "himtok_stage2_curve.png", rows, before, after, title)
    print(f"{report['device']}: {result.global_step} steps × {args.batch_size} conversations; "
          f"{report['seconds_per_step_steady']:.3f} s/step, {report['masks_per_second_steady']:.1f} masks/s "
          f"(steady); peak memory "
          + (f"{peak_gib:.2f} GiB (GPU)" if peak_gib is not None else f"{report['peak_process_rss_gib']:.2f} GiB RSS")
          + f"; loss {report['first_loss']:.3f} → {report['last_loss']:.3f}, mask loss "
          f"{report['first_mask_loss']:.3f} → {report['last_mask_loss']:.3f}; eval mask IoU "
          f"{before:.3f} → {after:.3f}", flush=True)
    print(f"wrote {out / 'himtok_stage2.json'} and {out / 'himtok_stage2_curve.png'}")


if __name__ == "__main__":
    main()
