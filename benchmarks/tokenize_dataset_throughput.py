"""Dataset tokenization throughput (masks/s) with random SAMTok weights, next to the per-mask pattern.

A synthetic COCO-style dataset is written to a temporary folder (JPEG images, compressed-RLE
instance masks, ~``--masks-per-image`` ellipses of varied size per image), then tokenized:

- ``pipeline``: :func:`masktok.data.tokenize.pipeline.iter_encoded` — DataLoader workers decode the
  JPEGs and RLEs, ``SAMTok.encode_stream`` reads the loaded images as a stream in image-encoder
  passes of ``--images-per-batch`` images (one encoding per image, all its masks batched) — plus
  formatting every mask's words: everything ``masktok tokenize-dataset`` does except writing
  Parquet. Reported over the whole pass (worker start-up included) and after the first
  ``--steady-after`` images.
- ``end to end``: :func:`tokenize_dataset` itself, Parquet files and usage summary included (only
  when pyarrow is installed).
- ``tokenizer alone``: ``SAMTok.encode_batch`` over images and masks already in memory.
- ``per-mask re-encoding``: the reference pattern, the image encoded once per mask (the same bf16
  model, image batches of ``--images-per-batch`` copies), on ``--reference-images`` images.

Each is measured with the eager networks (image encoder replayed as a CUDA graph) and, with
``--compile``, again with ``SAMTok(compile=True)`` (compiled image encoder + CUDA graph, compiled
mask side), whose codes are compared with the eager ones.

Example (GPU)::

    python benchmarks/tokenize_dataset_throughput.py --device cuda --size large --out result.json

CPU smoke run: ``python benchmarks/tokenize_dataset_throughput.py --device cpu --size test
--images 6 --masks-per-image 3 --reference-images 1 --workers 1``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench_common import ellipse_masks, log, random_samtok_model, sync
from masktok.data.tokenize.shards import DatasetSource, plan_shards
from masktok.data.tokenize.pipeline import TokenizeConfig, iter_encoded, tokenize_dataset
from masktok.masks import mask_to_rle
from masktok.tokenizers.samtok import SAMTok
from masktok.words import format_mask_words


CODES: dict[str, torch.Tensor] = {}  # the first (eager) tokenizer-alone codes, to compare against


def make_dataset(folder: Path, images: int, masks_per_image: int, height: int, width: int,
                 distinct: int = 16, seed: int = 0) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    """A COCO instances JSON + JPEGs in ``folder``; ``distinct`` different images are cycled
    (every entry is still decoded and encoded in full). Returns the JSON path and the distinct
    images and mask stacks."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    pool_images, pool_masks, pool_rles = [], [], []
    for k in range(min(distinct, images)):
        base = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(base).resize((width, height), Image.BICUBIC))
        Image.fromarray(image).save(folder / "images" / f"{k:06d}.jpg", quality=90)
        stack = ellipse_masks(rng, max(1, int(rng.poisson(masks_per_image))), height, width)
        pool_images.append(np.asarray(Image.open(folder / "images" / f"{k:06d}.jpg").convert("RGB")))
        pool_masks.append(stack)
        pool_rles.append([mask_to_rle(m) for m in stack])
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    for i in range(images):
        k = i % len(pool_rles)
        coco["images"].append({"id": i + 1, "file_name": f"{k:06d}.jpg", "height": height, "width": width})
        for rle in pool_rles[k]:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": i + 1,
                                        "category_id": 1, "segmentation": rle, "iscrowd": 0})
    path = folder / "instances.json"
    path.write_text(json.dumps(coco))
    return path, pool_images, pool_masks


def run_pipeline(source: DatasetSource, tok: SAMTok, config: TokenizeConfig, limit: int | None,
                 device: torch.device, steady_after: int = 0) -> dict:
    """Seconds, images and masks of one pass of iter_encoded (+ words) over the source; with
    ``steady_after``, also the rate after that many images (loader start-up and first batches
    excluded)."""
    plan = plan_shards(source, config.images_per_shard)
    shards = plan.shards if limit is None else plan.shards[:limit]
    sync(device)
    start = time.perf_counter()
    images = masks = 0
    mark = None
    for item, codes in iter_encoded(plan, shards, tok, config):
        images += 1
        if codes is not None:
            masks += codes.shape[0]
            for row in codes.tolist():
                format_mask_words(row, tok.vocabulary)
        if images == steady_after:
            mark = (time.perf_counter(), images, masks)
    sync(device)
    seconds = time.perf_counter() - start
    out = {"images": images, "masks": masks, "seconds": seconds, "masks_per_s": masks / seconds,
           "images_per_s": images / seconds}
    if mark is not None and images > mark[1]:
        steady = time.perf_counter() - mark[0]
        out["steady_masks_per_s"] = (masks - mark[2]) / steady
        out["steady_images_per_s"] = (images - mark[1]) / steady
    return out


def measure(tok: SAMTok, source: DatasetSource, config: TokenizeConfig, pool_images, pool_masks,
            args, device: torch.device, results: dict, suffix: str) -> None:
    """Pipeline, end to end (when pyarrow is installed) and tokenizer alone for one encoder."""
    run_pipeline(source, tok, config, limit=1, device=device)  # warm-up: one shard
    run = run_pipeline(source, tok, config, limit=None, device=device, steady_after=args.steady_after)
    results["pipeline" + suffix] = run
    tag = f"[{suffix.strip('_')}]"
    log(f"pipeline {tag} (loader + tokenizer + words): {run['images']} images, {run['masks']} masks in "
        f"{run['seconds']:.2f} s → {run['masks_per_s']:,.0f} masks/s, {run['images_per_s']:.1f} images/s; "
        f"after the first {args.steady_after} images {run.get('steady_masks_per_s', float('nan')):,.0f} masks/s")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        log("end to end: skipped (pyarrow not installed)")
    else:
        sync(device)
        start = time.perf_counter()
        report = tokenize_dataset(source, tok, replace(config, output_dir=config.output_dir / suffix.strip("_")))
        sync(device)
        seconds = time.perf_counter() - start
        results["end_to_end" + suffix] = {"masks": report.masks, "seconds": seconds,
                                          "masks_per_s": report.masks / seconds}
        log(f"end to end {tag} (+ Parquet, usage): {report.masks} masks in {seconds:.2f} s → "
            f"{report.masks / seconds:,.0f} masks/s")
    images_mem = [pool_images[i % len(pool_images)] for i in range(args.images)]
    masks_mem = [pool_masks[i % len(pool_masks)] for i in range(args.images)]
    sync(device)
    start = time.perf_counter()
    codes = tok.encode_batch(images_mem, masks_mem, batch_size=args.images_per_batch)
    sync(device)
    seconds = time.perf_counter() - start
    total = sum(m.shape[0] for m in masks_mem)
    results["tokenizer_alone" + suffix] = {"masks": total, "seconds": seconds, "masks_per_s": total / seconds}
    log(f"tokenizer alone {tag} (in memory): {total} masks in {seconds:.2f} s → {total / seconds:,.0f} masks/s")
    codes = torch.cat(codes)
    if "eager_codes" in CODES:
        same = codes.eq(CODES["eager_codes"]).all(dim=1).float().mean().item()
        level0 = codes[:, 0].eq(CODES["eager_codes"][:, 0]).float().mean().item()
        results["codes_equal_to_eager" + suffix] = {"both_levels": same, "level_0": level0}
        log(f"codes {tag} equal to the eager encoder's: {100 * same:.1f} % (level 0: {100 * level0:.1f} %)")
    else:
        CODES["eager_codes"] = codes


def per_mask_reencoding(tok: SAMTok, pool_images, pool_masks, args, device, results: dict) -> None:
    """The image encoded once per mask, on ``--reference-images`` images."""
    k = min(args.reference_images, len(pool_images))

    def run() -> list:
        return [tok.encode_batch([pool_images[i]] * len(pool_masks[i]), [m[None] for m in pool_masks[i]],
                                 batch_size=args.images_per_batch) for i in range(k)]

    run()  # warm-up
    sync(device)
    start = time.perf_counter()
    ref_codes = run()
    sync(device)
    seconds = time.perf_counter() - start
    batched = tok.encode_batch(pool_images[:k], pool_masks[:k], batch_size=args.images_per_batch)
    total = sum(pool_masks[i].shape[0] for i in range(k))
    same = float(np.mean([torch.cat(ref_codes[i]).eq(batched[i]).all(dim=1).float().mean().item()
                          for i in range(k)]))
    results["per_mask_reencoding"] = {"masks": total, "seconds": seconds, "masks_per_s": total / seconds,
                                      "codes_equal_fraction": same}
    log(f"per-mask re-encoding: {total} masks in {seconds:.2f} s → {total / seconds:,.1f} masks/s "
        f"(same codes as batched: {same:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="large", help="Hiera size (tiny, small, base_plus, large) or 'test'")
    parser.add_argument("--images", type=int, default=960)
    parser.add_argument("--steady-after", type=int, default=96,
                        help="also report the pipeline's rate after this many images")
    parser.add_argument("--masks-per-image", type=int, default=20, help="mean (Poisson) masks per image")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--images-per-batch", type=int, default=8)
    parser.add_argument("--prefetch-images", type=int, default=96)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--images-per-shard", type=int, default=240,
                        help="images per Parquet file (the warm-up pass covers one shard)")
    parser.add_argument("--reference-images", type=int, default=4)
    parser.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
                        help="replay the image encoder as a CUDA graph for full batches")
    parser.add_argument("--compile", action="store_true",
                        help="then everything again with a torch.compile'd encoder (+ CUDA graph)")
    parser.add_argument("--out", default=None, help="write the results as JSON here (after each section)")
    args = parser.parse_args()

    device = torch.device(args.device)
    model = random_samtok_model(args.size, device)
    tok = SAMTok(model=model, device=device)
    if args.cuda_graphs and device.type == "cuda":
        tok.capture_image_encoder([args.images_per_batch])
    results: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                     "torch": torch.__version__, "size": args.size, "dtype": str(tok.dtype),
                     "args": vars(args)}
    log(f"device {results['device']}, torch {torch.__version__}, Hiera {args.size}, {tok.dtype}")

    def section(name: str, fn) -> None:
        start = time.perf_counter()
        try:
            fn()
        except Exception as err:  # report and go on: one failing section must not hide the others
            results.setdefault("errors", {})[name] = f"{type(err).__name__}: {err}"
            log(f"section {name} failed: {type(err).__name__}: {err}")
        log(f"[{name} took {time.perf_counter() - start:.1f} s]")
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path, pool_images, pool_masks = make_dataset(folder / "data", args.images, args.masks_per_image,
                                                     args.height, args.width)
        source = DatasetSource("coco", annotations=path, images=folder / "data" / "images")
        config = TokenizeConfig(output_dir=folder / "out", images_per_shard=args.images_per_shard,
                                images_per_batch=args.images_per_batch,
                                prefetch_images=args.prefetch_images, num_workers=args.workers,
                                progress=False)
        section("eager", lambda: measure(tok, source, config, pool_images, pool_masks, args, device,
                                         results, "_eager"))
        section("per_mask", lambda: per_mask_reencoding(tok, pool_images, pool_masks, args, device, results))
        if args.compile and device.type == "cuda":
            def compiled() -> None:
                start = time.perf_counter()
                ctok = SAMTok(model=model, device=device, compile=True)
                ctok.capture_image_encoder([args.images_per_batch])
                results["compile_seconds"] = time.perf_counter() - start
                log(f"compile + capture: {results['compile_seconds']:.0f} s")
                measure(ctok, source, config, pool_images, pool_masks, args, device, results, "_compiled")
            section("compiled", compiled)
    best = max((v["masks_per_s"] for k, v in results.items() if k.startswith("pipeline")), default=None)
    if best is not None and "per_mask_reencoding" in results:
        results["best_pipeline_over_per_mask"] = best / results["per_mask_reencoding"]["masks_per_s"]
        log(f"best pipeline / per-mask: {results['best_pipeline_over_per_mask']:.1f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
