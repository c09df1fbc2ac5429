"""Box-first HiMTok decode / encode paths: masks per second, and the host memory of a big RLE decode.

Rows (median of ``--repeats`` timed calls after a warm-up, device synchronised):

- ``model decode``: the network alone, shape codes on the device → frame probabilities;
- ``decode → device`` / ``→ host`` / ``→ RLE``: the public ``HiMTok.decode`` with
  ``output="device"`` (bool masks left on the device), ``"host"`` (CPU bool tensor) or ``"rle"``
  (COCO RLE, runs found on the device);
- ``previous decode``: the previous public decode path, kept here for comparison: frame logits
  copied to the CPU, then the full-frame paste (``box_frame.paste_box_frames``) there;
- ``model encode`` / ``encode from host`` / ``previous encode``: the network alone on frames
  already on the device; the public ``HiMTok.encode`` of host bool masks; the previous path
  (whole masks to the device, tight boxes, float affine resampling of the whole canvas).

Masks are random ellipses (radii 6 px to a third of the side: boxes larger than COCO's typical
ones, so the paste does more work than usual); codes are those the model gives them, repeated.
``--memory`` decodes ``--memory-masks`` masks of a ``--memory-size`` image to RLE in a fresh
process and prints its peak resident memory (``VmHWM``) before and after.

    python benchmarks/himtok_decode_paths.py --device cuda --masks 8192 --out gpu.json
    python benchmarks/himtok_decode_paths.py --device cpu --masks 256 --memory --out cpu.json

``--tokenizer DIR`` times a trained folder, ``--config NAME`` a random model of that config
(default: the shipped default tokenizer; speed does not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from bench_common import ellipse_masks, log, median_seconds

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def load_tokenizer(args: argparse.Namespace, device: torch.device):
    from masktok import load_default
    from masktok.tokenizers.himtok import HiMTok

    dtype = DTYPES[args.dtype] if args.dtype else None
    if args.tokenizer:
        return HiMTok.from_pretrained(args.tokenizer, device=device, dtype=dtype)
    if args.config:
        return HiMTok.from_config(args.config, device=device, dtype=dtype, seed=0)
    return load_default(device=device, dtype=dtype)


def previous_decode(tok, codes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The earlier public decode: frame logits to the host, then the full-frame paste there."""
    from masktok.tokenizers.himtok.box_frame import codes_to_box, paste_box_frames

    skip = tok.config.box_codes
    logits = torch.cat([tok.model.decode_codes(codes[i:i + 256, skip:].to(tok.device))[:, 0].float().cpu()
                        for i in range(0, codes.shape[0], 256)])
    boxes = codes_to_box(codes[:, :skip], torch.tensor(size).expand(codes.shape[0], 2), tok.config.codebook_size)
    return paste_box_frames(torch.sigmoid(logits), boxes, size) > 0.5


def previous_encode(tok, masks: np.ndarray) -> torch.Tensor:
    """The earlier public encode: all masks to the device, then a float affine crop of each."""
    from masktok.masks.augment import apply_augment, identity_params
    from masktok.tokenizers.himtok.box_frame import box_to_codes, tight_boxes

    binary = torch.from_numpy(masks).to(tok.device)
    boxes = tight_boxes(binary)
    sizes = torch.tensor(binary.shape[1:], device=tok.device).expand(binary.shape[0], 2)
    codes = box_to_codes(boxes, sizes, tok.config.codebook_size)
    params = identity_params(sizes)
    params.window = boxes
    frames = apply_augment(binary, params, tok.config.image_size).to(tok.dtype)
    out = [tok.model.encode(frames[i:i + 256]).codes for i in range(0, frames.shape[0], 256)]
    return torch.cat([codes, torch.cat(out)], dim=1).cpu()


def bench(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    tok = load_tokenizer(args, device)
    height, width = args.height, args.width
    rng = np.random.default_rng(0)
    unique = ellipse_masks(rng, args.unique_masks, height, width)
    with torch.inference_mode():
        unique_codes = tok.encode(None, unique)
    codes = unique_codes[torch.arange(args.masks) % unique_codes.shape[0]]
    encode_masks = unique[np.arange(args.encode_masks) % unique.shape[0]]
    skip = tok.config.box_codes
    shape_codes = codes[:, skip:].to(device)
    frames = torch.rand(args.encode_masks, tok.config.in_channels, tok.config.image_size, tok.config.image_size,
                        device=device).round().to(tok.dtype)
    batch = 256 if device.type == "cpu" else 2048
    size = (height, width)
    rows = []

    def model_decode() -> None:
        for i in range(0, shape_codes.shape[0], batch):
            torch.sigmoid(tok.model.decode_codes(shape_codes[i:i + batch]).float())

    def model_encode() -> None:
        for i in range(0, frames.shape[0], batch):
            tok.model.encode(frames[i:i + batch])

    cases = [("model decode", args.masks, model_decode),
             ("decode → device", args.masks, lambda: tok.decode(None, codes, size=size, output="device")),
             ("decode → host", args.masks, lambda: tok.decode(None, codes, size=size, output="host")),
             ("decode → RLE", args.masks, lambda: tok.decode(None, codes, size=size, output="rle"))]
    if args.previous:
        count = min(args.masks, args.previous_masks)
        cases.append(("previous decode", count, lambda: previous_decode(tok, codes[:count], size)))
    cases += [("model encode", args.encode_masks, model_encode),
              ("encode from host", args.encode_masks, lambda: tok.encode(None, encode_masks))]
    if args.previous:
        count = min(args.encode_masks, args.previous_masks)
        cases.append(("previous encode", count, lambda: previous_encode(tok, encode_masks[:count])))
    with torch.inference_mode():
        check = tok.decode(None, codes[:64], size=size, output="host")
        assert torch.equal(check, tok.decode(None, codes[:64], size=size, output="device").cpu())
        if args.previous:
            reference = previous_decode(tok, codes[:64], size)
            log(f"pixels differing from the previous full-frame paste: {int((reference != check).sum())} "
                f"of {check.numel()}")
        for name, count, fn in cases:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds = median_seconds(fn, device, args.repeats)
            row = {"path": name, "masks": count, "seconds": seconds, "masks_per_s": count / seconds}
            if device.type == "cuda":
                row["peak_device_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
            rows.append(row)
            log(f"{name:>18}: {count / seconds:>12,.0f} masks/s  ({count} masks, {seconds * 1e3:.1f} ms)")
    model_rate = rows[0]["masks_per_s"]
    for row in rows:
        row["share_of_model_decode"] = row["masks_per_s"] / model_rate if "decode" in row["path"] else None
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
           else f"cpu ({torch.get_num_threads()} threads)", "dtype": str(tok.dtype), "size": [height, width],
           "tokenizer": str(args.tokenizer or args.config or "default"), "config": tok.config.name}
    return {"env": env, "rows": rows}


MEMORY_CHILD = r"""
import json, sys, torch
from masktok import load_default
from masktok.tokenizers.himtok import HiMTok
spec = json.loads(sys.argv[1])
def peak_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
device = torch.device(spec["device"])
dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(spec["dtype"])
if spec["tokenizer"]:
    tok = HiMTok.from_pretrained(spec["tokenizer"], device=device, dtype=dtype)
elif spec["config"]:
    tok = HiMTok.from_config(spec["config"], device=device, dtype=dtype, seed=0)
else:
    tok = load_default(device=device, dtype=dtype)
height, width = spec["size"]
n = spec["masks"]
gen = torch.Generator().manual_seed(0)
sides = torch.rand(n, 2, generator=gen) * 0.3 + 0.005          # box sides: 0.5 % to 30.5 % of the image
x0 = torch.rand(n, generator=gen) * (1 - sides[:, 0])
y0 = torch.rand(n, generator=gen) * (1 - sides[:, 1])
levels = tok.config.codebook_size - 1
box = torch.stack([x0, y0, x0 + sides[:, 0], y0 + sides[:, 1]], 1).mul(levels).round().long()
shape = torch.randint(0, tok.config.codebook_size, (n, tok.config.latent_codes), generator=gen)
codes = torch.cat([box, shape], 1)
with torch.inference_mode():
    tok.decode(None, codes[:8], size=(height, width), output="rle")
    before = peak_kib()
    rles = tok.decode(None, codes, size=(height, width), output="rle")
    after = peak_kib()
out = {"masks": n, "size": [height, width], "peak_rss_before_mib": before / 1024, "peak_rss_after_mib": after / 1024,
       "peak_rss_increase_mib": (after - before) / 1024, "dense_bool_gib": n * height * width / 2 ** 30,
       "rle_bytes": sum(len(r["counts"]) for r in rles)}
if device.type == "cuda":
    out["peak_device_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
print("MEMORY " + json.dumps(out))
"""


def memory_check(args: argparse.Namespace) -> dict:
    """Run the RLE memory check in a fresh process (only torch and masktok imported)."""
    spec = {"device": args.device, "dtype": args.dtype, "tokenizer": args.tokenizer, "config": args.config,
            "size": list(args.memory_size), "masks": args.memory_masks}
    done = subprocess.run([sys.executable, "-c", MEMORY_CHILD, json.dumps(spec)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory check failed:\n{done.stderr[-3000:]}")
    line = [l for l in done.stdout.splitlines() if l.startswith("MEMORY ")][-1]
    return json.loads(line[len("MEMORY "):])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--config", default=None)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--masks", type=int, default=8192, help="masks per decode call")
    parser.add_argument("--encode-masks", type=int, default=2048, help="host masks per encode call")
    parser.add_argument("--unique-masks", type=int, default=256)
    parser.add_argument("--previous", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the previous decode / encode paths")
    parser.add_argument("--previous-masks", type=int, default=1024, help="masks per call of the previous paths")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory", action="store_true", help="also run the RLE memory check")
    parser.add_argument("--memory-masks", type=int, default=1000)
    parser.add_argument("--memory-size", type=int, nargs=2, default=[3000, 4000], metavar=("H", "W"))
    parser.add_argument("--out", default=None)
    return parser.parse_args()


def markdown(result: dict) -> str:
    lines = ["| path | masks per call | masks/s | share of model decode |", "|---|---|---|---|"]
    for row in result["rows"]:
        share = row["share_of_model_decode"]
        lines.append(f"| {row['path']} | {row['masks']} | {row['masks_per_s']:,.0f} | "
                     f"{'' if share is None else f'{100 * share:.0f} %'} |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    result = bench(args)
    log(json.dumps(result["env"]))
    log(markdown(result))
    if args.memory:
        result["memory"] = memory_check(args)
        mem = result["memory"]
        log(f"RLE decode of {mem['masks']} masks at {mem['size'][0]}×{mem['size'][1]}: peak resident memory "
            f"{mem['peak_rss_before_mib']:.0f} → {mem['peak_rss_after_mib']:.0f} MiB "
            f"(+{mem['peak_rss_increase_mib']:.0f} MiB; dense bool masks would take {mem['dense_bool_gib']:.1f} GiB)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
