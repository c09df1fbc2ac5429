"""HiMTok encode / decode throughput (masks per second) and FLOPs per mask.

Random weights; masks are random 256×256 binary maps, codes random ids (speed does not depend on
the values). Encode = mask frame → codes; decode = 32 codes → 256×256 probabilities. Both run
on the model directly (no host transfers). Example (GPU, bf16)::

    python benchmarks/himtok_throughput.py --device cuda --dtype bf16 \
        --configs official masktok-s masktok-b --batch-sizes 1 4 16 64 256 1024 --out results.json

``--train-configs masktok-s`` also times hierarchical training steps (fp32 weights, bf16 autocast).
A CPU smoke run: ``--device cpu --dtype fp32 --configs masktok-s --batch-sizes 1 2``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from masktok.tokenizers.himtok import HierarchicalMaskLoss, HiMTokModel, get_config, sample_prefix_lengths

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def time_per_call(fn, device: torch.device, min_seconds: float, max_iters: int) -> float:
    """Median seconds per call after one warm-up call."""
    fn()
    synchronize(device)
    times: list[float] = []
    start_all = time.perf_counter()
    while len(times) < max_iters and (len(times) < 3 or time.perf_counter() - start_all < min_seconds):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
        if time.perf_counter() - start_all > 4 * min_seconds and len(times) >= 1:
            break
    times.sort()
    return times[len(times) // 2]


def bench_config(name: str, device: torch.device, dtype: torch.dtype, batch_sizes: list[int],
                 min_seconds: float, max_iters: int) -> dict:
    config = get_config(name)
    torch.manual_seed(0)
    with torch.device(device):
        model = HiMTokModel(config)
    model = model.to(dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    size, channels = config.image_size, config.in_channels

    def make_pixels(n: int) -> torch.Tensor:
        masks = (torch.rand(n, 1, size, size, device=device) > 0.5).to(dtype)
        return masks.expand(-1, channels, -1, -1)

    def make_codes(n: int) -> torch.Tensor:
        return torch.randint(0, config.codebook_size, (n, config.max_codes), device=device)

    with torch.no_grad():  # the FLOP counter's module hooks do not run under inference_mode
        one_pixels, one_codes = make_pixels(1), make_codes(1)
        encode_flops = count_flops(lambda: model.encode(one_pixels).codes)
        decode_flops = count_flops(lambda: torch.sigmoid(model.decode_codes(one_codes)))
    with torch.inference_mode():
        rows = []
        for batch in batch_sizes:
            row = {"batch": batch}
            for kind in ("encode", "decode"):
                try:
                    if kind == "encode":
                        inputs = make_pixels(batch)
                        fn = lambda: model.encode(inputs).codes  # noqa: E731
                    else:
                        inputs = make_codes(batch)
                        fn = lambda: torch.sigmoid(model.decode_codes(inputs))  # noqa: E731
                    seconds = time_per_call(fn, device, min_seconds, max_iters)
                    row[f"{kind}_masks_per_s"] = batch / seconds
                except torch.OutOfMemoryError:
                    row[f"{kind}_masks_per_s"] = None
                finally:
                    inputs = None
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
            rows.append(row)
            print(f"{name:>10} batch {batch:>5}: encode {fmt(row['encode_masks_per_s'])} masks/s, "
                  f"decode {fmt(row['decode_masks_per_s'])} masks/s", flush=True)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"config": name, "params": params, "encode_gflops_per_mask": encode_flops / 1e9,
            "decode_gflops_per_mask": decode_flops / 1e9, "rows": rows}


def bench_training(name: str, device: torch.device, batch_sizes: list[int], min_seconds: float,
                   max_iters: int) -> dict:
    """Masks per second of one hierarchical training step (full level + 3 sampled levels; fp32
    weights, bf16 autocast on CUDA, AdamW)."""
    config = get_config(name)
    torch.manual_seed(0)
    with torch.device(device):
        model = HiMTokModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = HierarchicalMaskLoss(config.num_latent_tokens)
    rows = []
    for batch in batch_sizes:
        masks = (torch.rand(batch, 1, config.image_size, config.image_size, device=device) > 0.5).float()

        def step() -> None:
            lengths = sample_prefix_lengths(batch, config.num_latent_tokens, 3, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = model.forward_train(masks, lengths)
                loss = loss_fn(out["logits"], masks, lengths)["loss"] + out["quant_loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        try:
            rows.append({"batch": batch, "train_masks_per_s": batch / time_per_call(step, device, min_seconds,
                                                                                    max_iters)})
        except torch.OutOfMemoryError:
            rows.append({"batch": batch, "train_masks_per_s": None})
        print(f"{name:>10} train batch {batch:>5}: {fmt(rows[-1]['train_masks_per_s'])} masks/s", flush=True)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    return {"config": name, "rows": rows, "peak_memory_gib": peak}


def fmt(value: float | None) -> str:
    return "OOM" if value is None else f"{value:,.0f}"


def markdown(results: list[dict], batch_sizes: list[int]) -> str:
    header = "| config | params | GFLOPs/mask enc / dec | " + " | ".join(
        f"bs {b} enc / dec" for b in batch_sizes) + " |"
    lines = [header, "|" + "---|" * (3 + len(batch_sizes))]
    for result in results:
        cells = [f"{fmt(r['encode_masks_per_s'])} / {fmt(r['decode_masks_per_s'])}" for r in result["rows"]]
        lines.append(f"| {result['config']} | {result['params'] / 1e6:.1f} M | "
                     f"{result['encode_gflops_per_mask']:.1f} / {result['decode_gflops_per_mask']:.1f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["official", "masktok-s", "masktok-b"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 16, 64, 256, 1024])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="time each point for about this long")
    parser.add_argument("--max-iters", type=int, default=50)
    parser.add_argument("--train-configs", nargs="*", default=[], help="also time training steps of these")
    parser.add_argument("--train-batch-sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
           else "cpu", "dtype": args.dtype}
    print(json.dumps(env), flush=True)
    results = [bench_config(name, device, DTYPES[args.dtype], args.batch_sizes, args.min_seconds, args.max_iters)
               for name in args.configs]
    table = markdown(results, args.batch_sizes)
    print(table)
    training = [bench_training(name, device, args.train_batch_sizes, args.min_seconds, args.max_iters)
                for name in args.train_configs]
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"env": env, "results": results, "table": table, "training": training}, handle, indent=2)


if __name__ == "__main__":
    main()
