"""SAMTok encode / decode speed with random weights: masktok vs the per-mask reference pattern vs the floor.

Rows, for M masks per image (default 1, 4, 16, 64):

- ``masktok``: ``SAMTok.encode_batch`` / ``decode_batch`` end to end — host images (PIL resize on
  worker threads) and host masks in, codes / (H, W) bool masks on the host out; bf16 weights, each
  image encoded once, all its masks batched, the image encoder replayed as a CUDA graph.
- ``per-mask``: the reference implementation's pattern — the image repeated once per mask in the
  batch (so re-encoded M times), float32 weights under bf16 autocast, eager; same preprocessing.
- ``floor``: one encoder pass over B preprocessed images already on the GPU + one batched
  mask-encoder (encode) or mask-decoder (decode) pass over all their masks, nothing else.

Plus the image encoder alone (images/s, batch 8: eager with transformers' attention, eager with
the fused attention, CUDA graph, and ``torch.compile`` with ``--compile``) and the latency mode
(one image, 16 masks, encode and decode each, encoder captured as a CUDA graph). Example::

    python benchmarks/samtok_throughput.py --device cuda --size large --compile --out samtok.json

CPU smoke run: ``python benchmarks/samtok_throughput.py --device cpu --size test --images 4
--masks-per-image 1 2 --reference-images 1 --latency-repeats 2``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings

import numpy as np
import torch

from bench_common import ellipse_masks, log, random_samtok_model, median_seconds, sync
from masktok.tokenizers.samtok import SAMTok, SAMTokModel
from masktok.tokenizers.samtok.hiera_attention import FusedMultiScaleAttention
from masktok.tokenizers.samtok.pil_resize import pil_bicubic_resize
from masktok.tokenizers.samtok.preprocess import (
    box_prompts,
    load_rgb,
    mask_boxes,
    normalize_pixels,
    resize_logits,
    resize_rgb,
    soft_mask_prompts,
)

RESULTS: dict = {}


def make_data(count: int, masks_per_image: int, height: int, width: int, seed: int = 0, distinct: int = 8):
    """``count`` random RGB images with random ellipse masks each (numpy, host); ``distinct``
    different ones, cycled (nothing is cached, so every image is processed in full)."""
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(min(count, distinct)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        pool.append((image, ellipse_masks(rng, masks_per_image, height, width, min_radius=8)))
    return [pool[i % len(pool)][0] for i in range(count)], [pool[i % len(pool)][1] for i in range(count)]


# The per-mask reference pattern ------------------------------------------------------------------
class PerMaskReference:
    """Float32 weights, bf16 autocast, eager; the image batch is the image repeated once per mask."""

    def __init__(self, model: SAMTokModel, device: torch.device) -> None:
        self.model, self.device = model, device
        self.autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def _pixels(self, image: np.ndarray, repeats: int) -> torch.Tensor:
        rgb = resize_rgb(load_rgb(image), self.model.config.image_size)
        return normalize_pixels(torch.from_numpy(rgb.copy())[None].to(self.device)).repeat(repeats, 1, 1, 1)

    @torch.inference_mode()
    def encode(self, image: np.ndarray, masks: np.ndarray) -> torch.Tensor:
        cfg, n = self.model.config, masks.shape[0]
        pixels = self._pixels(image, n)
        stack = torch.from_numpy(masks).to(self.device)
        boxes = box_prompts(mask_boxes(stack), masks.shape[1], masks.shape[2], cfg.image_size)
        prompts = soft_mask_prompts(stack, cfg.mask_size)
        with self.autocast:
            feats = self.model.image_features(pixels)
            emb = self.model.mask_embeddings(feats, torch.arange(n, device=self.device), boxes, prompts)
        return self.model.quantizer.quantize(emb.float(), update_codebooks=False)[0].cpu()

    @torch.inference_mode()
    def decode(self, image: np.ndarray, codes: torch.Tensor) -> torch.Tensor:
        n, size = codes.shape[0], image.shape[:2]
        pixels = self._pixels(image, n)
        emb = self.model.quantizer.lookup(codes.to(self.device))
        with self.autocast:
            feats = self.model.image_features(pixels)
            logits, iou = self.model.decode_logits(feats, torch.arange(n, device=self.device), emb)
        return (resize_logits(self.model.best_mask(logits, iou).float(), size) > 0.5).cpu()


# Sections ------------------------------------------------------------------------------------
def bench_encoder(tok: SAMTok, model_fp32: SAMTokModel, args, device) -> None:
    cfg = tok.config
    batch = args.encoder_batch
    pixels = torch.randn(batch, 3, cfg.image_size, cfg.image_size, device=device)
    rows = {}
    with torch.inference_mode():
        rows["eager, fused attention"] = median_seconds(lambda: tok.model.image_features(pixels), device, args.repeats, 2)
        if args.hf_attention_baseline:
            hf_model = copy.deepcopy(model_fp32).to(tok.dtype)
            from transformers.models.sam2.modeling_sam2 import Sam2MultiScaleAttention

            hf_backbone = hf_model.sam2.vision_encoder.backbone
            for index, block in enumerate(hf_backbone.blocks):
                fused = block.attn
                original = Sam2MultiScaleAttention(hf_backbone.config, fused.dim, fused.dim_out,
                                                   fused.num_attention_heads, fused.query_stride)
                original.qkv, original.proj = fused.qkv, fused.proj
                block.attn = original.to(device)
            rows["eager, transformers attention"] = median_seconds(lambda: hf_model.image_features(pixels), device,
                                                          max(3, args.repeats // 2), 1)
            del hf_model
        autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

        def reference_encoder():
            with autocast:
                model_fp32.image_features(pixels)

        rows["eager, fp32 weights + bf16 autocast"] = median_seconds(reference_encoder, device, args.repeats, 2)
    if device.type == "cuda":
        tok.capture_image_encoder([batch])
        with torch.inference_mode():
            rows["CUDA graph"] = median_seconds(lambda: tok._graphs(pixels), device, args.repeats, 2)
    RESULTS["encoder"] = {name: {"ms_per_batch": t * 1e3, "images_per_s": batch / t} for name, t in rows.items()}
    for name, t in rows.items():
        log(f"encoder batch {batch} {name:38s} {t * 1e3:8.1f} ms  {batch / t:8.1f} img/s")


def bench_compiled(tok: SAMTok, reference: "PerMaskReference", args, device) -> None:
    """torch.compile of the encoder, alone and replayed as a CUDA graph; if that beats the eager
    graph, the throughput rows are measured again with it (``throughput_compiled``)."""
    batch, cfg = args.encoder_batch, tok.config
    pixels = torch.randn(batch, 3, cfg.image_size, cfg.image_size, device=device)
    start = time.perf_counter()
    compiled = torch.compile(tok.model.image_features, dynamic=False)
    with torch.inference_mode():
        compiled(pixels)
        sync(device)
        RESULTS["compile_seconds"] = time.perf_counter() - start
        rows = {"torch.compile": median_seconds(lambda: compiled(pixels), device, args.repeats, 2)}
    eager_graphs, eager_encoder = tok._graphs, tok._encoder
    tok._graphs, tok._encoder = None, compiled
    tok.capture_image_encoder([batch])
    with torch.inference_mode():
        rows["torch.compile + CUDA graph"] = median_seconds(lambda: tok._graphs(pixels), device, args.repeats, 2)
    for name, t in rows.items():
        RESULTS["encoder"][name] = {"ms_per_batch": t * 1e3, "images_per_s": batch / t}
        log(f"encoder batch {batch} {name:38s} {t * 1e3:8.1f} ms  {batch / t:8.1f} img/s")
    eager_ms = RESULTS["encoder"].get("CUDA graph", {}).get("ms_per_batch", float("inf"))
    if rows["torch.compile + CUDA graph"] * 1e3 < eager_ms:
        bench_throughput(tok, reference, args, device, key="throughput_compiled", with_reference=False)
    tok._graphs, tok._encoder = eager_graphs, eager_encoder


def bench_checks(tok: SAMTok, args, device) -> None:
    """Correctness on this device: the tensor bicubic resize equals PIL's bytes, both resize paths
    give the same codes, and which calls (if any) synchronise the host with the GPU."""
    rng = np.random.default_rng(7)
    side = tok.config.image_size
    exact = []
    for h, w in ((args.height, args.width), (1500, 2100), (333, 517)):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        on_device = pil_bicubic_resize(torch.from_numpy(image).to(device), side, side).cpu().numpy()
        exact.append(bool(np.array_equal(on_device, resize_rgb(image, side))))
    images, masks = make_data(2, 8, args.height, args.width, seed=5)
    with_device = [tok.encode(im, mk) for im, mk in zip(images, masks)]
    tok._resize_on_device = False
    try:
        with_pil = [tok.encode(im, mk) for im, mk in zip(images, masks)]
    finally:
        tok._resize_on_device = device.type == "cuda"
    same = all(torch.equal(a, b) for a, b in zip(with_device, with_pil))
    syncs: dict[str, int] = {}
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                codes = tok.encode(images[0], masks[0])
                tok.decode(images[0], codes)
                tok.encode_batch(images, masks, batch_size=1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        for w in caught:
            key = f"{w.filename.split('/src/')[-1]}:{w.lineno}"
            syncs[key] = syncs.get(key, 0) + 1
    RESULTS["checks"] = {"device_resize_equals_pil": exact, "same_codes_device_vs_pil_resize": same,
                         "synchronising_calls": syncs}
    log(f"checks: device resize == PIL {exact}; same codes either resize {same}; syncs {syncs}")


def floor_times(tok: SAMTok, images, masks, device, repeats: int) -> tuple[float, float]:
    """Seconds for encoder + one batched mask-encoder pass, and encoder + one decoder pass."""
    cfg, model = tok.config, tok.model
    rgb = np.stack([resize_rgb(im, cfg.image_size) for im in images])  # a writable copy
    pixels = normalize_pixels(torch.from_numpy(rgb).to(device))
    boxes, prompts, index = [], [], []
    for row, stack in enumerate(masks):
        t = torch.from_numpy(stack).to(device)
        boxes.append(box_prompts(mask_boxes(t), stack.shape[1], stack.shape[2], cfg.image_size))
        prompts.append(soft_mask_prompts(t, cfg.mask_size))
        index.append(torch.full((stack.shape[0],), row, device=device, dtype=torch.long))
    boxes, prompts, index = torch.cat(boxes), torch.cat(prompts), torch.cat(index)
    encoder = tok._graphs if tok._graphs is not None and len(images) in tok._graphs.batch_sizes else tok._encoder
    with torch.inference_mode():
        codes = model.quantizer.quantize(model.mask_embeddings(encoder(pixels), index, boxes, prompts))[0]
        embeddings = model.quantizer.lookup(codes)

        def encode_floor():
            emb = model.mask_embeddings(encoder(pixels), index, boxes, prompts)
            model.quantizer.quantize(emb, update_codebooks=False)

        def decode_floor():
            logits, iou = model.decode_logits(encoder(pixels), index, embeddings)
            model.best_mask(logits, iou)

        return median_seconds(encode_floor, device, repeats, 1), median_seconds(decode_floor, device, repeats, 1)


def bench_throughput(tok: SAMTok, reference: PerMaskReference, args, device, key: str = "throughput",
                     with_reference: bool = True) -> None:
    RESULTS[key] = []
    for m in args.masks_per_image:
        images, masks = make_data(args.images, m, args.height, args.width, seed=m)
        total = sum(x.shape[0] for x in masks)
        warm = max(args.batch_size, 2)
        tok.encode_batch(images[:warm], masks[:warm], batch_size=args.batch_size)  # warm-up
        codes = tok.encode_batch(images, masks, batch_size=args.batch_size)
        t_enc = median_seconds(lambda: tok.encode_batch(images, masks, batch_size=args.batch_size), device,
                      args.throughput_repeats, 0)
        t_dec = median_seconds(lambda: tok.decode_batch(images, codes, batch_size=args.batch_size), device,
                      args.throughput_repeats, 1)
        f_enc, f_dec = floor_times(tok, images[: args.batch_size], masks[: args.batch_size], device, args.repeats)
        floor_masks = sum(x.shape[0] for x in masks[: args.batch_size])
        row = {"masks_per_image": m, "images": len(images),
               "masktok_encode": total / t_enc, "masktok_decode": total / t_dec,
               "floor_encode": floor_masks / f_enc, "floor_decode": floor_masks / f_dec,
               "per_mask_encode": float("nan"), "per_mask_decode": float("nan"),
               "codes_equal_to_per_mask_fraction": float("nan")}
        if with_reference:
            n_ref = max(1, min(args.reference_images, len(images)))
            ref_codes = [reference.encode(images[i], masks[i]) for i in range(n_ref)]  # warm-up + codes
            r_enc = median_seconds(lambda: [reference.encode(images[i], masks[i]) for i in range(n_ref)], device, 1, 0)
            r_dec = median_seconds(lambda: [reference.decode(images[i], ref_codes[i]) for i in range(n_ref)], device, 1, 1)
            ref_masks = sum(masks[i].shape[0] for i in range(n_ref))
            row.update(per_mask_encode=ref_masks / r_enc, per_mask_decode=ref_masks / r_dec,
                       codes_equal_to_per_mask_fraction=float(np.mean(
                           [(ref_codes[i] == codes[i]).all(dim=1).float().mean().item() for i in range(n_ref)])))
        RESULTS[key].append(row)
        log(f"M={m:3d} masks/s encode: masktok {row['masktok_encode']:8.1f}  per-mask {row['per_mask_encode']:7.1f}  "
            f"floor {row['floor_encode']:8.1f}  | decode: masktok {row['masktok_decode']:8.1f}  "
            f"per-mask {row['per_mask_decode']:7.1f}  floor {row['floor_decode']:8.1f}  | "
            f"same codes {row['codes_equal_to_per_mask_fraction']:.2f}")


def bench_latency(tok: SAMTok, args, device) -> None:
    if device.type == "cuda":  # the eager encoder, to avoid recompiling for batch 1
        tok.capture_image_encoder([1], encoder=tok.model.image_features)
    images, masks = make_data(1, 16, args.height, args.width, seed=99)
    image, stack = images[0], masks[0]
    codes = tok.encode(image, stack)
    t_enc = median_seconds(lambda: tok.encode(image, stack), device, args.latency_repeats, 2)
    t_dec = median_seconds(lambda: tok.decode(image, codes), device, args.latency_repeats, 2)
    t_pre = median_seconds(lambda: resize_rgb(image, tok.config.image_size), device, args.latency_repeats, 1)
    pixels = torch.randn(1, 3, tok.config.image_size, tok.config.image_size, device=device)
    encoder = tok._graphs if tok._graphs is not None else tok._encoder
    with torch.inference_mode():
        t_encoder = median_seconds(lambda: encoder(pixels), device, args.latency_repeats, 2)
    embedding = tok.embed_image(image)
    t_embed = median_seconds(lambda: tok.embed_image(image), device, args.latency_repeats, 2)
    t_enc_masks = median_seconds(lambda: tok.encode(embedding, stack), device, args.latency_repeats, 2)
    t_dec_masks = median_seconds(lambda: tok.decode(embedding, codes), device, args.latency_repeats, 2)
    RESULTS["latency_ms"] = {"encode_16_masks": t_enc * 1e3, "decode_16_masks": t_dec * 1e3,
                             "pil_resize_cpu": t_pre * 1e3, "image_encoder_batch1": t_encoder * 1e3,
                             "embed_image": t_embed * 1e3, "encode_16_masks_given_embedding": t_enc_masks * 1e3,
                             "decode_16_masks_given_embedding": t_dec_masks * 1e3}
    log(f"latency (1 image, 16 masks): encode {t_enc * 1e3:.1f} ms, decode {t_dec * 1e3:.1f} ms | "
        f"embed_image {t_embed * 1e3:.1f} (encoder alone {t_encoder * 1e3:.1f}, PIL resize on CPU would be "
        f"{t_pre * 1e3:.1f}); given the embedding: encode {t_enc_masks * 1e3:.1f}, decode {t_dec_masks * 1e3:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="large", help="Hiera size (tiny, small, base_plus, large) or 'test'")
    parser.add_argument("--images", type=int, default=64, help="images per throughput run")
    parser.add_argument("--masks-per-image", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=8, help="images per encoder pass")
    parser.add_argument("--encoder-batch", type=int, default=8)
    parser.add_argument("--reference-images", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--throughput-repeats", type=int, default=2)
    parser.add_argument("--latency-repeats", type=int, default=20)
    parser.add_argument("--compile", action="store_true",
                        help="last: time torch.compile of the encoder (+ CUDA graph), rerun throughput if faster")
    parser.add_argument("--hf-attention-baseline", action="store_true")
    parser.add_argument("--skip", nargs="*", default=[], choices=["encoder", "checks", "throughput", "latency", "compile"])
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()

    device = torch.device(args.device)
    model_fp32 = random_samtok_model(args.size, device)
    tok = SAMTok(model=copy.deepcopy(model_fp32), device=device)
    reference = PerMaskReference(model_fp32, device)
    RESULTS.update(device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                   torch=torch.__version__, size=args.size, dtype=str(tok.dtype), args=vars(args))
    log(f"device {RESULTS['device']}, torch {torch.__version__}, Hiera {args.size}, {tok.dtype}")
    assert isinstance(tok.model.sam2.vision_encoder.backbone.blocks[0].attn, FusedMultiScaleAttention)
    sections = [("encoder", lambda: bench_encoder(tok, model_fp32, args, device)),
                ("checks", lambda: bench_checks(tok, args, device)),
                ("throughput", lambda: bench_throughput(tok, reference, args, device)),
                ("latency", lambda: bench_latency(tok, args, device))]
    if args.compile and device.type == "cuda":
        sections.append(("compile", lambda: bench_compiled(tok, reference, args, device)))
    for name, run in sections:
        if name in args.skip:
            continue
        start = time.perf_counter()
        try:
            run()
        except Exception as err:  # report and go on: one failing section must not hide the others
            RESULTS.setdefault("errors", {})[name] = f"{type(err).__name__}: {err}"
            log(f"section {name} failed: {type(err).__name__}: {err}")
        log(f"[{name} took {time.perf_counter() - start:.1f} s]")
        if args.out:
            with open(args.out, "w") as f:
                json.dump(RESULTS, f, indent=2)


if __name__ == "__main__":
    main()
