"""``MaskTokenizerBase``: everything of :class:`~masktok.tokenizers.base.MaskTokenizer` that does
not depend on the model, written once for every family.

A family subclasses it and supplies:

* class attributes ``family``, ``display_name``, ``needs_image`` (and ``official_layout`` when
  it has an official checkpoint format);
* ``_build_model(config)`` (random weights), ``_load(path, *, device, dtype, **options)``
  (a local file or folder), ``_save(folder, layout)``;
* ``_make_vocabulary()``;
* ``_encode_pairs(pairs, *, batch_size, **options)`` → per (image, masks) pair the codes of
  every mask (N, max_codes) and which masks have a foreground pixel (N,) bool;
* ``_decode_pairs(images, codes, *, lengths, sizes, threshold, return_logits, batch_size,
  **options)`` → per image the decoded masks (rows of absent masks never reach it).

The base turns these into the public API: ``encode`` / ``encode_batch`` / ``encode_stream``
(``num_codes`` prefixes and the empty-mask policy), ``decode`` / ``decode_batch`` (absent rows),
``encode_words`` / ``decode_words`` (bounded memory for many spans), ``from_config`` /
``from_pretrained`` (local paths and hub ids) / ``save_pretrained``.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator, Sequence

import numpy as np
import torch

from masktok.devices import resolve_device
from masktok.json_files import read_json_object
from masktok.tokenizers.base import (
    ABSENT_CODE,
    DEFAULT_EMPTY_MASKS,
    SAVE_LAYOUTS,
    DecodedWords,
    check_empty_masks,
    check_output,
)
from masktok.tokenizers.hub import resolve_pretrained

if TYPE_CHECKING:  # pragma: no cover
    from masktok.words import MaskVocabulary

DECODE_CHUNK_SPANS = 64  # spans decoded per call by decode_words (bounds its float work memory)


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA, float32 elsewhere."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


class MaskTokenizerBase(ABC):
    """The shared implementation behind every mask tokenizer (module docstring).

    Args (keyword-only, in this order for every family):
        model: the family's network (moved to ``device`` and cast to ``dtype`` by the family).
        device: where it runs.
        dtype: compute dtype; default bf16 on CUDA, float32 elsewhere.
        mask_batch_size: most masks per model pass.
    """

    family: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    needs_image: ClassVar[bool] = True
    soft_decoding: ClassVar[bool] = False  # whether decode_soft takes per-position code probabilities
    official_layout: ClassVar[str | None] = None  # what save_pretrained(layout="official") writes
    official_files: ClassVar[tuple[str, ...]] = ()  # glob patterns of the official files it reads
    config_class: ClassVar[type | None] = None  # the model config (from_dict / to_dict)
    hub_files: ClassVar[tuple[str, ...]] = ("config.json", "model.safetensors")

    def __init__(self, *, model: Any, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 mask_batch_size: int = 256) -> None:
        self.device = resolve_device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.dtype = dtype or default_dtype(self.device)
        self.mask_batch_size = _positive_int(mask_batch_size, "mask_batch_size")
        self.model = model
        self._vocabulary: "MaskVocabulary | None" = None

    # ---- family hooks ------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def _build_model(cls, config: Any) -> Any:
        """The family's network with random weights for ``config``."""

    @classmethod
    @abstractmethod
    def _load(cls, path: Path, *, device: str | torch.device, dtype: torch.dtype | None,
              **options: Any) -> "MaskTokenizerBase":
        """The tokenizer stored at the local file or folder ``path``."""

    @abstractmethod
    def _save(self, folder: Path, layout: str) -> None:
        """Write the weights in ``layout`` ("masktok" or "official") into the existing ``folder``."""

    @abstractmethod
    def _make_vocabulary(self) -> "MaskVocabulary":
        """The words this model's codes are spelt with."""

    @abstractmethod
    def _encode_pairs(self, pairs: Iterable[tuple[Any, Any]], *, batch_size: int,
                      **options: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Per (image, masks (N, H, W)) pair, in order: codes (N, max_codes) int64 on the CPU
        (any values in the rows of empty masks) and which masks have a foreground pixel (N,) bool."""

    @abstractmethod
    def _decode_pairs(self, images: Sequence[Any], codes: list[torch.Tensor], *, lengths: list[torch.Tensor],
                      sizes: Sequence[tuple[int, int] | None], threshold: float | None, return_logits: bool,
                      batch_size: int, **options: Any) -> list[torch.Tensor]:
        """Per image: codes (N_i, L_i) int64 CPU (no absent row), kept lengths (N_i,) and the
        output size (None: the family's default) → masks (N_i, H_i, W_i) on the CPU."""

    # ---- construction, loading, saving -------------------------------------------------------
    @classmethod
    def from_config(cls, config: Any, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                    seed: int | None = None, **options: Any) -> "MaskTokenizerBase":
        """A tokenizer with random weights (tests, benchmarks, training from scratch)."""
        if seed is not None:
            torch.manual_seed(seed)
        return cls(model=cls._build_model(config), device=device, dtype=dtype, **options)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, revision: str | None = None,
                        cache_dir: str | Path | None = None, local_files_only: bool = False,
                        **options: Any) -> "MaskTokenizerBase":
        """Load from a local file or folder, or a hub repository id ``"org/name"``.

        A repository id that is not a local path is opened through the hub client's cache
        (:func:`~masktok.tokenizers.hub.resolve_pretrained`: ``revision``, ``cache_dir``,
        ``local_files_only``). ``options`` are the family's (e.g. SAMTok ``sam2_checkpoint``,
        ``compile``; both: ``config``, ``mask_batch_size``); an option the family does not take
        raises ``ValueError`` naming it.
        """
        cls.check_options(options)
        device = resolve_device(device)  # before a (slow) download or load
        local = resolve_pretrained(path, revision=revision, cache_dir=cache_dir,
                                   local_files_only=local_files_only, allow_patterns=cls.hub_files)
        return cls._load(local, device=device, dtype=dtype, **options)

    @classmethod
    def sidecar_config_name(cls) -> str:
        """``<family>_config.json``: the model config a folder may keep beside official files (an
        official file of another size than the published models needs it: head counts and
        window sizes cannot be read off tensor shapes)."""
        return f"{cls.family}_config.json"

    @classmethod
    def read_sidecar_config(cls, folder: str | Path) -> Any:
        """The :meth:`sidecar_config_name` config in ``folder`` as a :attr:`config_class`, or None
        when there is none; ``ValueError`` naming the file when it does not parse."""
        path = Path(folder) / cls.sidecar_config_name()
        if cls.config_class is None or not path.is_file():
            return None
        return cls.config_class.from_dict(read_json_object(path))

    @classmethod
    def accepted_options(cls) -> tuple[str, ...]:
        """The keyword options ``from_pretrained`` passes on (the family's ``_load`` and constructor)."""
        names = _keyword_names(cls._load) | _keyword_names(cls.__init__)
        return tuple(sorted(names - {"model", "device", "dtype"}))

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """``ValueError`` naming every option this family does not take."""
        accepted = cls.accepted_options()
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(f"{cls.display_name or cls.__name__} does not take the option(s) {unknown}; "
                             f"it takes {list(accepted)}")

    def save_pretrained(self, path: str | Path, *, layout: str = "masktok") -> None:
        """``layout="masktok"``: ``config.json`` + ``model.safetensors`` in folder ``path``;
        ``layout="official"``: the family's official checkpoint (:attr:`official_layout`) in
        folder ``path``. ``from_pretrained(path)`` reads either back."""
        if layout not in SAVE_LAYOUTS:
            raise ValueError(f"layout: expected one of {SAVE_LAYOUTS}, got {layout!r}")
        if layout == "official" and self.official_layout is None:
            raise ValueError(f"layout='official': {self.display_name} has no official checkpoint format")
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"save_pretrained: {folder} is a file; give a folder")
        folder.mkdir(parents=True, exist_ok=True)
        self._save(folder, layout)

    # ---- vocabulary --------------------------------------------------------------------------
    @property
    def vocabulary(self) -> "MaskVocabulary":
        """The words' :class:`~masktok.words.MaskVocabulary` (made once)."""
        if self._vocabulary is None:
            self._vocabulary = self._make_vocabulary()
        return self._vocabulary

    @property
    def max_codes(self) -> int:
        """Most codes per mask."""
        return self.vocabulary.max_codes

    def check_num_codes(self, num_codes: Any) -> int:
        """``num_codes`` (None: all) as the kept prefix length in [1, max_codes]; ValueError otherwise."""
        if num_codes is None:
            return self.max_codes
        if isinstance(num_codes, bool) or not isinstance(num_codes, (int, np.integer)) \
                or not 1 <= num_codes <= self.max_codes:
            raise ValueError(f"num_codes: expected an int in [1, {self.max_codes}] for {self.display_name}, "
                             f"got {num_codes!r}")
        return int(num_codes)

    # ---- images ------------------------------------------------------------------------------
    def embed_image(self, image: Any, **options: Any) -> Any:
        """What encode/decode take in place of ``image`` without recomputing it. Here: ``image``
        itself (an image-free tokenizer computes nothing from it); families with an image encoder
        return a reusable embedding."""
        return image

    def capture_image_encoder(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """Record CUDA graphs of the image encoder for these batch sizes. Here: nothing to record
        (no image encoder); families with one override this."""

    # ---- encode ------------------------------------------------------------------------------
    def encode(self, image: Any, masks: Any, *, num_codes: int | None = None,
               empty_masks: str = DEFAULT_EMPTY_MASKS, **options: Any) -> torch.Tensor:
        """Masks (N, H, W) binary (at the image's size when the tokenizer reads it) → codes
        (N, num_codes or max_codes) int64 on the CPU; N may be 0. ``empty_masks``: the policy of
        :mod:`masktok.tokenizers.base` (error / skip / keep)."""
        _refuse_batch_size(options, "encode")
        return next(self._encode_checked([(image, masks)], num_codes, 1, empty_masks, lambda index: "masks", options))

    def encode_batch(self, images: Sequence[Any], masks: Sequence[Any], *, num_codes: int | None = None,
                     batch_size: int = 8, empty_masks: str = DEFAULT_EMPTY_MASKS,
                     **options: Any) -> list[torch.Tensor]:
        """Per-image mask stacks → per-image codes (N_i, L); ``batch_size`` images per model pass."""
        if len(images) != len(masks):
            raise ValueError(f"got {len(images)} images but {len(masks)} mask lists")
        return list(self.encode_stream(list(zip(images, masks)), num_codes=num_codes, batch_size=batch_size,
                                       empty_masks=empty_masks, **options))

    def encode_stream(self, pairs: Iterable[tuple[Any, Any]], *, num_codes: int | None = None,
                      batch_size: int = 8, empty_masks: str = DEFAULT_EMPTY_MASKS,
                      **options: Any) -> Iterator[torch.Tensor]:
        """(image, masks (N_i, H_i, W_i) or :class:`~masktok.masks.BitMasks`) pairs, e.g. from a
        data loader, read lazily → codes (N_i, L) per pair, in order. Empty masks follow
        ``empty_masks``; under ``"error"`` the first one raises ``ValueError`` naming
        ``masks[i][j]`` when its pair's codes come back."""
        return self._encode_checked(pairs, num_codes, batch_size, empty_masks, lambda index: f"masks[{index}]",
                                    options)

    def _encode_checked(self, pairs: Iterable[tuple[Any, Any]], num_codes: int | None, batch_size: int,
                        empty_masks: str, name: Any, options: dict[str, Any]) -> Iterator[torch.Tensor]:
        """:meth:`encode_stream` with the arguments checked before the first pair is read;
        ``name(index)`` names a pair's masks in messages."""
        length = self.check_num_codes(num_codes)
        policy = check_empty_masks(empty_masks)
        _positive_int(batch_size, "batch_size")
        _check_hook_options(self._encode_pairs, options, {"batch_size"}, f"{self.display_name} encoding")
        encoded = self._encode_pairs(pairs, batch_size=batch_size, **options)
        return (_apply_empty_policy(codes[:, :length], present, policy, name(index))
                for index, (codes, present) in enumerate(encoded))

    # ---- decode ------------------------------------------------------------------------------
    def decode(self, image: Any, codes: Any, *, size: tuple[int, int] | None = None,
               threshold: float | None = None, return_logits: bool = False, lengths: Any = None,
               output: str = "host", **options: Any) -> torch.Tensor | list[dict]:
        """Codes (N, L), a prefix of 1 … max_codes positions → masks (N, H, W) bool (or float32
        logits with ``return_logits``). ``lengths`` (N,) decodes row i from its first
        ``lengths[i]`` codes; a row of :data:`~masktok.tokenizers.base.ABSENT_CODE` decodes to an
        empty mask. ``size``: the output (H, W) (default: the family's, see its ``decode_batch``).
        ``output``: ``"host"`` (CPU tensors, the default), ``"device"`` (left on the tokenizer's
        device) or ``"rle"`` (N compressed COCO RLE dicts)."""
        _refuse_batch_size(options, "decode")
        return self.decode_batch([image], [codes], sizes=None if size is None else [size], threshold=threshold,
                                 return_logits=return_logits, lengths=None if lengths is None else [lengths],
                                 batch_size=1, output=output, **options)[0]

    def decode_batch(self, images: Sequence[Any], codes: Sequence[Any], *,
                     sizes: Sequence[tuple[int, int] | None] | None = None, threshold: float | None = None,
                     return_logits: bool = False, lengths: Sequence[Any] | None = None, batch_size: int = 8,
                     output: str = "host", **options: Any) -> list[torch.Tensor | list[dict]]:
        """Per-image codes (N_i, L_i) → per-image masks (N_i, H_i, W_i) (as :meth:`decode`). A
        family whose ``_decode_pairs`` takes ``output`` makes device masks or RLE itself (e.g.
        HiMTok finds RLE runs on the device); otherwise its host masks are moved or encoded here."""
        if len(images) != len(codes):
            raise ValueError(f"got {len(images)} images but {len(codes)} code tensors")
        if sizes is not None and len(sizes) != len(images):
            raise ValueError(f"got {len(images)} images but {len(sizes)} output sizes")
        if lengths is not None and len(lengths) != len(images):
            raise ValueError(f"got {len(images)} images but {len(lengths)} length tensors")
        _positive_int(batch_size, "batch_size")
        output = check_output(output, return_logits)
        _check_hook_options(self._decode_pairs, options, _DECODE_ARGUMENTS, f"{self.display_name} decoding")
        native = "output" in _keyword_names(self._decode_pairs)
        rows, row_lengths, absent = [], [], []
        for i, c in enumerate(codes):
            checked = self._code_rows(c, f"codes[{i}]")
            gone = (checked == ABSENT_CODE).all(dim=1) if checked.shape[1] else torch.zeros(0, dtype=torch.bool)
            kept_lengths = self._lengths(None if lengths is None else lengths[i], checked, f"lengths[{i}]")
            rows.append(checked[~gone])
            row_lengths.append(kept_lengths[~gone])
            absent.append(gone)
        out_sizes = [None] * len(images) if sizes is None else list(sizes)
        decoded = self._decode_pairs(list(images), rows, lengths=row_lengths, sizes=out_sizes, threshold=threshold,
                                     return_logits=return_logits, batch_size=batch_size,
                                     **({"output": output} if native else {}), **options)
        if not native:
            decoded = [self._converted(masks, output) for masks in decoded]
        out = []
        for i, (masks, gone) in enumerate(zip(decoded, absent)):
            if output == "rle" and bool(gone.any()):
                size = self._output_size(images[i], out_sizes[i], threshold, options)
                out.append(_restore_absent_rles(masks, gone, size))
            else:
                out.append(_restore_absent(masks, gone, return_logits))
        return out

    def _converted(self, masks: torch.Tensor, output: str) -> torch.Tensor | list[dict]:
        """A family's host masks (N, H, W) → ``output``."""
        if output == "device":
            return masks.to(self.device)
        if output == "rle":
            from masktok.masks import masks_to_rles_torch

            return masks_to_rles_torch(masks.to(self.device))
        return masks

    def _output_size(self, image: Any, size: tuple[int, int] | None, threshold: float | None,
                     options: dict[str, Any]) -> tuple[int, int]:
        """The (H, W) decoding gives for ``image`` at ``size`` (None: the family's default)."""
        if size is not None:
            return int(size[0]), int(size[1])
        empty = self._decode_pairs([image], [torch.zeros(0, 1, dtype=torch.long)],
                                   lengths=[torch.zeros(0, dtype=torch.long)], sizes=[None], threshold=threshold,
                                   return_logits=False, batch_size=1, **options)[0]
        return int(empty.shape[1]), int(empty.shape[2])

    def _code_rows(self, codes: Any, name: str) -> torch.Tensor:
        """codes → an (N, L) int64 CPU tensor with 1 ≤ L ≤ max_codes (N = 0 allowed)."""
        if not isinstance(codes, torch.Tensor):
            array = np.asarray(codes)
            if array.size == 0:
                array = array.reshape(0, self.max_codes).astype(np.int64)
            if array.dtype.kind not in "iu":
                raise ValueError(f"{name} must hold integer codes, got dtype {array.dtype}")
            codes = torch.from_numpy(array.astype(np.int64))
        if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer codes, got dtype {codes.dtype}")
        if codes.dim() != 2:
            raise ValueError(f"{name} must have shape (N, L), got {tuple(codes.shape)}")
        if not 1 <= codes.shape[1] <= self.max_codes and codes.shape[0] > 0:
            raise ValueError(f"{name} must hold a prefix of 1 to {self.max_codes} codes per mask, "
                             f"got length {codes.shape[1]}")
        return codes.detach().cpu().long()

    @staticmethod
    def _lengths(lengths: Any, codes: torch.Tensor, name: str) -> torch.Tensor:
        """Per-row kept lengths (N,) in [1, L] (default: L for every row)."""
        count, width = codes.shape
        if lengths is None:
            return torch.full((count,), width, dtype=torch.long)
        lengths = torch.as_tensor(lengths)
        if lengths.shape != (count,) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
            raise ValueError(f"{name} must be an int tensor of shape ({count},), got "
                             f"{tuple(lengths.shape)} {lengths.dtype}")
        if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > width):
            raise ValueError(f"{name} must lie in [1, {width}] (the codes' width)")
        return lengths.long().cpu()

    # ---- soft decoding -------------------------------------------------------------------------
    @staticmethod
    def code_probs_from_logits(logits: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
        """A VLM's logits over the code ids (..., V) → ``softmax(scale · logits)`` (HiMTok's
        official LMM decoding uses scale 2), the input of :meth:`decode_soft`."""
        return torch.softmax(scale * logits.float(), dim=-1)

    def decode_soft(self, code_probs: torch.Tensor, *, image: Any = None, size: tuple[int, int] | None = None,
                    threshold: float | None = None, return_logits: bool = False, **options: Any) -> torch.Tensor:
        """Per-position code probabilities (N, T, V) → masks (N, H, W), for families with
        :attr:`soft_decoding`; here a ``ValueError`` saying this family has none."""
        raise ValueError(f"decode_soft: {self.display_name} has no soft decoding (it decodes codes only); "
                         "decode the most likely codes with decode")

    # ---- words -------------------------------------------------------------------------------
    def encode_words(self, image: Any, masks: Any, *, num_codes: int | None = None,
                     empty_masks: str = DEFAULT_EMPTY_MASKS, **options: Any) -> list[str | None]:
        """Masks (N, H, W) → N mask-word strings (``<|mt_start|>…<|mt_end|>``); under
        ``empty_masks="keep"`` an empty mask's entry is ``None``. ``num_codes`` below the
        vocabulary's ``min_codes`` would not spell a word and raises ``ValueError``."""
        from masktok.words import format_mask_words

        vocab = self.vocabulary
        if num_codes is not None and self.check_num_codes(num_codes) < vocab.min_codes:
            raise ValueError(f"num_codes: a {vocab.name} word holds at least {vocab.min_codes} codes, "
                             f"got {num_codes}")
        codes = self.encode(image, masks, num_codes=num_codes, empty_masks=empty_masks, **options)
        return [None if bool((row == ABSENT_CODE).all()) else format_mask_words(row.tolist(), vocab)
                for row in codes]

    def decode_words(self, image: Any, text: str, *, size: tuple[int, int] | None = None, lenient: bool = False,
                     threshold: float | None = None, chunk_size: int = DECODE_CHUNK_SPANS,
                     max_spans: int | None = None, **options: Any) -> DecodedWords:
        """Every decodable mask span of ``text`` → masks (M, H, W) bool, plus the parse report.

        Strict mode raises on malformed words; lenient mode decodes what it can (e.g. a SAMTok
        word with its level-0 code only) and reports the rest. Memory is bounded by the masks
        asked for: spans are decoded ``chunk_size`` at a time into one preallocated (M, H, W)
        bool result, so the peak is M·H·W bytes plus one chunk's work (its float maps, about
        ``chunk_size``·H·W·8 bytes, and the model's activations for at most
        ``min(chunk_size, mask_batch_size)`` masks), whatever M is (BENCHMARKS.md: decode_words).
        ``max_spans`` (None: no cap) refuses texts with more decodable spans than that with a
        ``ValueError`` before anything is decoded. The image is embedded once for all chunks.
        """
        from masktok.words import parse_mask_words

        chunk_size = _positive_int(chunk_size, "chunk_size")
        spans = parse_mask_words(text, self.vocabulary, lenient=lenient)
        indices = [i for i, span in enumerate(spans) if span.decodable]
        if max_spans is not None and len(indices) > _positive_int(max_spans, "max_spans"):
            raise ValueError(f"text: {len(indices)} decodable mask spans, more than max_spans={max_spans}")
        embed_options = {k: v for k, v in options.items() if k in _keyword_names(self.embed_image)}
        decode_options = {k: v for k, v in options.items() if k not in embed_options}
        _check_hook_options(self._decode_pairs, decode_options, _DECODE_ARGUMENTS, f"{self.display_name} decoding")
        prepared = self.embed_image(image, **embed_options) if indices else image
        out: torch.Tensor | None = None
        for start in range(0, len(indices), chunk_size):
            part = [list(spans[i].codes) for i in indices[start: start + chunk_size]]
            width = max(len(codes) for codes in part)
            codes = torch.zeros(len(part), width, dtype=torch.long)
            for row, values in enumerate(part):
                codes[row, : len(values)] = torch.tensor(values, dtype=torch.long)
            lengths = torch.tensor([len(values) for values in part])
            masks = self.decode(prepared, codes, size=size, threshold=threshold, lengths=lengths, **decode_options)
            if out is None:
                out = torch.empty(len(indices), *masks.shape[1:], dtype=torch.bool)
            out[start: start + len(part)] = masks
        if out is None:
            out = self.decode(image, torch.zeros(0, 1, dtype=torch.long), size=size, threshold=threshold,
                              **decode_options)
        return DecodedWords(masks=out, spans=spans, decoded_span_indices=indices)


_DECODE_ARGUMENTS = frozenset({"lengths", "sizes", "threshold", "return_logits", "batch_size", "output"})


def _refuse_batch_size(options: dict[str, Any], method: str) -> None:
    """``batch_size`` of encode_batch / decode_batch counts images; a one-image call has none."""
    if "batch_size" in options:
        raise ValueError(f"batch_size: {method} takes one image; the masks per model pass are the tokenizer's "
                         f"mask_batch_size (an option of the constructor and of from_pretrained / load_tokenizer)")


def _keyword_names(function: Any) -> set[str]:
    """The keyword-only parameter names of ``function``."""
    return {p.name for p in inspect.signature(function).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _check_hook_options(hook: Any, options: dict[str, Any], fixed: Iterable[str], what: str) -> None:
    """``ValueError`` naming the ``options`` a family hook does not take (its keyword-only
    parameters less the ``fixed`` ones the base passes itself)."""
    accepted = sorted(_keyword_names(hook) - set(fixed))
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"{what} does not take the option(s) {unknown}; it takes {accepted}")


def _apply_empty_policy(codes: torch.Tensor, present: torch.Tensor, policy: str, name: str) -> torch.Tensor:
    """codes (N, L) of one pair + which masks have a foreground pixel (N,) → the policy's codes."""
    present = present.to(device="cpu", dtype=torch.bool)
    if bool(present.all()):
        return codes
    if policy == "error":
        empty = (~present).nonzero().flatten().tolist()
        others = f"; so are rows {empty[1:11]}" if len(empty) > 1 else ""
        raise ValueError(f"{name}[{empty[0]}] is empty (no foreground pixel{others}): pass empty_masks='skip' "
                         f"to leave empty masks out or 'keep' to keep an absent entry for them")
    if policy == "skip":
        return codes[present]
    codes = codes.clone()
    codes[~present] = ABSENT_CODE
    return codes


def _restore_absent(decoded: torch.Tensor, absent: torch.Tensor, return_logits: bool) -> torch.Tensor:
    """Masks of the present rows → masks of every row, absent rows empty (logits −inf), on the
    decoded masks' device."""
    if not bool(absent.any()):
        return decoded
    fill = float("-inf") if return_logits else 0
    out = torch.full((absent.shape[0], *decoded.shape[1:]), fill, dtype=decoded.dtype, device=decoded.device)
    out[~absent.to(decoded.device)] = decoded
    return out


def _restore_absent_rles(decoded: list[dict], absent: torch.Tensor, size: tuple[int, int]) -> list[dict]:
    """RLE of the present rows → RLE of every row, absent rows the RLE of an empty (H, W) mask."""
    from masktok.masks import mask_to_rle

    empty = mask_to_rle(np.zeros(size, dtype=bool))
    present = iter(decoded)
    return [dict(empty) if gone else next(present) for gone in absent.tolist()]
