"""The interface every mask tokenizer implements, so nothing downstream cares which one it holds.

Codes are integer tensors of shape (N, L): N masks, L code positions. For SAMTok L = depth (2)
and position d holds the level-d code in [0, codebook_size); for HiMTok L ≤ 32 positions of a
coarse-to-fine sequence in [0, 1024). A *prefix* (fewer positions) is always a valid input to
``decode``: SAMTok decodes level 0 alone, HiMTok zero-fills the missing slots.

Empty masks (no foreground pixel) follow one policy everywhere, the ``empty_masks`` option
(:data:`EMPTY_MASK_POLICIES`):

* ``"error"`` (the default): ``ValueError`` naming the first empty mask; nothing is encoded.
* ``"skip"``: empty masks are left out; the codes hold one row per non-empty mask, in order.
* ``"keep"``: an empty mask keeps its row as an explicit absent entry: every code
  :data:`ABSENT_CODE` (−1) in the codes, ``None`` in ``encode_words``'s list; ``decode`` turns
  an absent row back into an empty mask.

Zero masks are not an error: (0, H, W) masks give (0, L) codes and no words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from masktok.words import MaskSpan, MaskVocabulary

EMPTY_MASK_POLICIES = ("error", "skip", "keep")
ABSENT_CODE = -1  # every position of an absent mask's row (empty_masks="keep")
DEFAULT_EMPTY_MASKS = "error"
SAVE_LAYOUTS = ("masktok", "official")


OUTPUTS = ("host", "device", "rle")  # what decode returns: CPU tensors, device tensors, COCO RLE


def check_output(output: Any, return_logits: bool = False) -> str:
    """``output`` when it is one of :data:`OUTPUTS` (and not ``"rle"`` with logits), else ``ValueError``."""
    if not isinstance(output, str) or output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if output == "rle" and return_logits:
        raise ValueError("output='rle' holds binary masks; it cannot be combined with return_logits=True")
    return output


def check_empty_masks(policy: Any, name: str = "empty_masks") -> str:
    """``policy`` when it is one of :data:`EMPTY_MASK_POLICIES`, else ``ValueError`` naming ``name``."""
    if not isinstance(policy, str) or policy not in EMPTY_MASK_POLICIES:
        raise ValueError(f"{name}: expected one of {EMPTY_MASK_POLICIES}, got {policy!r}")
    return policy


@dataclass
class DecodedWords:
    """Masks decoded from a text (or token ids) holding mask words.

    Attributes:
        masks: (M, H, W) bool, one per decodable span, in text order.
        spans: every span the parser found (decodable or not), with offsets and status.
        decoded_span_indices: for each row of ``masks`` the index into ``spans`` it came from.
    """

    masks: "torch.Tensor"
    spans: list["MaskSpan"]
    decoded_span_indices: list[int] = field(default_factory=list)


@runtime_checkable
class MaskTokenizer(Protocol):
    """What the grammar, the VLM pipeline, the data builders, serving and the evaluation rely on.

    :class:`~masktok.tokenizers.tokenizer_base.MaskTokenizerBase` implements the shared part
    (words, batching, the empty-mask policy, loading and saving) and the construction every family
    class offers (``from_config``, ``from_pretrained`` — a file, a folder or a hub id); a family
    adds its model. :func:`~masktok.tokenizers.load_tokenizer` opens any registered family.
    Wrappers such as :class:`~masktok.tokenizers.refine.RefinedTokenizer` implement the same
    protocol.

    Attributes:
        family: the family's name in ``config.json``'s ``"tokenizer_type"`` ("samtok", "himtok").
        display_name: the family's name for people ("SAMTok").
        needs_image: whether encoding or decoding read the image (SAMTok) or ignore it (HiMTok:
            pass ``None``).
        soft_decoding: whether :meth:`decode_soft` decodes per-position code probabilities
            (HiMTok) instead of codes only.
        vocabulary: the words' :class:`~masktok.words.MaskVocabulary`: codebook size, levels,
            codes per mask (``min_codes`` … ``max_codes``), whether prefixes are words.
        device, dtype: where and in which precision the model runs; results come back on the CPU.
    """

    family: ClassVar[str]
    display_name: ClassVar[str]
    needs_image: ClassVar[bool]
    soft_decoding: ClassVar[bool]
    device: torch.device
    dtype: torch.dtype

    @property
    def vocabulary(self) -> "MaskVocabulary": ...

    # ---- saving ------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, *, layout: str = "masktok") -> None:
        """``layout="masktok"``: ``config.json`` + ``model.safetensors`` in folder ``path``;
        ``"official"``: the family's official checkpoint file in folder ``path``."""

    # ---- images ------------------------------------------------------------------------------
    def embed_image(self, image: Any, **options: Any) -> Any:
        """``image`` → what encode/decode take in its place without recomputing (SAMTok: an
        :class:`~masktok.tokenizers.samtok.ImageEmbedding`; image-free tokenizers: ``image``)."""

    def capture_image_encoder(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """Record CUDA graphs of the image encoder for these batch sizes (nothing to record when
        ``needs_image`` is False)."""

    # ---- codes -------------------------------------------------------------------------------
    def encode(self, image: Any, masks: Any, *, num_codes: int | None = None,
               empty_masks: str = DEFAULT_EMPTY_MASKS, **options: Any) -> torch.Tensor:
        """masks (N, H, W) binary at the image's size → codes (N, num_codes or max_codes) int64."""

    def encode_batch(self, images: Sequence[Any], masks: Sequence[Any], *, num_codes: int | None = None,
                     batch_size: int = 8, empty_masks: str = DEFAULT_EMPTY_MASKS,
                     **options: Any) -> list[torch.Tensor]:
        """Per-image mask stacks → per-image codes (N_i, L)."""

    def encode_stream(self, pairs: Iterable[tuple[Any, Any]], *, num_codes: int | None = None,
                      batch_size: int = 8, empty_masks: str = DEFAULT_EMPTY_MASKS,
                      **options: Any) -> Iterator[torch.Tensor]:
        """(image, masks) pairs read lazily → codes (N_i, L) per pair, in order."""

    def decode(self, image: Any, codes: Any, *, size: tuple[int, int] | None = None,
               threshold: float | None = None, return_logits: bool = False, lengths: Any = None,
               output: str = "host", **options: Any) -> "torch.Tensor | list[dict]":
        """codes (N, L) → masks (N, H, W) bool (or float logits on request); ``lengths`` (N,)
        decodes row i from its first ``lengths[i]`` codes; ``output`` (:data:`OUTPUTS`): CPU
        tensors, tensors on the tokenizer's device, or N COCO RLE dicts."""

    def decode_batch(self, images: Sequence[Any], codes: Sequence[Any], *,
                     sizes: Sequence[tuple[int, int] | None] | None = None, threshold: float | None = None,
                     return_logits: bool = False, lengths: Sequence[Any] | None = None, batch_size: int = 8,
                     output: str = "host", **options: Any) -> "list[torch.Tensor | list[dict]]":
        """Per-image codes → per-image masks (N_i, H_i, W_i)."""

    def code_probs_from_logits(self, logits: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
        """A VLM's logits over the code ids (..., V) → ``softmax(scale · logits)``."""

    def decode_soft(self, code_probs: torch.Tensor, *, image: Any = None, size: tuple[int, int] | None = None,
                    threshold: float | None = None, return_logits: bool = False, **options: Any) -> torch.Tensor:
        """code probabilities (N, T, V) → masks (N, H, W) when ``soft_decoding``; else ValueError."""

    # ---- words -------------------------------------------------------------------------------
    def encode_words(self, image: Any, masks: Any, *, num_codes: int | None = None,
                     empty_masks: str = DEFAULT_EMPTY_MASKS, **options: Any) -> list[str | None]:
        """masks (N, H, W) → N mask-word strings (``None`` for absent masks under ``"keep"``)."""

    def decode_words(self, image: Any, text: str, *, size: tuple[int, int] | None = None,
                     lenient: bool = False, threshold: float | None = None, chunk_size: int = 64,
                     max_spans: int | None = None, **options: Any) -> DecodedWords:
        """Every mask span of ``text`` → masks (M, H, W) plus the parse report."""
