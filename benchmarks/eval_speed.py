"""RES / GRES evaluation speed: N samples at H×W through masktok.eval.

Masks are random ellipses (a pool of distinct masks, paired at random per sample). Modes:

* ``rle``    — predictions and ground truth as COCO RLE dicts with string counts (what prediction
               files and annotation readers hold): validation, union of each answer's masks,
               I/U in run-length space, RES and GRES metrics;
* ``dense``  — (N, H, W) bool numpy batches of 500 (I/U per mask, cache-sized);
* ``torch``  — the same batches as torch tensors already on ``--device`` (where a tokenizer decoding
               there leaves them), I/U and accumulation on that device;
* ``runner`` — ``masktok eval res`` and ``gres`` end to end from JSONL files on disk (JSON parsing,
               RLE validation, reports, 5 worst-case overlays), i.e. ``run_referring``, in this
               process; every sample has its own distinct masks (as real prediction files do);
* ``cli``    — the ``masktok eval res`` and ``masktok eval gres`` commands as separate processes on
               the same files (interpreter start-up and imports included): the wall time a user
               waits.

Only the evaluation is timed (making the masks is not). Example::

    python benchmarks/eval_speed.py --samples 10000 --height 480 --width 640 --modes rle dense runner cli
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from masktok.eval.gres import GRESAccumulator
from masktok.masks.iou import coco_rle_groups, union_rle
from masktok.eval.res import RESAccumulator
from masktok.eval.runner import run_referring
from masktok.masks import masks_to_rles

BATCH = 500


def ellipse_pool(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """(n, H, W) bool random ellipses (some empty, to exercise the no-target path)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[:height, :width]
    out = np.zeros((n, height, width), dtype=bool)
    for i in range(n):
        if i % 16 == 0:
            continue
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(10, height / 3), rng.uniform(10, width / 3)
        out[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_rle(pred_rles, gt_rles, pairs, size) -> float:
    samples_pred = [[pred_rles[i]] for i in pairs[:, 0]]
    samples_gt = [[gt_rles[j]] for j in pairs[:, 1]]
    start = time.perf_counter()
    pred_u = [union_rle(ms, size) for ms in coco_rle_groups(samples_pred, lambda g, i: f"pred {g}/{i}")]
    gt_u = [union_rle(ms, size) for ms in coco_rle_groups(samples_gt, lambda g, i: f"gt {g}/{i}")]
    res, gres = RESAccumulator(), GRESAccumulator()
    inter, union = res.update(pred_u, gt_u)
    gres.update(pred_u, gt_u)
    res.compute(), gres.compute()
    return time.perf_counter() - start


def time_dense(pred_pool, gt_pool, pairs, device: str | None) -> float:
    batches = [(pred_pool[pairs[i:i + BATCH, 0]], gt_pool[pairs[i:i + BATCH, 1]])
               for i in range(0, len(pairs), BATCH)]
    if device is not None:  # masks already on the device, as a tokenizer decoding there leaves them
        batches = [(torch.from_numpy(p).to(device), torch.from_numpy(g).to(device)) for p, g in batches]
    res, gres = RESAccumulator(device=device), GRESAccumulator(device=device)
    if device is not None:
        warm = RESAccumulator(device=device)
        warm.update(*batches[0])
        warm.compute()
        sync(device)
    start = time.perf_counter()
    for p, g in batches:
        res.update(p, g)
        gres.update(p, g)
    res.compute(), gres.compute()
    if device is not None:
        sync(device)
    return time.perf_counter() - start


def write_distinct_jsonl(samples: int, size: tuple[int, int], workdir: Path) -> tuple[Path, Path]:
    """Annotation and prediction JSONL with distinct masks for every sample (1 in 16 ground
    truths empty, i.e. no-target for GRES)."""
    ann, pred = workdir / "annotations.jsonl", workdir / "predictions.jsonl"
    with ann.open("w") as fa, pred.open("w") as fp:
        for start in range(0, samples, BATCH):
            n = min(BATCH, samples - start)
            gt = masks_to_rles(ellipse_pool(n, *size, seed=10_000 + start))
            pr = masks_to_rles(ellipse_pool(n, *size, seed=50_000 + start))
            for k in range(n):
                i = start + k
                fa.write(json.dumps({"id": i, "height": size[0], "width": size[1],
                                     "masks": [gt[k]] if i % 16 else []}) + "\n")
                fp.write(json.dumps({"id": i, "masks": [pr[k]]}) + "\n")
    return ann, pred


def time_runner(ann: Path, pred: Path, workdir: Path) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of ``run_referring`` per task, in this process."""
    out = {}
    for task in ("res", "gres"):
        start, cpu = time.perf_counter(), time.process_time()
        run_referring(task, pred, ann, workdir / task)
        out[task] = (time.perf_counter() - start, time.process_time() - cpu)
    return out


def time_cli(ann: Path, pred: Path, workdir: Path) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of ``masktok eval res|gres`` as fresh processes (start-up and imports
    included; CPU = user + system time of the child)."""
    exe = shutil.which("masktok") or ""
    cmd = [exe] if exe else [sys.executable, "-c", "from masktok.cli import main; main()"]
    out = {}
    for task in ("res", "gres"):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd + ["eval", task, "-p", str(pred), "-a", str(ann), "-o", str(workdir / f"cli_{task}")],
                       check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out[task] = (wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--pool", type=int, default=256, help="distinct masks per side")
    parser.add_argument("--modes", nargs="+", default=["rle", "dense", "torch", "runner", "cli"],
                        choices=["rle", "dense", "torch", "runner", "cli"])
    parser.add_argument("--device", default="cpu", help="device of the torch mode")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="write the timings as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = (args.height, args.width)
    pred_pool = ellipse_pool(args.pool, *size, seed=1)
    gt_pool = ellipse_pool(args.pool, *size, seed=2)
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, args.pool, size=(args.samples, 2))
    pred_rles, gt_rles = masks_to_rles(pred_pool), masks_to_rles(gt_pool)  # string counts, as in JSON
    results: dict[str, float] = {}
    if "rle" in args.modes:
        results["rle (RES+GRES)"] = time_rle(pred_rles, gt_rles, pairs, size)
    if "dense" in args.modes:
        results["dense numpy (RES+GRES)"] = time_dense(pred_pool, gt_pool, pairs, None)
    if "torch" in args.modes:
        results[f"torch {args.device} (RES+GRES)"] = time_dense(pred_pool, gt_pool, pairs, args.device)
    if "runner" in args.modes or "cli" in args.modes:
        with tempfile.TemporaryDirectory() as tmp:
            ann, pred = write_distinct_jsonl(args.samples, size, Path(tmp))
            if "runner" in args.modes:
                for task, (wall, cpu) in time_runner(ann, pred, Path(tmp)).items():
                    results[f"run_referring {task} (JSONL → report)"] = wall
                    results[f"run_referring {task} CPU time"] = cpu
            if "cli" in args.modes:
                for task, (wall, cpu) in time_cli(ann, pred, Path(tmp)).items():
                    results[f"masktok eval {task} (process)"] = wall
                    results[f"masktok eval {task} CPU time"] = cpu
    print(f"{args.samples} samples at {args.width}x{args.height}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    for name, seconds in results.items():
        print(f"  {name:38s} {seconds:7.2f} s   {args.samples / seconds:9.0f} samples/s")
    if args.out is not None:
        args.out.write_text(json.dumps({"samples": args.samples, "size": list(size), "seconds": results}, indent=2))


if __name__ == "__main__":
    main()
