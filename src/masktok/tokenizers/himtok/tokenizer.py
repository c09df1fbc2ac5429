"""The public HiMTok tokenizer: binary masks ⇄ up to K codes ⇄ mask words.

Image-free: the ``image`` argument of every method exists for interface parity with SAMTok and is
not read (a path given there must still name an existing file, so a typo is not silently ignored). Masks of any size are stretched to the model frame (256×256, bilinear, as the official
model) and decoded masks are stretched back to the size the caller asks for. Inputs may live on
any device; results come back on the CPU (codes int64, masks bool, maps float32).

Decoding accepts any prefix of the code sequence (1 … max_codes codes): missing latent slots are
zero-filled after the decoder's input linear. Soft decoding takes per-position code probabilities,
e.g. ``softmax(2 · logits)`` of an LMM restricted to the mask-code ids.

Box-first models (``config.box_prefix``, the default tokenizer) frame each mask by its tight box:
codes = 4 box codes + the shape codes of the box stretched to the model frame; decoding pastes the
decoded frame back into the box at the caller's size (:mod:`masktok.tokenizers.himtok.box_frame`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from masktok.masks.tensors import as_mask_tensor
from masktok.tokenizers.himtok import checkpoint
from masktok.tokenizers.himtok.box_frame import (
    box_to_codes,
    codes_to_box,
    crop_box_frames,
    paste_box_frames,
    soft_codes_to_box,
    tight_boxes,
)
from masktok.tokenizers.himtok.config import HiMTokConfig, get_config, official_config
from masktok.tokenizers.himtok.model import HiMTokModel
from masktok.tokenizers.quantizers.vq import check_codes
from masktok.tokenizers.tokenizer_base import MaskTokenizerBase

if TYPE_CHECKING:  # pragma: no cover
    from masktok.words import MaskVocabulary


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
        mask_batch_size: most masks per model pass.

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
                 mask_batch_size: int = 256) -> None:
        super().__init__(model=model, device=device, dtype=dtype, mask_batch_size=mask_batch_size)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.config: HiMTokConfig = model.config

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
        model input (N, in_channels, S, S)): each mask's tight box stretched to S×S (bilinear)."""
        binary = _as_binary_masks(masks).to(self.device)
        empty = torch.nonzero(~binary.flatten(1).any(dim=1)).flatten().tolist()
        if empty:
            raise ValueError(f"masks {empty[:10]} are empty: a box-first tokenizer encodes a mask by its box, "
                             f"which needs at least one foreground pixel")
        boxes = tight_boxes(binary)
        sizes = torch.tensor(binary.shape[1:], device=self.device).expand(binary.shape[0], 2)
        codes = box_to_codes(boxes, sizes, self.config.codebook_size)
        frames = crop_box_frames(binary, boxes, self.config.image_size)
        return codes, frames.to(self.dtype).expand(-1, self.config.in_channels, -1, -1)

    @torch.inference_mode()
    def _encode_pairs(self, pairs: Iterable[tuple[Any, Any]], *,
                      batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The non-empty masks of ``batch_size`` pairs at a time share the model passes (the image
        is ignored). Box-first models: 4 box codes + the shape codes of the box frame."""
        source, offset = iter(pairs), 0
        while group := list(islice(source, batch_size)):
            for image, _ in group:
                _check_unread_image(image)
            stacks = [_as_binary_masks(masks, f"masks[{offset + i}]") for i, (_, masks) in enumerate(group)]
            present = [stack.flatten(1).any(dim=1) for stack in stacks]
            prepared = [self._model_inputs(stack[flags]) for stack, flags in zip(stacks, present)]
            pixels = torch.cat([p[1] for p in prepared])
            shape_codes = [self.model.encode(pixels[i:i + self.mask_batch_size]).codes.cpu()
                           for i in range(0, pixels.shape[0], self.mask_batch_size)]
            shape_codes = (torch.cat(shape_codes) if shape_codes
                           else torch.zeros(0, self.config.latent_codes, dtype=torch.long))
            start = 0
            for stack, flags, (box_codes, frames) in zip(stacks, present, prepared):
                kept = shape_codes[start: start + frames.shape[0]]
                start += frames.shape[0]
                if box_codes is not None:
                    kept = torch.cat([box_codes.cpu(), kept], dim=1)
                codes = torch.zeros(stack.shape[0], self.max_codes, dtype=torch.long)
                codes[flags.cpu()] = kept
                yield codes, flags.cpu()
            offset += len(group)

    def _model_inputs(self, masks: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Non-empty masks (N, H, W) bool → (box codes (N, 4) or None, model input (N, C, S, S))."""
        box_codes = torch.zeros(0, self.config.box_codes, dtype=torch.long) if self.config.box_prefix else None
        if masks.shape[0] == 0:
            size = self.config.image_size
            return box_codes, torch.zeros(0, self.config.in_channels, size, size, dtype=self.dtype, device=self.device)
        if self.config.box_prefix:
            return self.prepare_box_frames(masks)
        return None, self.prepare_masks(masks)

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
        return codes, lengths.long()

    @torch.inference_mode()
    def decode_logits(self, codes: Any, lengths: Any = None, batch_size: int = 256) -> torch.Tensor:
        """codes (N, L), 1 ≤ L ≤ max_codes, optional per-row kept lengths (N,) → logits (N, S, S) float32 (CPU).

        Whole-image models: the model frame. Box-first models: the *box* frame of the shape codes
        (a row with no shape code left gets +inf: its box is filled); :meth:`decode` pastes it.
        """
        codes, lengths = self._check_code_batch(codes, lengths)
        return self._frame_logits(codes, lengths, batch_size)

    def _frame_logits(self, codes: torch.Tensor, lengths: torch.Tensor | None, batch_size: int = 256) -> torch.Tensor:
        """:meth:`decode_logits` for codes and lengths already checked."""
        size, skip = self.config.image_size, self.config.box_codes
        count = codes.shape[0]
        if lengths is None:
            lengths = torch.full((count,), codes.shape[1], dtype=torch.long)
        shape_lengths = lengths - skip
        out = torch.full((count, size, size), float("inf"))
        if codes.shape[1] <= skip:
            return out
        decodable = torch.nonzero(shape_lengths > 0).flatten()
        for i in range(0, decodable.numel(), batch_size):
            rows = decodable[i:i + batch_size]
            logits = self.model.decode_codes(codes[rows, skip:].to(self.device), shape_lengths[rows].to(self.device))
            out[rows] = logits[:, 0].float().cpu()
        return out

    def decode_probabilities(self, codes: Any, lengths: Any = None, batch_size: int = 256) -> torch.Tensor:
        """codes (N, L) → mask probabilities (N, S, S) float32 in the S×S model frame (CPU); for
        box-first models the whole mask's S×S frame, the box frame pasted into it."""
        if not self.config.box_prefix:
            return torch.sigmoid(self.decode_logits(codes, lengths, batch_size))
        size = self.config.image_size
        codes, lengths = self._check_code_batch(codes, lengths)
        return self._paste(self._frame_logits(codes, lengths, batch_size), codes, lengths, (size, size))

    def _decode_pairs(self, images: Sequence[Any], codes: list[torch.Tensor], *, lengths: list[torch.Tensor],
                      sizes: Sequence[tuple[int, int] | None], threshold: float | None, return_logits: bool,
                      batch_size: int) -> list[torch.Tensor]:
        """codes (N, L) → masks (N, H, W) bool at the size asked for (default: the S×S model
        frame), stretched. ``threshold`` applies to the probability (default 0.5);
        ``return_logits`` returns the float32 logits resized instead. The images are not read
        (a path must name a file)."""
        del batch_size
        for image in images:
            _check_unread_image(image)
        threshold = _check_threshold(threshold)
        out = []
        for rows, kept, size in zip(codes, lengths, sizes):
            height, width = _check_size(size, self.config.image_size)
            rows, kept = self._check_code_batch(rows, kept)
            logits = self._frame_logits(rows, kept, self.mask_batch_size)
            if self.config.box_prefix:
                probs = self._paste(logits, rows, kept, (height, width))
                out.append(_probability_logits(probs) if return_logits else probs > threshold)
            else:
                out.append(self._finish(logits, (height, width), threshold, return_logits))
        return out

    def _paste(self, frame_logits: torch.Tensor, codes: torch.Tensor, lengths: torch.Tensor | None,
               size: tuple[int, int]) -> torch.Tensor:
        """Box-first: box-frame logits (N, S, S) + the rows' checked box codes → probabilities (N, H, W)."""
        sizes = torch.tensor(size).expand(codes.shape[0], 2)
        boxes = codes_to_box(codes[:, :self.config.box_codes], sizes, self.config.codebook_size, counts=lengths)
        return paste_box_frames(torch.sigmoid(frame_logits), boxes, size)

    @torch.inference_mode()
    def decode_soft(self, code_probs: torch.Tensor, *, image: Any = None, size: Sequence[int] | None = None,
                    threshold: float | None = None, return_logits: bool = False,
                    renormalize: bool | None = None, batch_size: int = 256) -> torch.Tensor:
        """Soft decoding: code_probs (N, T, V), T ≤ max_codes → masks (N, H, W) (as :meth:`decode`;
        the image is not read). ``code_probs_from_logits`` makes the probabilities from a VLM's logits.

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
        skip, size_frame = self.config.box_codes, self.config.image_size
        out = []
        if code_probs.shape[1] > skip:
            for i in range(0, code_probs.shape[0], batch_size):
                chunk = code_probs[i:i + batch_size, skip:].to(self.device)
                out.append(self.model.decode_code_probs(chunk, renormalize=renormalize)[:, 0].float().cpu())
        else:  # box codes only: filled boxes
            out.append(torch.full((code_probs.shape[0], size_frame, size_frame), float("inf")))
        logits = torch.cat(out) if out else torch.zeros(0, size_frame, size_frame)
        if not self.config.box_prefix:
            return self._finish(logits, (height, width), threshold, return_logits)
        sizes = torch.tensor([height, width]).expand(code_probs.shape[0], 2)
        boxes = soft_codes_to_box(code_probs[:, :skip].float().cpu(), sizes)
        probs = paste_box_frames(torch.sigmoid(logits), boxes, (height, width))
        return _probability_logits(probs) if return_logits else probs > threshold

    def _finish(self, logits: torch.Tensor, size: tuple[int, int], threshold: float,
                return_logits: bool) -> torch.Tensor:
        if return_logits:
            maps = logits
        else:
            maps = torch.sigmoid(logits)
        if maps.shape[-2:] != size and maps.shape[0] > 0:
            maps = F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]
        elif maps.shape[0] == 0:
            maps = maps.new_zeros(0, *size)
        return maps if return_logits else maps > threshold
