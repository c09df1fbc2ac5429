"""The DDP tokenizer-training half of ``multi_gpu_scaling.py``: one global batch split over N ranks.

Each run is ``torchrun --nproc-per-node N -m masktok train tokenizer …`` with the per-process batch
``global / N`` and one metrics row per step (``metrics.csv``: the loss averaged over ranks and the
step time). Ranks draw different masks (the data stream is seeded per rank), so curves from
different N agree statistically, not bit for bit: the comparison is on curves smoothed over
``SMOOTH`` steps.
"""

from __future__ import annotations

import csv
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable

SMOOTH = 10


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    with (run_dir / "metrics.csv").open() as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def smoothed(values: list[float], window: int = SMOOTH) -> list[float]:
    return [sum(values[max(0, i - window + 1):i + 1]) / len(values[max(0, i - window + 1):i + 1])
            for i in range(len(values))]


def train_run(family: str, nproc: int, global_batch: int, steps: int, run_dir: Path, model: str,
              device: str, job_env: Callable[[str], dict], torchrun: Callable[[int, list[str]], list[str]],
              data: str | None = None, masks_per_image: int = 4) -> dict:
    """One run: ``global_batch`` masks (HiMTok, synthetic) or images (SAMTok, from ``data``) per
    step, split over ``nproc`` processes."""
    if global_batch % nproc:
        raise ValueError(f"global batch {global_batch} does not split over {nproc} processes")
    per_rank = global_batch // nproc
    args = ["train", "tokenizer", "--family", family, "--model", model, "--batch-size", str(per_rank),
            "--steps", str(steps), "--log-every", "1", "--checkpoint-every", "0", "--run-dir", str(run_dir),
            "--no-progress", "--device", device, "--seed", "0"]
    if family == "himtok":
        args += ["--synthetic-fraction", "1.0"]
    else:
        args += ["--masks-per-image", str(masks_per_image), "--data", data]
    start = time.perf_counter()
    done = subprocess.run(torchrun(nproc, args), env=job_env(uuid.uuid4().hex), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"train tokenizer ({family}, N={nproc}) failed:\n{(done.stdout + done.stderr)[-3000:]}")
    rows = read_metrics(run_dir)
    losses = [r["loss"] for r in rows if "loss" in r]
    times = [r["step_time_s"] for r in rows if "step_time_s" in r]
    steady = times[len(times) // 4:] or times  # the first quarter holds compilation and warm-up
    step_s = sorted(steady)[len(steady) // 2]
    masks_per_step = global_batch * (masks_per_image if family == "samtok" else 1)
    return {"nproc": nproc, "per_rank_batch": per_rank, "step_ms": 1000 * step_s,
            "masks_per_s": masks_per_step / step_s, "masks_per_s_per_gpu": masks_per_step / step_s / nproc,
            "loss": losses, "wall_seconds": wall}


def training_scaling(args, counts: list[int], folder: Path, job_env, torchrun) -> dict:
    """Both families on every N of ``counts`` → per family, per N: rates, efficiency and the loss
    curve's largest relative difference from N = 1 (smoothed)."""
    from bench_common import log

    from tokenize_dataset_throughput import make_dataset

    device = "cuda" if args.device == "cuda" else "cpu"
    annotations, _, _ = make_dataset(folder / "data", 64, 6, args.height, args.width, seed=1)
    data = f"coco:{annotations},{folder / 'data' / 'images'}"
    models = {"himtok": "masktok-s",
              "samtok": "tiny-test" if args.samtok_train_size == "test" else args.samtok_train_size}
    out: dict = {}
    for family, model in models.items():
        runs: dict = {}
        for n in counts:
            global_batch = args.train_global_batch if family == "himtok" else args.train_global_images
            run = train_run(family, n, global_batch, args.train_steps, folder / f"{family}_{n}", model, device,
                            job_env, torchrun, data=data)
            ref = runs.get(1, run)
            a, b = smoothed(ref["loss"]), smoothed(run["loss"])
            half = len(a) // 2
            run["loss_max_rel_diff"] = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a[half:], b[half:]))
            run["efficiency"] = run["masks_per_s_per_gpu"] / ref["masks_per_s_per_gpu"]
            runs[n] = run
            log(f"train {family} N={n}: {run['step_ms']:.1f} ms/step, {run['masks_per_s']:,.0f} masks/s "
                f"({run['masks_per_s_per_gpu']:,.0f} per GPU, efficiency {100 * run['efficiency']:.1f} %); "
                f"smoothed loss within {100 * run['loss_max_rel_diff']:.1f} % of N=1 over the second half")
        out[family] = {str(k): v for k, v in runs.items()}
    return out


def plot_losses(train: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(train), figsize=(5 * len(train), 3.5), squeeze=False)
    for ax, (family, runs) in zip(axes[0], train.items()):
        for n, run in runs.items():
            ax.plot(smoothed(run["loss"]), label=f"N={n} ({run['per_rank_batch']}/rank)")
        ax.set_title(f"{family}: loss at the same global batch (smoothed over {SMOOTH} steps)")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
