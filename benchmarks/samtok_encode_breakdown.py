"""Where the time of ``SAMTok.encode_batch`` goes, per image-encoder batch (random weights).

For one batch of ``--images-per-batch`` images with ``--masks-per-image`` masks each (H×W host
masks), every stage of the encode path is timed on its own (median of repeats, device
synchronised), then the variants of the mask side that could make it cheaper:

- host: the mask checks of ``as_mask_batch``, the copy into pinned memory, bit-packing;
- device: upload, boxes, soft mask prompts, prompt encoder, mask encoder, quantizer, image encoder
  (CUDA graph), the whole mask side, and a ``torch.compile``d mask side (with the agreement of its
  codes with the eager ones);
- ``torch.profiler``'s top kernels over one ``encode_batch`` call (``--profile``).

Example (GPU)::

    python benchmarks/samtok_encode_breakdown.py --device cuda --size large --profile

CPU smoke run: ``python benchmarks/samtok_encode_breakdown.py --device cpu --size test
--images-per-batch 2 --masks-per-image 3 --repeats 2 --no-compile``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench_common import ellipse_masks, log, random_samtok_model, median_seconds, sync
from masktok.tokenizers.samtok import SAMTok
from masktok.tokenizers.samtok.tokenizer import _Prepared
from masktok.tokenizers.samtok.preprocess import as_mask_batch, box_prompts, mask_boxes, soft_mask_prompts

ROWS: list[tuple[str, float, str]] = []


def timed(name: str, fn: Callable[[], object], device: torch.device, repeats: int, note: str = "") -> float:
    """Median milliseconds of ``fn`` (device synchronised) after one warm-up call; recorded."""
    ms = 1000 * median_seconds(fn, device, repeats)
    ROWS.append((name, ms, note))
    log(f"{name:<48} {ms:9.2f} ms  {note}")
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="large")
    parser.add_argument("--images-per-batch", type=int, default=8)
    parser.add_argument("--masks-per-image", type=int, default=19)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time a torch.compile'd mask side")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top kernels")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()

    device = torch.device(args.device)
    model = random_samtok_model(args.size, device)
    config = model.config
    tok = SAMTok(model=model, device=device)
    batch = args.images_per_batch
    if device.type == "cuda":
        tok.capture_image_encoder([batch])
    rng = np.random.default_rng(0)
    height, width = args.height, args.width
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(batch)]
    masks = [ellipse_masks(rng, args.masks_per_image, height, width) for _ in range(batch)]
    total = batch * args.masks_per_image
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    log(f"device {name}, torch {torch.__version__}, Hiera {args.size}, {tok.dtype}; "
        f"{batch} images × {args.masks_per_image} masks of {height}×{width}")
    r = args.repeats

    # host side
    timed("host: as_mask_batch checks (all images)",
          lambda: [as_mask_batch(m, (height, width)) for m in masks], device, r)
    host = torch.from_numpy(np.concatenate(masks))
    pin = (lambda t: t.pin_memory()) if device.type == "cuda" else (lambda t: t.clone())
    timed("host: pin_memory copy", lambda: pin(host), device, r, f"{host.numel() / 2**20:.0f} MiB")
    timed("host: np.packbits (all masks)", lambda: np.packbits(np.concatenate(masks), axis=-1), device, r)

    with torch.inference_mode():
        pinned = pin(host)
        timed("device: upload bool masks (pinned)", lambda: pinned.to(device, non_blocking=True), device, r)
        up = pinned.to(device)
        packed = pin(torch.from_numpy(np.packbits(np.concatenate(masks), axis=-1)))
        timed("device: upload bit-packed masks (pinned)", lambda: packed.to(device, non_blocking=True), device, r)
        bits = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=device)
        packed_dev = packed.to(device)

        def unpack() -> torch.Tensor:
            return (packed_dev[..., None] & bits).ne(0).flatten(-2)[..., :width]

        timed("device: unpack bits", unpack, device, r)
        assert torch.equal(unpack().cpu(), host), "bit unpacking changed the masks"
        boxes_px = mask_boxes(up)
        timed("device: mask_boxes", lambda: mask_boxes(up), device, r)
        timed("device: soft_mask_prompts (chunks of 16)", lambda: soft_mask_prompts(up, config.mask_size), device, r)
        boxes = box_prompts(boxes_px, height, width, config.image_size)
        prompts = soft_mask_prompts(up, config.mask_size)
        timed("device: prompt encoder (sparse + dense, fp32)",
              lambda: model.mask_prompt_embeddings(boxes, prompts), device, r)
        pixels = torch.randn(batch, 3, config.image_size, config.image_size, device=device)
        features = tok._graphs(pixels) if tok._graphs is not None else model.image_features(pixels)
        encoder = (lambda: tok._graphs(pixels)) if tok._graphs is not None else (lambda: model.image_features(pixels))
        timed(f"device: image encoder, batch {batch}", encoder, device, r)
        index = torch.arange(batch, device=device).repeat_interleave(args.masks_per_image)
        sparse, dense = model.mask_prompt_embeddings(boxes, prompts)
        dtype = model.compute_dtype
        positional = model.dense_positional_encoding().to(dtype)
        timed("device: dense positional encoding", model.dense_positional_encoding, device, r)

        def image_side() -> torch.Tensor:
            return features.embedding[index] + dense.to(dtype)

        timed("device: features[index] + dense", image_side, device, r)
        image = image_side()
        timed("device: mask encoder transformer",
              lambda: model.mask_encoder(image, positional, sparse.to(dtype)), device, r, f"{total} masks")
        embeddings = model.mask_encoder(image, positional, sparse.to(dtype)).float()
        timed("device: quantizer", lambda: model.quantizer.quantize(embeddings, update_codebooks=False), device, r)

        def mask_side(emb: torch.Tensor, idx: torch.Tensor, bx: torch.Tensor, pr: torch.Tensor) -> torch.Tensor:
            feats = type(features)(emb, features.high_res)
            return model.quantizer.quantize(model.mask_embeddings(feats, idx, bx, pr), update_codebooks=False)[0]

        eager_ms = timed("device: whole mask side (eager)",
                         lambda: mask_side(features.embedding, index, boxes, prompts), device, r)
        eager_codes = mask_side(features.embedding, index, boxes, prompts)
        timed("device: _launch_encode (upload → codes)",
              lambda: tok._launch_encode([_Prepared(size=(height, width))] * batch, features, masks, 0),
              device, r)
        if args.compile:
            start = time.perf_counter()
            compiled = torch.compile(mask_side, dynamic=False)
            compiled(features.embedding, index, boxes, prompts)
            sync(device)
            log(f"compile mask side: {time.perf_counter() - start:.1f} s")
            ms = timed("device: whole mask side (torch.compile)",
                       lambda: compiled(features.embedding, index, boxes, prompts), device, r)
            same = compiled(features.embedding, index, boxes, prompts).eq(eager_codes).all(dim=1).float().mean()
            log(f"compiled mask side: {eager_ms / ms:.2f}x eager; codes equal for {100 * same.item():.1f} %")
            ROWS.append(("compiled codes equal to eager (%)", 100 * same.item(), ""))

    timed(f"encode_batch of {6 * batch} images (tokenizer alone)",
          lambda: tok.encode_batch(images * 6, masks * 6, batch_size=batch), device, max(3, r // 3),
          f"{6 * total} masks")
    if args.profile and device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            tok.encode_batch(images * 6, masks * 6, batch_size=batch)
            sync(device)
        log(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70))
    if args.out:
        Path(args.out).write_text(json.dumps({"device": name, "torch": torch.__version__, "args": vars(args),
                                              "rows": [{"stage": a, "ms": b, "note": c} for a, b, c in ROWS]},
                                             indent=2))


if __name__ == "__main__":
    main()
