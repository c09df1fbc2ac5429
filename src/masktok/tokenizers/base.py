"""The interface every mask tokenizer implements, so nothing downstream cares which one it holds.

Codes are integer tensors of shape (N, L): N masks, L code positions. For SAMTok L = depth (2)
and position d holds the level-d code in [0, codebook_size); for HiMTok L ≤ 32 positions of a
coarse-to-fine sequence in [0, 1024). A *prefix* (fewer positions) is always a valid input to
``decode``: SAMTok decodes level 0 alone, HiMTok zero-fills the missing slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from masktok.words import MaskSpan, MaskVocabulary


@dataclass
class DecodedWords:
    """Masks decoded from a text (or token ids) holding mask words.

    Attributes:
        masks: (M, H, W) bool, one per decodable span, in text order.
        spans: every span the parser found (decodable or not), with offsets and status.
        decoded_span_indices: for each row of ``masks`` the index into ``spans`` it came from.
    """

    masks: torch.Tensor
    spans: list["MaskSpan"]
    decoded_span_indices: list[int] = field(default_factory=list)


@runtime_checkable
class MaskTokenizer(Protocol):
    """What the grammar, the VLM pipeline, the data builders and the evaluation rely on."""

    vocabulary: "MaskVocabulary"

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> "MaskTokenizer": ...

    def save_pretrained(self, path: str | Path) -> None: ...

    def encode(self, image: Any, masks: np.ndarray | torch.Tensor) -> torch.Tensor:
        """masks (N, H, W) binary at the image's size → codes (N, L) int64."""

    def decode(self, image: Any, codes: torch.Tensor, *, size: tuple[int, int] | None = None,
               threshold: float | None = None, return_logits: bool = False) -> torch.Tensor:
        """codes (N, L) → masks (N, H, W) bool (or float logits/probabilities on request)."""

    def encode_words(self, image: Any, masks: np.ndarray | torch.Tensor) -> list[str]:
        """masks (N, H, W) → N mask-word strings."""

    def decode_words(self, image: Any, text: str, *, size: tuple[int, int] | None = None,
                     lenient: bool = False) -> DecodedWords:
        """Every mask span of ``text`` → masks (M, H, W) plus the parse report."""
