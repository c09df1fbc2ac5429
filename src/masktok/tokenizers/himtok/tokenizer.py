"""The public HiMTok tokenizer: binary masks ⇄ up to K codes ⇄ mask words.

Image-free: the ``image`` argument of every method exists for interface parity with SAMTok and is
not read (a path given there must still name an existing file, so a typo is not silently ignored).
Masks of any size are stretched to the model frame (256×256, bilinear, as the official model) and
decoded masks are stretched back to the size the caller asks for. Inputs may live on
any device; codes come back on the CPU, decoded masks as the caller asks (``output``): CPU bool
tensors (default), tensors left on the tokenizer's device, or COCO RLE whose runs are found there.

Decoding accepts any prefix of the code sequence (1 … max_codes codes): missing latent slots are
zero-filled after the decoder's input linear. Soft decoding takes per-position code probabilities,
e.g. ``softmax(2 · logits)`` of an LMM restricted to the mask-code ids.

Box-first models (``config.box_prefix``, the default tokenizer) frame each mask by its tight box:
codes = 4 box codes + the shape codes of the box stretched to the model frame; decoding pastes the
decoded frame back into the box at the caller's size, computing only the box's pixels
(:mod:`masktok.tokenizers.himtok.box_frame`, :mod:`masktok.tokenizers.himtok.box_paste`).
Host masks are encoded in chunks of bounded size: each chunk goes to the device once, where its
boxes are found and cropped to frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from masktok.devices import resolve_device
from masktok.masks.tensors import as_mask_tensor
from masktok.tokenizers.himtok import checkpoint
from masktok.tokenizers.himtok.box_frame import (
    box_to_codes,
    codes_to_box,
    crop_box_frames,
    soft_codes_to_box,
    tight_boxes,
)
from masktok.tokenizers.himtok.box_paste import paste_dense, paste_host, paste_rles
from masktok.tokenizers.himtok.config import HiMTokConfig, get_config, official_config
from masktok.tokenizers.base import check_output
from masktok.tokenizers.himtok.model import HiMTokModel
from masktok.tokenizers.quantizers.vq import check_codes
from masktok.tokenizers.tokenizer_base import MaskTokenizerBase

if TYPE_CHECKING:  # pragma: no cover
    from masktok.words import MaskVocabulary


# Bytes of host masks sent to the device at once when encoding, and of dense decoded logits made
# there at once before they are copied to the host.
CHUNK_BYTES = 1 << 28


def _default_batch(device: torch.device) -> int:
    """Masks per model call: 256 on the CPU, 2048 on an accelerator."""
    return 256 if device.type == "cpu" else 2048


def _check_size(size: Sequence[int] | None, default: int) -> tuple[int, int]:
    if size is None:
        return default, default
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"size must be (height, width) with two positive integers, got {size!r}")
    return int(size[0]), int(size[1])


def _check_threshold(threshold: float | None) -> float:
    if threshold is None:
        return 0.5
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold is a probability and must lie in (0, 1), got {threshold}")
    return float(threshold)


def _as_binary_masks(masks: Any, name: str = "masks") -> torch.Tensor:
    """masks (N, H, W) binary, any size, or :class:`BitMasks` → bool tensor (N, H, W) on its device."""
    return as_mask_tensor(masks, name)


def _check_unread_image(image: Any) -> None:
    """The image HiMTok does not read: a path must still exist (FileNotFoundError otherwise)."""
    if isinstance(image, (str, Path)) and not Path(image).is_file():
        raise FileNotFoundError(f"image: no image file at {image} (HiMTok does not read the image, "
                                "but a path that names no file is refused rather than ignored)")


def _pil_bicubic_frames(binary: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W) bool → (N, 1, S, S) float32: each mask as an 8-bit image (0 / 255) resized with
    PIL bicubic, / 255 — the official HiMTok data path (``convert_mask2tokens.py``)."""
    from PIL import Image

    frames = []
    for mask in binary.cpu().numpy():
        image = Image.fromarray(mask.astype(np.uint8) * 255)
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        frames.append(np.asarray(image, dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(frames)).unsqueeze(1)


def _probability_logits(probs: torch.Tensor) -> torch.Tensor:
    """Probabilities → logits, ±inf at exactly 0 / 1 (box-first decoding pastes probabilities)."""
    return torch.logit(probs.double()).float()


class HiMTok(MaskTokenizerBase):
    """HiMTok tokenizer (official or compact model) behind masktok's tokenizer interface.

    Args (keyword-only):
        model: the :class:`HiMTokModel` (moved to ``device``, cast, eval mode).
        device, dtype: where and in which precision it runs (bf16 on CUDA, fp32 on CPU by default).
        mask_batch_size: most masks per model pass (default 256 on the CPU, 2048 on an accelerator).

    Attributes:
        config: the model's :class:`HiMTokConfig`.
    """

    family = "himtok"
    display_name = "HiMTok"
    needs_image = False
    soft_decoding = True
    official_layout = checkpoint.OFFICIAL_NAME
    official_files = (checkpoint.OFFICIAL_NAME, "himtok_config.json")
    config_class = HiMTokConfig
    hub_files = (checkpoint.CONFIG_NAME, checkpoint.WEIGHTS_NAME, *official_files)

    def __init__(self, *, model: HiMTokModel, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 mask_batch_size: int | None = None) -> None:
        if mask_batch_size is None:
            mask_batch_size = _default_batch(resolve_device(device))
        super().__init__(model=model, device=device, dtype=dtype, mask_batch_size=mask_batch_size)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.config: HiMTokConfig = model.config

    def _batch(self, batch_size: int | None) -> int:
        """A call's masks per model pass: ``batch_size``, or the tokenizer's ``mask_batch_size``."""
        if batch_size is None:
            return self.mask_batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return batch_size

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def _build_model(cls, config: str | HiMTokConfig) -> HiMTokModel:
        """``config``: a :class:`HiMTokConfig` or a config name (see ``CONFIGS``)."""
        return HiMTokModel(get_config(config) if isinstance(config, str) else config)

    @classmethod
    def _load(cls, path: Path, *, device: str | torch.device, dtype: torch.dtype | None,
              config: HiMTokConfig | None = None, **init_options: Any) -> "HiMTok":
        """A masktok folder (``config.json`` + ``model.safetensors``) or an official checkpoint
        (``himtok.pth``, a folder holding it, or an LMM state dict with ``mask_decoder.`` keys,
        prefixes ``module.`` / ``mask_decoder.`` allowed, loaded strictly). ``config`` is only
        used for official checkpoints (default: ``himtok_config.json`` beside them, else
        :func:`official_config`)."""
        path = Path(path)
        if path.is_file() and path.name in (checkpoint.CONFIG_NAME, checkpoint.WEIGHTS_NAME) \
                and (path.parent / checkpoint.CONFIG_NAME).is_file():
            path = path.parent  # a file of a masktok folder names the folder
        if config is None and not (path.is_dir() and (path / checkpoint.CONFIG_NAME).is_file()
                                   and not checkpoint.is_lmm_folder(path) and not checkpoint.is_vlm_folder(path)):
            config = cls.read_sidecar_config(path if path.is_dir() else path.parent)
        if checkpoint.is_lmm_folder(path):  # InternVL2.5-HiMTok: HiMTok inside the weight shards
            return cls.from_official_state(checkpoint.read_lmm_shards(path), str(path), device=device,
                                           dtype=dtype, config=config, **init_options)
        if path.is_dir() and checkpoint.is_vlm_folder(path):  # a VLM's config.json beside himtok.pth
            return cls._from_official_file(path / checkpoint.OFFICIAL_NAME, device=device, dtype=dtype,
                                           config=config, **init_options)
        if path.is_dir() and (path / checkpoint.CONFIG_NAME).is_file():
            folder_config = checkpoint.read_folder_config(path)
            weights = path / checkpoint.WEIGHTS_NAME
            model = HiMTokModel(folder_config)
            checkpoint.load_state_dict_strict(model, checkpoint.read_state_dict(weights), str(weights))
            return cls(model=model, device=device, dtype=dtype, **init_options)
        official = checkpoint.find_official_file(path)
        if official is None:
            raise ValueError(f"{path} is neither a HiMTok folder (config.json + {checkpoint.WEIGHTS_NAME}) "
                             f"nor an official checkpoint file / folder holding {checkpoint.OFFICIAL_NAME}")
        return cls._from_official_file(official, device=device, dtype=dtype, config=config, **init_options)

    @classmethod
    def _from_official_file(cls, path: Path, *, device: str | torch.device, dtype: torch.dtype | None,
                            config: HiMTokConfig | None = None, **init_options: Any) -> "HiMTok":
        """An official-layout checkpoint file (prefixes ``module.`` / ``mask_decoder.`` allowed)."""
        state = checkpoint.strip_official_prefixes(checkpoint.read_state_dict(path))
        return cls.from_official_state(state, str(path), device=device, dtype=dtype, config=config, **init_options)

    @classmethod
    def from_official_state(cls, state: dict[str, torch.Tensor], source: str, *, device: str | torch.device = "cpu",
                            dtype: torch.dtype | None = None, config: HiMTokConfig | None = None,
                            **init_options: Any) -> "HiMTok":
        """An official-layout state dict already in memory (no prefixes; e.g. the ``mask_decoder.*``
        tensors of InternVL2.5-HiMTok shards) → tokenizer, loaded strictly but for
        :data:`~masktok.tokenizers.himtok.checkpoint.BENIGN_OFFICIAL_DIFFERENCES`; ``source``
        names it in errors. ``config`` default: :func:`official_config`."""
        config = config or official_config()
        if config.quantizer == "vq":  # every buffer is persistent: skip the random init
            with torch.device("meta"):
                model = HiMTokModel(config)
            model = model.to_empty(device="cpu")
        else:
            model = HiMTokModel(config)
        state = checkpoint.fill_benign_official_keys(model, state, source)
        checkpoint.load_state_dict_strict(model, state, source)
        return cls(model=model, device=device, dtype=dtype, **init_options)

    def _save(self, folder: Path, layout: str) -> None:
        """``masktok``: ``config.json`` + ``model.safetensors`` (weights in the current dtype);
        ``official``: ``himtok.pth``, the official flat torch state dict."""
        if layout == "official":
            checkpoint.save_official(self.model, folder / checkpoint.OFFICIAL_NAME)
        else:
            checkpoint.save_folder(self.model, self.config, folder)

    # ---- vocabulary ---------------------------------------------------------------------------
    def _make_vocabulary(self) -> "MaskVocabulary":
        """The mask-word vocabulary: ``<|mt_start|>``, ``<|mt_end|>``, ``<|mt_{code}|>``."""
        from masktok.words import himtok_vocabulary

        return himtok_vocabulary(codebook_size=self.config.codebook_size, max_codes=self.config.max_codes)

    # ---- encoding -----------------------------------------------------------------------------
    def prepare_masks(self, masks: Any) -> torch.Tensor:
        """masks (N, H, W) binary → model input (N, in_channels, S, S) in the model dtype/device.

        Stretched to S×S as ``config.mask_resize`` says: bilinear interpolation of the 0/1 map
        (soft values at edges), or the official path (8-bit image, PIL bicubic, / 255).
        """
        binary = _as_binary_masks(masks)
        size = self.config.image_size
        if self.config.mask_resize == "pil_bicubic" and binary.shape[0] > 0:
            x = _pil_bicubic_frames(binary, size).to(self.device)
        else:
            x = binary.to(device=self.device, dtype=torch.float32).unsqueeze(1)
            if x.shape[-2:] != (size, size) and x.shape[0] > 0:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return x.to(self.dtype).expand(-1, self.config.in_channels, -1, -1)

    def prepare_box_frames(self, masks: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Box-first models: masks (N, H, W) binary, none empty → (box codes (N, 4) int64,
        model input (N, in_channels, S, S)) on the device: each mask's frame (its tight box, or
        the outward-rounded box of its codes) stretched to S×S (bilinear)."""
        binary = _as_binary_masks(masks).to(self.device)
        empty = torch.nonzero(~binary.flatten(1).any(dim=1)).flatten().tolist()
        if empty:
            raise ValueError(f"masks {empty[:10]} are empty: a box-first tokenizer encodes a mask by its box, "
                             f"which needs at least one foreground pixel")
        return self._box_frames(binary)

    def _box_frames(self, binary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Non-empty bool masks (N, H, W) on the device → (box codes (N, 4), frames (N, C, S, S))."""
        bins = self.config.codebook_size
        boxes = tight_boxes(binary)
        sizes = torch.tensor(binary.shape[1:], device=binary.device).expand(binary.shape[0], 2)
        codes = box_to_codes(boxes, sizes, bins, self.config.box_rounding)
        if self.config.box_rounding == "outward":
            boxes = codes_to_box(codes, sizes, bins)
        frames = crop_box_frames(binary, boxes, self.config.image_size)
        return codes, frames.to(self.dtype).expand(-1, self.config.in_channels, -1, -1)

    @torch.inference_mode()
    def _encode_pairs(self, pairs: Iterable[tuple[Any, Any]], *,
                      batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The non-empty masks of ``batch_size`` pairs at a time share the model passes (the image
        is not read, a path must name a file). Masks on the host travel to the device in chunks of
        at most ``mask_batch_size`` masks and 256 MiB; at most about ``2 · mask_batch_size``
        frames wait for a model pass. Box-first models: 4 box codes + the shape codes of the
        frame, found on the device."""
        source, offset = iter(pairs), 0
        while group := list(islice(source, batch_size)):
            for image, _ in group:
                _check_unread_image(image)
            stacks = [_as_binary_masks(masks, f"masks[{offset + i}]") for i, (_, masks) in enumerate(group)]
            codes = [torch.zeros(stack.shape[0], self.max_codes, dtype=torch.long) for stack in stacks]
            present = [torch.zeros(stack.shape[0], dtype=torch.bool) for stack in stacks]
            pending: list[tuple[int, torch.Tensor, torch.Tensor | None, torch.Tensor]] = []
            for index, stack in enumerate(stacks):
                mask_bytes = stack[0].numel() if len(stack) else 1
                per_chunk = max(1, min(self.mask_batch_size, CHUNK_BYTES // max(1, mask_bytes)))
                for start in range(0, stack.shape[0], per_chunk):
                    part = stack[start:start + per_chunk].to(self.device, non_blocking=True)
                    flags = part.flatten(1).any(dim=1)
                    rows = torch.nonzero(flags).flatten().cpu() + start
                    present[index][rows] = True
                    if rows.numel():
                        box_codes, frames = self._model_inputs(part[flags])
                        pending.append((index, rows, box_codes, frames))
                    if sum(p[1].numel() for p in pending) >= self.mask_batch_size:
                        self._encode_frames(pending, codes)
                        pending = []
            self._encode_frames(pending, codes)
            yield from zip(codes, present)
            offset += len(group)

    def _model_inputs(self, masks: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Non-empty masks (N, H, W) bool on the device → (box codes (N, 4) or None, model input
        (N, C, S, S))."""
        if self.config.box_prefix:
            return self._box_frames(masks)
        return None, self.prepare_masks(masks)

    def _encode_frames(self, pending: list[tuple[int, torch.Tensor, torch.Tensor | None, torch.Tensor]],
                       codes: list[torch.Tensor]) -> None:
        """Encode the waiting frames in passes of ``mask_batch_size`` and write each mask's codes
        (box codes first) into its pair's rows."""
        if not pending:
            return
        frames = torch.cat([p[3] for p in pending])
        shape_codes = torch.cat([self.model.encode(frames[i:i + self.mask_batch_size]).codes
                                 for i in range(0, frames.shape[0], self.mask_batch_size)])
        if self.config.box_prefix:
            shape_codes = torch.cat([torch.cat([p[2] for p in pending]), shape_codes], dim=1)
        shape_codes = shape_codes.cpu()
        start = 0
        for index, rows, _, _ in pending:
            codes[index][rows] = shape_codes[start:start + rows.numel()]
            start += rows.numel()

    # ---- decoding -----------------------------------------------------------------------------
    def _check_code_batch(self, codes: Any, lengths: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        codes = torch.as_tensor(codes) if not isinstance(codes, torch.Tensor) else codes
        if codes.ndim != 2:
            raise ValueError(f"codes must have shape (N, L), got {tuple(codes.shape)}")
        if not 1 <= codes.shape[1] <= self.max_codes:
            raise ValueError(f"codes must hold a prefix of 1 to {self.max_codes} codes per mask, "
                             f"got length {codes.shape[1]}")
        codes = check_codes(codes, self.config.codebook_size)
        if lengths is None:
            return codes, None
        lengths = torch.as_tensor(lengths)
        if lengths.shape != (codes.shape[0],) or lengths.dtype.is_floating_point:
            raise ValueError(f"lengths must be an int tensor of shape ({codes.shape[0]},), got "
                             f"{tuple(lengths.shape)} {lengths.dtype}")
        if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > codes.shape[1]):
            raise ValueError(f"lengths must lie in [1, {codes.shape[1]}] (the codes' width)")
        return codes, lengths.long().cpu()

    @torch.inference_mode()
    def decode_logits(self, codes: Any, lengths: Any = None, batch_size: int | None = None) -> torch.Tensor:
        """codes (N, L), 1 ≤ L ≤ max_codes, optional per-row kept lengths (N,) → logits (N, S, S) float32 (CPU).

        Whole-image models: the model frame. Box-first models: the *box* frame of the shape codes
        (a row with no shape code left gets +inf: its box is filled); :meth:`decode` pastes it.
        """
        codes, lengths = self._check_code_batch(codes, lengths)
        return self._frame_logits(codes, lengths, self._batch(batch_size)).cpu()

    def _frame_logits(self, codes: torch.Tensor, lengths: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """Checked codes and lengths (CPU) → frame logits (N, S, S) float32 on the device."""
        size, skip = self.config.image_size, self.config.box_codes
        count = codes.shape[0]
        out = torch.full((count, size, size), float("inf"), device=self.device)
        if codes.shape[1] <= skip:
            return out
        codes = codes.to(self.device, non_blocking=True)
        if lengths is None:
            for i in range(0, count, batch_size):
                out[i:i + batch_size] = self.model.decode_codes(codes[i:i + batch_size, skip:])[:, 0].float()
            return out
        shape_lengths = lengths - skip
        decodable = torch.nonzero(shape_lengths > 0).flatten()
        for i in range(0, decodable.numel(), batch_size):
            rows = decodable[i:i + batch_size].to(self.device)
            part = shape_lengths[decodable[i:i + batch_size]].to(self.device)
            out[rows] = self.model.decode_codes(codes[rows, skip:], part)[:, 0].float()
        return out

    def _boxes(self, codes: torch.Tensor, lengths: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        """Box-first: the rows' checked codes (N, L) → (N, 4) boxes in pixels of ``size``, on the device."""
        sizes = torch.tensor(size, device=self.device).expand(codes.shape[0], 2)
        counts = None if lengths is None else lengths.to(self.device)
        box_codes = codes[:, :self.config.box_codes].to(self.device)
        return codes_to_box(box_codes, sizes, self.config.codebook_size, counts=counts)

    @torch.inference_mode()
    def decode_probabilities(self, codes: Any, lengths: Any = None, batch_size: int | None = None) -> torch.Tensor:
        """codes (N, L) → mask probabilities (N, S, S) float32 in the S×S model frame (CPU); for
        box-first models the whole mask's S×S frame, the box frame pasted into it."""
        codes, lengths = self._check_code_batch(codes, lengths)
        logits = self._frame_logits(codes, lengths, self._batch(batch_size))
        if not self.config.box_prefix:
            return torch.sigmoid(logits).cpu()
        size = (self.config.image_size, self.config.image_size)
        return paste_dense(torch.sigmoid(logits), self._boxes(codes, lengths, size), size, None).cpu()

    @torch.inference_mode()
    def _decode_pairs(self, images: Sequence[Any], codes: list[torch.Tensor], *, lengths: list[torch.Tensor],
                      sizes: Sequence[tuple[int, int] | None], threshold: float | None, return_logits: bool,
                      batch_size: int, output: str = "host") -> list[torch.Tensor | list[dict]]:
        """codes (N, L) → masks (N, H, W) at the size asked for (default: the S×S model frame),
        stretched (box-first: pasted only inside each box). ``threshold`` applies to the
        probability (default 0.5); ``return_logits`` gives float32 logits (box-first: −inf
        outside the box). ``output``: "host" (CPU tensors), "device" (left on the tokenizer's
        device) or "rle" (COCO RLE dicts whose runs are found on the device). The model decodes
        ``mask_batch_size`` masks per call. The images are not read (a path must name a file)."""
        del batch_size
        for image in images:
            _check_unread_image(image)
        threshold = _check_threshold(threshold)
        output = check_output(output, return_logits)
        out = []
        for rows, kept, size in zip(codes, lengths, sizes):
            height, width = _check_size(size, self.config.image_size)
            rows, kept = self._check_code_batch(rows, kept)
            if kept is not None and bool((kept == rows.shape[1]).all()):
                kept = None  # every row whole: the model's full-length path
            logits = self._frame_logits(rows, kept, self.mask_batch_size)
            if self.config.box_prefix:
                out.append(self._paste(torch.sigmoid(logits), self._boxes(rows, kept, (height, width)),
                                       (height, width), threshold, return_logits, output))
            else:
                out.append(self._finish(logits, (height, width), threshold, return_logits, output))
        return out

    def _paste(self, probs: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], threshold: float,
               return_logits: bool, output: str) -> torch.Tensor | list[dict]:
        """Box-first: frame probabilities (N, S, S) and boxes (N, 4) on the device → the output."""
        if output == "rle":
            return paste_rles(probs, boxes, size, threshold)
        if not return_logits:
            if output == "host" or self.device.type == "cpu":  # only the tiles cross to the host
                return paste_host(probs, boxes, size, threshold)
            return paste_dense(probs, boxes, size, threshold)

        def logits(rows: slice) -> torch.Tensor:
            return _probability_logits(paste_dense(probs[rows], boxes[rows], size, None))

        if output == "device" or self.device.type == "cpu":
            return logits(slice(None))
        # To the host in chunks: the device holds at most CHUNK_BYTES of dense logits at a time.
        count = probs.shape[0]
        host = torch.empty(count, *size, dtype=torch.float32)
        per_chunk = max(1, CHUNK_BYTES // (4 * size[0] * size[1]))
        for start in range(0, count, per_chunk):
            host[start:start + per_chunk] = logits(slice(start, start + per_chunk)).cpu()
        return host

    @torch.inference_mode()
    def decode_soft(self, code_probs: torch.Tensor, *, image: Any = None, size: Sequence[int] | None = None,
                    threshold: float | None = None, return_logits: bool = False,
                    renormalize: bool | None = None, batch_size: int | None = None, output: str = "host"
                    ) -> torch.Tensor | list[dict]:
        """Soft decoding: code_probs (N, T, V), T ≤ max_codes → masks (N, H, W) (as :meth:`decode`;
        the image is not read). ``code_probs_from_logits`` makes the probabilities from a VLM's
        logits; ``batch_size``: masks per model call (default ``mask_batch_size``).

        Position t's token is the probability-weighted codebook mixture; ``renormalize`` as in
        :meth:`CosineVectorQuantizer.soft_lookup` (True: one-hot rows decode exactly like hard
        codes; False: the official LMM's raw mixture); None: ``config.soft_renormalize`` (False
        for the official model, so its default reproduces the official path).
        """
        _check_unread_image(image)
        renormalize = self.config.soft_renormalize if renormalize is None else bool(renormalize)
        if not isinstance(code_probs, torch.Tensor) or code_probs.ndim != 3:
            raise ValueError(f"code_probs must be a tensor of shape (N, T, V), got "
                             f"{getattr(code_probs, 'shape', type(code_probs).__name__)}")
        if not 1 <= code_probs.shape[1] <= self.max_codes:
            raise ValueError(f"code_probs must cover 1 to {self.max_codes} code positions, "
                             f"got {code_probs.shape[1]}")
        height, width = _check_size(size, self.config.image_size)
        threshold = _check_threshold(threshold)
        output = check_output(output, return_logits)
        batch_size = self._batch(batch_size)
        skip, size_frame = self.config.box_codes, self.config.image_size
        count = code_probs.shape[0]
        logits = torch.full((count, size_frame, size_frame), float("inf"), device=self.device)
        if code_probs.shape[1] > skip:
            for i in range(0, count, batch_size):
                chunk = code_probs[i:i + batch_size, skip:].to(self.device)
                logits[i:i + batch_size] = self.model.decode_code_probs(chunk, renormalize=renormalize)[:, 0].float()
        if not self.config.box_prefix:
            return self._finish(logits, (height, width), threshold, return_logits, output)
        sizes = torch.tensor([height, width], device=self.device).expand(count, 2)
        boxes = soft_codes_to_box(code_probs[:, :skip].float().to(self.device), sizes)
        return self._paste(torch.sigmoid(logits), boxes, (height, width), threshold, return_logits, output)

    def _finish(self, logits: torch.Tensor, size: tuple[int, int], threshold: float,
                return_logits: bool, output: str) -> torch.Tensor | list[dict]:
        """Whole-image models: frame logits (N, S, S) on the device → the output at ``size``."""
        maps = logits if return_logits else torch.sigmoid(logits)
        if maps.shape[-2:] != size and maps.shape[0] > 0:
            maps = F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]
        elif maps.shape[0] == 0:
            maps = maps.new_zeros(0, *size)
        if not return_logits:
            maps = maps > threshold
        if output == "rle":
            from masktok.masks import masks_to_rles_torch

            return masks_to_rles_torch(maps)
        return maps if output == "device" else maps.cpu()
