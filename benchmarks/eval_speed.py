"""RES / GRES evaluation speed: N samples at H×W through masktok.eval.

Masks are random ellipses (a pool of distinct masks, paired at random per sample). Modes:

* ``rle``    — predictions and ground truth as COCO RLE dicts with string counts (what prediction
               files and annotation readers hold): validation, union of each answer's masks,
               I/U in run-length space, RES and GRES metrics;
* ``dense``  — (N, H, W) bool numpy batches of 500 (I/U per mask, cache-sized);
* ``torch``  — the same batches as torch tensors already on ``--device`` (where a tokenizer decoding
               there leaves them), I/U and accumulation on that device;
* ``runner`` — ``masktok eval res`` and ``gres`` end to end from JSONL files on disk (JSON parsing,
               reports, 5 worst-case overlays), i.e. ``run_referring``.

Only the evaluation is timed (making the masks is not). Example::

    python benchmarks/eval_speed.py --samples 10000 --height 480 --width 640 --modes rle dense torch runner
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from masktok.eval.gres import GRESAccumulator
from masktok.masks.iou import coco_rle, union_rle
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
    pred_u = [union_rle([coco_rle(m) for m in ms], size) for ms in samples_pred]
    gt_u = [union_rle([coco_rle(m) for m in ms], size) for ms in samples_gt]
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


def time_runner(pred_rles, gt_rles, pairs, size, workdir: Path) -> dict[str, float]:
    def plain(rle):
        return {"size": rle["size"], "counts": rle["counts"]}

    ann = workdir / "annotations.jsonl"
    pred = workdir / "predictions.jsonl"
    with ann.open("w") as fa, pred.open("w") as fp:
        for k, (i, j) in enumerate(pairs):
            gt = gt_rles[j]
            fa.write(json.dumps({"id": k, "height": size[0], "width": size[1],
                                 "masks": [plain(gt)] if k % 16 else []}) + "\n")
            fp.write(json.dumps({"id": k, "masks": [plain(pred_rles[i])]}) + "\n")
    out = {}
    for task in ("res", "gres"):
        start = time.perf_counter()
        run_referring(task, pred, ann, workdir / task)
        out[task] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--pool", type=int, default=256, help="distinct masks per side")
    parser.add_argument("--modes", nargs="+", default=["rle", "dense", "torch", "runner"],
                        choices=["rle", "dense", "torch", "runner"])
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
    if "runner" in args.modes:
        with tempfile.TemporaryDirectory() as tmp:
            for task, seconds in time_runner(pred_rles, gt_rles, pairs, size, Path(tmp)).items():
                results[f"masktok eval {task} (JSONL → report)"] = seconds
    print(f"{args.samples} samples at {args.width}x{args.height}, torch threads {torch.get_num_threads()}")
    for name, seconds in results.items():
        print(f"  {name:38s} {seconds:7.2f} s   {args.samples / seconds:9.0f} samples/s")
    if args.out is not None:
        args.out.write_text(json.dumps({"samples": args.samples, "size": list(size), "seconds": results}, indent=2))


if __name__ == "__main__":
    main()
