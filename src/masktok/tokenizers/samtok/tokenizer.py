"""``SAMTok``: masks ↔ 2 codes ↔ mask words, with one image-encoder pass per image.

Typical use::

    tok = SAMTok.from_pretrained("Qwen3-VL-8B-SAMTok/", device="cuda")   # bf16 on CUDA
    codes = tok.encode(image, masks)            # (N, H, W) binary → (N, 2) int64
    masks = tok.decode(image, codes)            # (N, 2) or (N, 1) → (N, H, W) bool
    words = tok.encode_words(image, masks)      # ["<|mt_start|><|mt_0011|><|mt_0347|><|mt_end|>", …]
    result = tok.decode_words(image, text)      # DecodedWords(masks, spans, decoded_span_indices)

Every image is encoded once and all its masks go through the mask encoder / decoder as one batch.
``embed_image`` returns a reusable :class:`ImageEmbedding`; an :class:`ImageEmbeddingCache` passed
as ``cache=`` reuses embeddings across calls; ``encode_batch`` / ``decode_batch`` take many
images (per-image mask lists), ``encode_stream`` an iterable of (image, masks) pairs read lazily
(a data loader); host preprocessing runs on worker threads while the device works.
Results are returned on the CPU. Exactly the official behaviour: see ``DESIGN.md`` §3. The words,
the empty-mask policy, loading and saving come from
:class:`~masktok.tokenizers.tokenizer_base.MaskTokenizerBase`.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from masktok.masks.bits import BitMasks
from masktok.tokenizers.samtok.checkpoint import save_official_checkpoint
from masktok.tokenizers.samtok.config import SAMTokConfig
from masktok.tokenizers.samtok.cuda_graph import GraphedImageEncoder
from masktok.tokenizers.samtok.embedding_cache import ImageEmbedding, ImageEmbeddingCache, image_digest
from masktok.tokenizers.samtok.loading import (CONFIG_FILE, META_SAM2_GLOB, OFFICIAL_TOKENIZER_GLOB, WEIGHTS_FILE,
                                              is_masktok_folder, load_model)
from masktok.tokenizers.samtok.model import ImageFeatures, SAMTokModel
from masktok.tokenizers.samtok.pil_resize import pil_bicubic_resize
from masktok.tokenizers.samtok.preprocess import (
    as_mask_batch,
    box_prompts,
    load_rgb,
    mask_boxes,
    normalize_pixels,
    resize_logits,
    resize_rgb,
    soft_mask_prompts,
)
from masktok.tokenizers.samtok.transfer import HostTransfers, Pending
from masktok.tokenizers.tokenizer_base import MaskTokenizerBase

MASK_COUNT_MULTIPLE = 16  # the compiled mask side sees mask counts padded to a multiple of this


# How a SAMTok word with a level left out ([c0, -1], a truncated answer) decodes; see SAMTok.decode.
PARTIAL_MODES = ("level0_only", "reference")


@dataclass
class _Prepared:
    """An image made ready on the host: a known embedding, or resized pixels to encode."""

    size: tuple[int, int]
    embedding: ImageEmbedding | None = None
    pixels: np.ndarray | None = None  # uint8 RGB: (S, S, 3) resized by PIL, or (H, W, 3) to resize on the GPU
    key: str | None = None
    source: Any = None  # the caller's image, to resize later if a cached embedding was evicted


class SAMTok(MaskTokenizerBase):
    """The SAMTok mask tokenizer (see the module docstring).

    Args (keyword-only):
        model: the network (moved to ``device`` and cast here).
        device: where it runs.
        dtype: compute dtype of the encoders/decoder; default bf16 on CUDA, float32 elsewhere.
        mask_batch_size: most masks per mask-encoder / decoder pass.
        compile: ``torch.compile`` the image encoder (static shapes) and the encode side's mask
            path (boxes and soft masks → codes; the mask count is dynamic). Faster, not
            bit-exact: fused bf16 kernels round differently, so a few codes can differ from the
            eager path's (see BENCHMARKS.md).
        num_workers: threads for image loading and resizing in the batched calls.
    """

    family = "samtok"
    display_name = "SAMTok"
    needs_image = True
    official_layout = "mask_tokenizer_<codebook_size>x<depth>.pth"
    official_files = (OFFICIAL_TOKENIZER_GLOB, META_SAM2_GLOB, "samtok_config.json")
    config_class = SAMTokConfig
    hub_files = (CONFIG_FILE, WEIGHTS_FILE, *official_files)

    def __init__(self, *, model: SAMTokModel, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 mask_batch_size: int = 256, compile: bool = False, num_workers: int | None = None) -> None:
        super().__init__(model=model, device=device, dtype=dtype, mask_batch_size=mask_batch_size)
        self.model = model.set_compute_dtype(self.dtype).to(self.device).eval()
        self.config: SAMTokConfig = model.config
        self.num_workers = num_workers or min(8, os.cpu_count() or 1)
        self._encoder: Callable[[torch.Tensor], ImageFeatures] = model.image_features
        self._compiled_mask_codes: Callable[..., torch.Tensor] | None = None
        if compile:
            self._encoder = torch.compile(model.image_features, dynamic=False)
            self._compiled_mask_codes = torch.compile(self._mask_codes, dynamic=True)
        self._graphs: GraphedImageEncoder | None = None
        self._transfers = HostTransfers(self.device)
        self._resize_on_device = self.device.type == "cuda"  # exact PIL bicubic as tensor ops

    # Construction & saving -------------------------------------------------------------------
    @classmethod
    def _build_model(cls, config: SAMTokConfig) -> SAMTokModel:
        return SAMTokModel(config)

    @classmethod
    def _load(cls, path: Path, *, device: str | torch.device, dtype: torch.dtype | None,
              config: SAMTokConfig | None = None, sam2_checkpoint: str | Path | None = None,
              **init_options: Any) -> "SAMTok":
        """A masktok folder, an official ``mask_tokenizer_*.pth`` (+ ``sam2_checkpoint``), or an
        official VLM folder holding both; see :mod:`masktok.tokenizers.samtok.loading`. Official
        files take ``config`` (default: ``samtok_config.json`` beside them, else the preset
        their shapes match)."""
        path = Path(path)
        official = not (is_masktok_folder(path) if path.is_dir() else
                        path.name == CONFIG_FILE or path.suffix == ".safetensors")
        if config is None and official:
            config = cls.read_sidecar_config(path if path.is_dir() else path.parent)
        model = load_model(path, config=config, sam2_checkpoint=sam2_checkpoint)
        return cls(model=model, device=device, dtype=dtype, **init_options)

    def _save(self, folder: Path, layout: str) -> None:
        """``masktok``: ``config.json`` + ``model.safetensors`` (float32); ``official``:
        ``mask_tokenizer_<K>x<depth>.pth``."""
        if layout == "official":
            cfg = self.config
            name = f"mask_tokenizer_{cfg.codebook_size}x{cfg.codebook_depth}.pth"
            save_official_checkpoint(self.model, folder / name)
            return
        import json

        from safetensors.torch import save_file

        (folder / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        state = {k: v.detach().cpu().float().contiguous().clone() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "tokenizer_type": self.family})

    def _make_vocabulary(self):
        """The grammar's :class:`~masktok.words.MaskVocabulary` for this codebook size and depth."""
        from masktok.words import samtok_vocabulary

        return samtok_vocabulary(codebook_size=self.config.codebook_size, depth=self.config.codebook_depth)

    # Latency mode ------------------------------------------------------------------------------
    def capture_image_encoder(self, batch_sizes: Sequence[int] = (1,),
                              encoder: Callable[[torch.Tensor], ImageFeatures] | None = None) -> None:
        """Record CUDA graphs of the image encoder for these batch sizes (static shapes); later
        passes of those sizes replay them, removing the kernel-launch overhead of small batches.
        ``encoder`` defaults to the tokenizer's (compiled when built with ``compile=True``)."""
        if self._graphs is None:
            self._graphs = GraphedImageEncoder(self._encoder, self.config.image_size, self.device)
        for size in batch_sizes:
            self._graphs.capture(int(size), encoder)

    # Image embeddings --------------------------------------------------------------------------
    def embed_image(self, image: Any, *, cache: ImageEmbeddingCache | None = None) -> ImageEmbedding:
        """One image → its reusable :class:`ImageEmbedding`."""
        return self.embed_images([image], cache=cache)[0]

    def embed_images(self, images: Sequence[Any], *, batch_size: int = 8,
                     cache: ImageEmbeddingCache | None = None) -> list[ImageEmbedding]:
        out: list[ImageEmbedding] = []
        for chunk, _, features, _ in self._feature_chunks([(image, None) for image in images], batch_size, cache):
            out.extend(self._embedding(features, i, p.size) for i, p in enumerate(chunk))
        return out

    # Encode ------------------------------------------------------------------------------------
    def _encode_pairs(self, pairs: Iterable[tuple[Any, Any]], *, batch_size: int,
                      cache: ImageEmbeddingCache | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(image, masks) pairs read lazily, ``batch_size`` images at a time: the next batch is
        read and prepared while the device works on the current one, and the codes of a batch
        come out once the device has moved on to the next. Whether each mask has a foreground
        pixel is found on the device, so the host never scans the masks."""
        pending: tuple[Pending, list[int]] | None = None
        for chunk, chunk_masks, features, offset in self._feature_chunks(pairs, batch_size, cache,
                                                                         skip=lambda m: len(m) == 0):
            codes, present, counts = self._launch_encode(chunk, features, chunk_masks, offset)
            if pending is not None:  # one chunk behind: the device already has the next one queued
                yield from self._finish_encode(*pending)
            pending = (self._transfers.download([codes, present]), counts)
        if pending is not None:
            yield from self._finish_encode(*pending)

    def _finish_encode(self, done: Pending, counts: list[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        codes, present = done.result()
        depth = self.config.codebook_depth
        for part, flags in zip(codes.split(counts), present.split(counts)):
            yield (part if part.shape[0] else torch.zeros(0, depth, dtype=torch.long)), flags

    @torch.inference_mode()
    def _launch_encode(self, chunk: list[_Prepared], features: ImageFeatures | None, chunk_masks: Sequence[Any],
                       offset: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Queue the codes of a chunk's masks → codes (N, depth), present (N,) bool (each mask has
        a foreground pixel; checked on the device, so the host never scans the masks) and the
        per-image mask counts."""
        cfg = self.config
        boxes, prompts, index, present, counts = [], [], [], [], []
        for row, (item, masks) in enumerate(zip(chunk, chunk_masks)):
            batch = as_mask_batch(masks, item.size, f"masks[{offset + row}]", require_foreground=False)
            counts.append(batch.shape[0])
            if batch.shape[0] == 0:
                continue
            batch = (BitMasks(self._transfers.upload(batch.bits), batch.width).unpack()
                     if isinstance(batch, BitMasks) else self._transfers.upload(batch))
            present.append(batch.flatten(1).any(dim=1))
            boxes.append(box_prompts(mask_boxes(batch), *item.size, cfg.image_size))
            prompts.append(soft_mask_prompts(batch, cfg.mask_size))
            index.append(torch.full((batch.shape[0],), row, dtype=torch.long, device=self.device))
        if not boxes:
            return (torch.zeros(0, cfg.codebook_depth, dtype=torch.long, device=self.device),
                    torch.ones(0, dtype=torch.bool, device=self.device), counts)
        boxes_t, prompts_t, index_t = torch.cat(boxes), torch.cat(prompts), torch.cat(index)
        codes = [self._mask_side(features.embedding[index_t[s: s + self.mask_batch_size]],
                                 boxes_t[s: s + self.mask_batch_size], prompts_t[s: s + self.mask_batch_size])
                 for s in range(0, boxes_t.shape[0], self.mask_batch_size)]
        return torch.cat(codes), torch.cat(present), counts

    def _mask_codes(self, image_rows: torch.Tensor, boxes: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """Each mask's image embedding row (N, C, e, e), box (N, 4), soft prompt (N, 1, m, m) → codes (N, depth)."""
        embeddings = self.model.mask_embeddings_of_rows(image_rows, boxes, prompts)
        return self.model.quantizer.quantize(embeddings, update_codebooks=False)[0]

    def _mask_side(self, image_rows: torch.Tensor, boxes: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """:meth:`_mask_codes`, compiled with ``compile=True``: the mask count is a dynamic dimension,
        padded to a multiple of ``MASK_COUNT_MULTIPLE`` (no recompiling for counts 0 and 1)."""
        if self._compiled_mask_codes is None:
            return self._mask_codes(image_rows, boxes, prompts)
        count = boxes.shape[0]
        pad = -count % MASK_COUNT_MULTIPLE
        if pad:  # copies of the first mask, dropped from the result
            first = torch.zeros(pad, dtype=torch.long, device=boxes.device)
            image_rows, boxes, prompts = (torch.cat([t, t[first]]) for t in (image_rows, boxes, prompts))
        return self._compiled_mask_codes(image_rows, boxes, prompts)[:count]

    # Decode ------------------------------------------------------------------------------------
    def _decode_pairs(self, images: Sequence[Any], codes: list[torch.Tensor], *, lengths: list[torch.Tensor],
                      sizes: Sequence[tuple[int, int] | None], threshold: float | None, return_logits: bool,
                      batch_size: int, cache: ImageEmbeddingCache | None = None,
                      partial: str = "level0_only") -> list[torch.Tensor]:
        """Codes (N, L), L ≤ depth (−1 marks a trailing level left out; ``lengths`` leave out the
        levels past them) → masks at ``sizes`` (default: the image's size); each image is
        encoded once. Out-of-range codes raise ``ValueError``. ``threshold``: logit threshold
        after the bilinear resize (default: the config's 0.5).

        ``partial`` (see :data:`PARTIAL_MODES`): how a level left out decodes. ``"level0_only"``
        (default): with the codewords of the levels given alone, what the design asks for.
        ``"reference"``: as the official code and demo do (they overwrite −1 with 0 in place), a
        missing level takes its codebook's row 0 — offered to reproduce their outputs.
        """
        if partial not in PARTIAL_MODES:
            raise ValueError(f"partial: expected one of {PARTIAL_MODES}, got {partial!r}")
        checked = []
        for i, (rows, kept) in enumerate(zip(codes, lengths)):
            rows = rows.clone()
            rows[torch.arange(rows.shape[1])[None, :] >= kept[:, None]] = -1
            rows = self.model.quantizer.check_codes(rows, f"codes[{i}]")
            checked.append(self._reference_partial(rows) if partial == "reference" else rows)
        threshold = self.config.mask_threshold if threshold is None else float(threshold)
        results: list[torch.Tensor] = []
        pending: Pending | None = None
        for chunk, chunk_codes, features, offset in self._feature_chunks(list(zip(images, checked)), batch_size, cache,
                                                                         skip=lambda c: len(c) == 0):
            out_sizes = [tuple(sizes[offset + r]) if sizes[offset + r] is not None else item.size
                         for r, item in enumerate(chunk)]
            launched = self._launch_decode(features, chunk_codes, out_sizes, threshold, return_logits)
            if pending is not None:  # one chunk behind: the device already has the next one queued
                results.extend(pending.result())
            pending = self._transfers.download(launched)
        if pending is not None:
            results.extend(pending.result())
        return results

    def _reference_partial(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, L ≤ depth) checked codes → (N, depth): levels left out (−1 or absent) become code 0."""
        full = torch.zeros(codes.shape[0], self.config.codebook_depth, dtype=torch.long)
        full[:, : codes.shape[1]] = codes
        return full.clamp_min(0)

    @torch.inference_mode()
    def _launch_decode(self, features: ImageFeatures | None, codes: list[torch.Tensor], sizes: list[tuple[int, int]],
                       threshold: float, return_logits: bool) -> list[torch.Tensor]:
        counts = [c.shape[0] for c in codes]
        best: torch.Tensor | None = None
        if sum(counts):
            all_codes = self._transfers.upload(torch.cat([c for c in codes if c.shape[0]]))
            index = self._transfers.upload(torch.cat([torch.full((n,), r, dtype=torch.long)
                                                      for r, n in enumerate(counts) if n]))
            embeddings = self.model.quantizer.lookup(all_codes, check=False)  # checked on the host
            parts = []
            for s in range(0, all_codes.shape[0], self.mask_batch_size):
                part = slice(s, s + self.mask_batch_size)
                logits, iou = self.model.decode_logits(features, index[part], embeddings[part])
                parts.append(SAMTokModel.best_mask(logits, iou))
            best = torch.cat(parts)
        out, start = [], 0
        for n, size in zip(counts, sizes):
            if n == 0:
                dtype = torch.float32 if return_logits else torch.bool
                out.append(torch.zeros(0, *size, dtype=dtype, device=self.device))
                continue
            logits = resize_logits(best[start: start + n], size)
            start += n
            out.append(logits if return_logits else logits > threshold)
        return out

    # Image pipeline ----------------------------------------------------------------------------
    def _embedding(self, features: ImageFeatures, row: int, size: tuple[int, int]) -> ImageEmbedding:
        one = ImageFeatures(features.embedding[row: row + 1].clone(),
                            tuple(t[row: row + 1].clone() for t in features.high_res))
        return ImageEmbedding(one, size, id(self))

    def _prepare(self, image: Any, cache: ImageEmbeddingCache | None, need_pixels: bool) -> _Prepared:
        """Host-side work for one image (runs on worker threads): load, digest, resize."""
        if isinstance(image, ImageEmbedding):
            if image.owner != id(self):
                raise ValueError("this ImageEmbedding was computed by another tokenizer")
            return _Prepared(size=image.size, embedding=image)
        rgb = load_rgb(image)
        size = (int(rgb.shape[0]), int(rgb.shape[1]))
        key = image_digest(rgb) if cache is not None else None
        if not need_pixels or (key is not None and key in cache):
            return _Prepared(size=size, key=key, source=image)
        return _Prepared(size=size, pixels=self._host_pixels(rgb), key=key, source=image)

    def _host_pixels(self, rgb: np.ndarray) -> np.ndarray:
        return rgb if self._resize_on_device else resize_rgb(rgb, self.config.image_size)

    def _encode_pixels(self, pixels: list[np.ndarray]) -> ImageFeatures:
        side = self.config.image_size
        if self._resize_on_device:
            batch = torch.stack([pil_bicubic_resize(self._transfers.upload(torch.from_numpy(p)), side, side)
                                 for p in pixels])
        else:
            batch = self._transfers.upload(torch.from_numpy(np.stack(pixels)))
        normalized = normalize_pixels(batch)
        features = self._graphs(normalized) if self._graphs is not None else None
        return features if features is not None else self._encoder(normalized)

    @torch.inference_mode()
    def _features(self, chunk: list[_Prepared], cache: ImageEmbeddingCache | None, skip: list[bool]) -> ImageFeatures | None:
        """Features of a chunk (one row per image; images in ``skip`` get a zero row)."""
        rows: list[ImageFeatures | None] = [None] * len(chunk)
        for i, item in enumerate(chunk):
            if item.embedding is not None:
                rows[i] = item.embedding.features
            elif not skip[i] and item.key is not None and cache is not None:
                hit = cache.get(item.key, id(self))
                rows[i] = hit.features if hit is not None else None
        todo = [i for i in range(len(chunk)) if rows[i] is None and not skip[i]]
        for i in todo:  # cached at lookahead time but evicted since: resize now
            if chunk[i].pixels is None:
                chunk[i].pixels = self._host_pixels(load_rgb(chunk[i].source))
        if todo:
            encoded = self._encode_pixels([chunk[i].pixels for i in todo])
            if cache is None and len(todo) == len(chunk):  # the common case: the batch as it is
                return encoded
            for j, i in enumerate(todo):
                rows[i] = ImageFeatures(encoded.embedding[j: j + 1], tuple(t[j: j + 1] for t in encoded.high_res))
                if cache is not None and chunk[i].key is not None:
                    cache.put(chunk[i].key, self._embedding(encoded, j, chunk[i].size))
        present = [r for r in rows if r is not None]
        if not present:
            return None
        template = present[0]
        filled = [r if r is not None else ImageFeatures(torch.zeros_like(template.embedding),
                                                         tuple(torch.zeros_like(t) for t in template.high_res))
                  for r in rows]
        return filled[0] if len(filled) == 1 else ImageFeatures.cat(filled)

    def _feature_chunks(self, items: Iterable[tuple[Any, Any]], batch_size: int, cache: ImageEmbeddingCache | None,
                        skip: Callable[[Any], bool] = lambda payload: False
                        ) -> Iterator[tuple[list[_Prepared], list[Any], ImageFeatures | None, int]]:
        """(image, payload) items → chunks of ``batch_size``: (prepared images, their payloads, their
        features, index of the chunk's first item). Images whose payload is ``skip``-ped get no
        encoder pass. A chunk's encoder pass is queued before the next chunk is read from ``items``
        and prepared on worker threads, so the device works while the host reads and prepares."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        source = iter(items)
        single = isinstance(items, Sequence) and len(items) <= 1  # latency mode: no thread pool
        pool = None if single else ThreadPoolExecutor(max_workers=self.num_workers)

        def read() -> tuple[list[Any], list[Future | _Prepared]]:
            group = list(islice(source, batch_size))
            if pool is None:
                return group, [self._prepare(image, cache, not skip(payload)) for image, payload in group]
            return group, [pool.submit(self._prepare, image, cache, not skip(payload)) for image, payload in group]

        try:
            group, queued = read()
            offset = 0
            while group:
                chunk = [q.result() if isinstance(q, Future) else q for q in queued]
                payloads = [payload for _, payload in group]
                features = self._features(chunk, cache, [skip(p) for p in payloads])
                following = read()
                yield chunk, payloads, features, offset
                offset += len(group)
                group, queued = following
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
