"""Scaling over GPUs: ``masktok tokenize-dataset`` split over torchrun ranks, and DDP tokenizer training.

Everything runs through the public commands, launched the way users launch them::

    torchrun --standalone --nproc-per-node N -m masktok tokenize-dataset coco --tokenizer DIR …
    torchrun --standalone --nproc-per-node N -m masktok train tokenizer --family himtok …

For each N in ``--nproc`` (those above the GPUs present are left out and listed as not run):

- tokenization: masks/s of the whole job (total masks over the slowest rank's time, as each rank
  reports it), per GPU, and the per-GPU efficiency against N = 1; the output's rows compared with
  the N = 1 run (same rows, same codes and words, no duplicate annotation);
- a rank killed mid-run (SIGKILL once its first shard is on disk), then the same command again:
  finished shards are kept, the rest is done, and the output equals the N = 1 run;
- tokenizer training (HiMTok compact, SAMTok): the same global batch split over N ranks; step
  time, masks/s, per-GPU efficiency, and the loss curve against N = 1.

NVLink multicast stays off in every process started here (``NCCL_NVLS_ENABLE=0``,
``TORCH_SYMM_MEM_DISABLE_MULTICAST=1``, ``NVSHMEM_DISABLE_NVLS=1``).

GPU::

    python benchmarks/multi_gpu_scaling.py --nproc 1,2,4,8 --out scaling.json --plot scaling.png

CPU smoke run (gloo, two processes)::

    python benchmarks/multi_gpu_scaling.py --device cpu --nproc 1,2 --size test --images 12 \\
        --masks-per-image 2 --train-steps 4 \\
        --samtok-train-size test --train-global-batch 8 --train-global-images 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import log, random_samtok_model  # noqa: E402
from scaling_training import training_scaling  # noqa: E402
from tokenize_dataset_throughput import make_dataset  # noqa: E402

NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                "NVSHMEM_DISABLE_NVLS": "1"}
RANK_LINE = re.compile(r"rank (\d+)/(\d+): (\d+) shard\(s\) written, (\d+) already done, (\d+) redone; "
                       r"(\d+) images, (\d+) masks in ([\d.]+) s")


def job_env(tag: str) -> dict[str, str]:
    """The environment of every launched job: multicast off, wide console lines, a tag to find its
    processes by."""
    env = dict(os.environ, **NO_MULTICAST, COLUMNS="400", PYTHONUNBUFFERED="1", MASKTOK_SCALING_JOB=tag)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def torchrun(nproc: int, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "masktok", *args]


def parse_ranks(text: str, nproc: int) -> list[dict]:
    """The per-rank summary lines of ``tokenize-dataset``; every rank must have printed one."""
    ranks = {}
    for m in RANK_LINE.finditer(text):
        rank, world, written, done, redone, images, masks, seconds = m.groups()
        ranks[int(rank)] = {"rank": int(rank), "world_size": int(world), "shards_written": int(written),
                            "shards_skipped": int(done), "shards_redone": int(redone),
                            "images": int(images), "masks": int(masks), "seconds": float(seconds)}
    if sorted(ranks) != list(range(nproc)):
        raise RuntimeError(f"expected a summary line from ranks 0..{nproc - 1}, got {sorted(ranks)}:\n{text[-3000:]}")
    return [ranks[r] for r in range(nproc)]


def tokenize_run(nproc: int, args: list[str], tag: str) -> dict:
    """One ``tokenize-dataset`` job over ``nproc`` ranks → per-rank summaries and the job's rate."""
    start = time.perf_counter()
    done = subprocess.run(torchrun(nproc, args), env=job_env(tag), capture_output=True, text=True)
    wall = time.perf_counter() - start
    text = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"tokenize-dataset on {nproc} process(es) failed ({done.returncode}):\n{text[-3000:]}")
    ranks = parse_ranks(text, nproc)
    masks = sum(r["masks"] for r in ranks)
    seconds = max(r["seconds"] for r in ranks)
    return {"nproc": nproc, "ranks": ranks, "masks": masks, "seconds": seconds, "wall_seconds": wall,
            "masks_per_s": masks / seconds, "masks_per_s_per_gpu": masks / seconds / nproc}


def read_rows(folder: Path) -> list[tuple]:
    """Every row of a finished output (annotation id, image id, codes, words), sorted; a duplicate
    annotation is an error."""
    import pyarrow.parquet as pq

    rows = []
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path, columns=["image_id", "annotation_id", "codes", "words"]).to_pydict()
        rows += [(a, i, tuple(c), w) for i, a, c, w in zip(table["image_id"], table["annotation_id"],
                                                          table["codes"], table["words"])]
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"{folder}: {len(ids) - len(set(ids))} duplicate annotation rows")
    return sorted(rows)


def job_processes(tag: str) -> dict[int, int]:
    """pid of each rank process of the job tagged ``tag`` (read from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = dict(kv.split("=", 1) for kv in (entry / "environ").read_bytes().decode(errors="replace")
                       .split("\0") if "=" in kv)
        except OSError:
            continue
        if env.get("MASKTOK_SCALING_JOB") == tag and "RANK" in env and "LOCAL_RANK" in env:
            found[int(env["RANK"])] = int(entry.name)
    return found


def kill_and_resume(nproc: int, args: list[str], out: Path, reference: list[tuple], timeout: float = 600) -> dict:
    """Start a job, SIGKILL its last rank once a first shard is finished, run it again → what the
    second run kept and redid, and whether the output equals ``reference``."""
    from masktok.data.tokenize.shards import shard_is_complete

    tag = uuid.uuid4().hex
    proc = subprocess.Popen(torchrun(nproc, args), env=job_env(tag), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    victim, deadline = nproc - 1, time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if any(shard_is_complete(p) for p in out.glob("*.parquet")):
            pids = job_processes(tag)
            if victim in pids:
                os.kill(pids[victim], signal.SIGKILL)
                break
        time.sleep(0.05)
    first_output = proc.communicate()[0]
    if proc.returncode == 0:
        raise RuntimeError("the job finished before a rank could be killed: give it more images")
    finished_before = sum(shard_is_complete(p) for p in out.glob("*.parquet"))
    second = tokenize_run(nproc, args, uuid.uuid4().hex)
    rows = read_rows(out)
    return {"nproc": nproc, "killed_rank": victim, "first_run_exit_code": proc.returncode,
            "shards_finished_before_resume": finished_before,
            "resume_kept": sum(r["shards_skipped"] for r in second["ranks"]),
            "resume_wrote": sum(r["shards_written"] for r in second["ranks"]),
            "resume_redid_damaged": sum(r["shards_redone"] for r in second["ranks"]),
            "output_equals_single_gpu": rows == reference, "rows": len(rows),
            "first_run_tail": first_output[-600:]}


def tokenize_scaling(args: argparse.Namespace, counts: list[int], folder: Path, results: dict) -> None:
    """Tokenization on each N of ``counts``, identity with N = 1, then the kill-and-resume run."""
    model_dir = folder / "samtok"
    from masktok.tokenizers.samtok import SAMTok

    SAMTok(model=random_samtok_model(args.size, torch.device("cpu")), device="cpu").save_pretrained(model_dir)
    data = folder / "data"
    annotations, _, _ = make_dataset(data, args.images, args.masks_per_image, args.height, args.width)
    common = ["tokenize-dataset", "coco", "--tokenizer", str(model_dir), "--annotations", str(annotations),
              "--images", str(data / "images"), "--images-per-shard", str(args.images_per_shard),
              "--workers", str(args.workers), "--images-per-batch", str(args.images_per_batch),
              "--no-progress", "--device", "cuda" if args.device == "cuda" else "cpu"]
    if args.device == "cuda" and not args.cuda_graphs:
        common.append("--no-cuda-graphs")
    runs, reference = {}, None
    for n in counts:
        out = folder / f"out_{n}"
        run = tokenize_run(n, [*common, "--out", str(out)], uuid.uuid4().hex)
        rows = read_rows(out)
        reference = rows if reference is None else reference
        run["rows"], run["rows_equal_single_gpu"] = len(rows), rows == reference
        run["efficiency"] = run["masks_per_s_per_gpu"] / runs[1]["masks_per_s_per_gpu"] if 1 in runs else 1.0
        runs[n] = run
        log(f"tokenize N={n}: {run['masks']} masks in {run['seconds']:.1f} s (slowest rank) → "
            f"{run['masks_per_s']:,.0f} masks/s, {run['masks_per_s_per_gpu']:,.0f} per GPU, efficiency "
            f"{100 * run['efficiency']:.1f} %; rows {run['rows']}, equal to N=1: {run['rows_equal_single_gpu']}")
        results["tokenize"] = {str(k): v for k, v in runs.items()}
        save(results, args.out)
    n = counts[-1]
    out = folder / f"resume_{n}"
    resume = kill_and_resume(n, [*common, "--out", str(out)], out, reference)
    results["kill_and_resume"] = resume
    log(f"kill and resume N={n}: rank {resume['killed_rank']} killed (exit {resume['first_run_exit_code']}) "
        f"with {resume['shards_finished_before_resume']} shard(s) on disk; the second run kept "
        f"{resume['resume_kept']}, wrote {resume['resume_wrote']}; output equal to N=1: "
        f"{resume['output_equals_single_gpu']}")
    save(results, args.out)


def save(results: dict, path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps(results, indent=2))


def table(results: dict) -> str:
    lines = ["| what | N | masks/s | per GPU | efficiency | same output as N=1 |", "|---|---|---|---|---|---|"]
    for n, r in results.get("tokenize", {}).items():
        lines.append(f"| tokenize-dataset | {n} | {r['masks_per_s']:,.0f} | {r['masks_per_s_per_gpu']:,.0f} | "
                     f"{100 * r['efficiency']:.1f} % | {r['rows_equal_single_gpu']} |")
    for family, runs in results.get("train", {}).items():
        for n, r in runs.items():
            lines.append(f"| train {family} ({r['step_ms']:.1f} ms/step) | {n} | {r['masks_per_s']:,.0f} | "
                         f"{r['masks_per_s_per_gpu']:,.0f} | {100 * r['efficiency']:.1f} % | "
                         f"loss max rel. diff {r['loss_max_rel_diff']:.2e} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--nproc", default="1,2,4,8", help="process counts to run (one GPU each)")
    parser.add_argument("--size", default="large", help="SAMTok Hiera size for tokenization, or 'test'")
    parser.add_argument("--images", type=int, default=960)
    parser.add_argument("--masks-per-image", type=int, default=20)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--images-per-shard", type=int, default=40,
                        help="small shards keep the ranks balanced (the shard is the unit of work)")
    parser.add_argument("--images-per-batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4, help="loader workers per rank")
    parser.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--train-global-batch", type=int, default=256, help="HiMTok: masks per step, all ranks")
    parser.add_argument("--train-global-images", type=int, default=16, help="SAMTok: images per step, all ranks")
    parser.add_argument("--samtok-train-size", default="tiny", help="Hiera size of the SAMTok training run, or 'test'")
    parser.add_argument("--skip", default="", help="comma list of parts to leave out: tokenize, train")
    parser.add_argument("--out", default=None, help="results JSON")
    parser.add_argument("--plot", default=None, help="loss curves PNG")
    args = parser.parse_args()

    wanted = [int(n) for n in args.nproc.split(",")]
    available = torch.cuda.device_count() if args.device == "cuda" else max(wanted)
    counts = [n for n in wanted if n <= available]
    if 1 not in counts:
        raise SystemExit("N = 1 must be among the runs (it is the reference)")
    results: dict = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
                     "gpus_present": available if args.device == "cuda" else 0, "torch": torch.__version__,
                     "nproc_run": counts, "nproc_not_run": [n for n in wanted if n not in counts],
                     "environment": NO_MULTICAST, "args": vars(args)}
    log(f"{results['device']}: running N = {counts}; not run (not enough GPUs): {results['nproc_not_run']}")
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        if "tokenize" not in skip:
            tokenize_scaling(args, counts, Path(tmp) / "tokenize", results)
        if "train" not in skip:
            results["train"] = training_scaling(args, counts, Path(tmp) / "train", job_env, torchrun)
            save(results, args.out)
    print(table(results), flush=True)
    if args.plot and "train" in results:
        from scaling_training import plot_losses

        plot_losses(results["train"], args.plot)
    save(results, args.out)


if __name__ == "__main__":
    main()
